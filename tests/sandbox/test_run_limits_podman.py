"""A run-time cap on a sandbox VM that is a podman container: reaching it stops the container
(GCE powers the VM off), and a start boots it again with the cap counting afresh."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from .helpers import ZONE, create_vm, wait_op, zpath

pytestmark = pytest.mark.journey


@pytest.fixture(scope="module")
def podman_sb(tmp_path_factory):
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make test-deps` (scripts/bootstrap --tests)")
    from gce_sandbox.testing import SandboxProcess

    with SandboxProcess(tmp_path_factory.mktemp("gce-cap"), vms="podman", startup_timeout=120) as sb:
        sb.enable_compute()
        yield sb


def container_state(sb) -> list[str]:
    from gce_sandbox.podman_vms import sandbox_id

    out = subprocess.run(["podman", "ps", "--all", "--filter", f"label=gce-sandbox={sandbox_id(sb.state_dir)}",
                          "--format", "json"], capture_output=True, text=True, check=True).stdout
    return [c["State"] for c in json.loads(out or "[]")]


def test_reaching_the_cap_stops_the_container_and_a_start_boots_it(podman_sb):
    sb = podman_sb
    create_vm(sb, machine="e2-small", gpus=0, disk_size=20,
              image="projects/debian-cloud/global/images/family/debian-12",
              scheduling={"maxRunDuration": {"seconds": "3600"}, "instanceTerminationAction": "STOP"})
    assert container_state(sb) == ["running"]
    assert sb.age(ZONE, "vm1", 3600)["status"] == "TERMINATED"
    # The container shuts down as the VM's systemd does: seconds, in the background.
    deadline = time.monotonic() + 60
    while container_state(sb) in (["running"], ["stopping"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert container_state(sb) in (["exited"], ["stopped"])
    wait_op(sb, sb.api("POST", zpath("instances/vm1/start")))
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "RUNNING"
    assert container_state(sb) == ["running"]
    assert sb.age(ZONE, "vm1", 1800)["status"] == "RUNNING"
