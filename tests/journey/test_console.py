"""A VM that doesn't answer SSH is explained by its serial console; interactive console access is opt-in."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import run_playbook

NAME = "console-vm"
ZONE = "us-central1-a"


@pytest.mark.journey
def test_a_vm_that_refuses_ssh_fails_with_its_console_tail(tmp_path_factory):
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make test-deps` (scripts/bootstrap --tests)")
    from gce_sandbox.testing import SandboxProcess

    # A key pair whose public half the VM never gets: the VM boots, sshd refuses us.
    keydir = tmp_path_factory.mktemp("other-key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keydir / "k")], check=True)
    with SandboxProcess(tmp_path_factory.mktemp("gce-console"), vms="podman") as sb:
        result = run_playbook("playbooks/provision.yml", sb, extra_vars={
            "gce_vm_name": NAME, "gce_vm_ssh_timeout": 20,
            "gce_vm_ssh_public_key": (keydir / "k.pub").read_text().strip()})
        assert result.rc != 0, result
        out = result.stdout
        assert f"VM {NAME} ({ZONE}, RUNNING) did not answer over SSH" in out, result
        assert "within gce_vm_ssh_timeout (20 s)" in out, result
        assert "The last lines of its serial console:" in out, result
        # What systemd wrote on the VM's console while booting, terminal codes removed.
        assert "Started ssh.service" in out and "\x1b[" not in out, result
        # The VM is left as it is (it exists; the message says so), not deleted behind the user's back.
        assert sb.api("GET", f"/compute/v1/projects/{sb.project}/zones/{ZONE}/instances/{NAME}")["status"] == "RUNNING"


def test_serial_port_access_is_opt_in_and_printed(sandbox):
    off = run_playbook("site.yml", sandbox, extra_vars={"gce_vm_name": "plain-vm"})
    assert off.rc == 0, off
    vm = sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/zones/{ZONE}/instances/plain-vm")
    assert "serial-port-enable" not in {i["key"] for i in vm["metadata"]["items"]}
    assert "connect-to-serial-port" not in off.stdout

    on = run_playbook("site.yml", sandbox, extra_vars={"gce_vm_name": "serial-vm", "gce_vm_serial_port_access": True})
    assert on.rc == 0, on
    vm = sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/zones/{ZONE}/instances/serial-vm")
    assert {i["key"]: i["value"] for i in vm["metadata"]["items"]}["serial-port-enable"] == "TRUE"
    assert f"gcloud compute connect-to-serial-port serial-vm --zone {ZONE}" in on.stdout, on
