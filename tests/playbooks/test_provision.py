"""site.yml's provision phase against the local GCE sandbox, with the real google.cloud modules."""

import json
import subprocess

import pytest

from conftest import BIN, REPO, run_playbook

ZONE = "us-central1-a"
NAME = "jupyter-gpu"


def instance(sandbox, name=NAME, zone=ZONE):
    return sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/zones/{zone}/instances/{name}")


def test_site_creates_the_gpu_vm_and_a_rerun_changes_nothing(sandbox):
    sandbox.clear_requests()
    first = run_playbook("site.yml", sandbox)
    assert first.rc == 0, first
    # The changes a fresh project needs, each made once: the APIs enabled (Compute, IAM and Resource
    # Manager for the VM's own service account), the firewall rule, the VM.
    writes = [r["method_id"] for r in sandbox.requests(mutating=True)]
    for method in ("compute.firewalls.insert", "compute.instances.insert"):
        assert writes.count(method) == 1, (method, writes)
    enabled = [r["path"].rsplit("/", 1)[-1] for r in sandbox.requests(mutating=True)
               if r["method_id"] == "serviceusage.services.enable"]
    assert sorted(enabled) == ["cloudresourcemanager.googleapis.com:enable", "compute.googleapis.com:enable",
                               "iam.googleapis.com:enable"], enabled
    assert first.changed >= 3, first

    vm = instance(sandbox)
    assert vm["status"] == "RUNNING"
    assert vm["machineType"].endswith(f"/zones/{ZONE}/machineTypes/n1-standard-8")
    assert vm["scheduling"]["onHostMaintenance"] == "TERMINATE"
    [gpu] = vm["guestAccelerators"]
    assert gpu["acceleratorType"].endswith(f"/zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4")
    assert gpu["acceleratorCount"] == 1
    assert vm["labels"] == {"managed-by": "gpu-jupyter", "purpose": "jupyter"}
    assert vm["tags"]["items"] == ["gpu-jupyter"]
    assert {i["key"]: i["value"] for i in vm["metadata"]["items"]}["install-nvidia-driver"] == "True"
    [boot] = vm["disks"]
    disk = sandbox.api("GET", boot["source"].split("googleapis.com", 1)[1])
    assert int(disk["sizeGb"]) == 100
    assert disk["type"].endswith("/diskTypes/pd-balanced")

    firewall = sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/global/firewalls/gpu-jupyter-allow-ssh")
    assert firewall["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]
    assert firewall["sourceRanges"] == ["35.235.240.0/20"]
    assert firewall["targetTags"] == ["gpu-jupyter"]

    # The summary says how to reach Jupyter.
    assert f"gcloud compute ssh {NAME} --zone {ZONE}" in first.stdout
    assert "-N -L 8080:localhost:8080" in first.stdout

    sandbox.clear_requests()
    second = run_playbook("site.yml", sandbox)
    assert second.rc == 0, second
    assert second.changed == 0, second
    assert sandbox.requests(mutating=True) == []


def test_check_mode_on_a_fresh_project_creates_nothing(sandbox):
    result = run_playbook("playbooks/provision.yml", sandbox, check=True)
    assert result.rc == 0, result
    assert sandbox.requests(mutating=True) == []


def test_a_stopped_vm_is_started_by_the_next_run(sandbox):
    assert run_playbook("playbooks/provision.yml", sandbox).rc == 0
    sandbox.api("POST", f"/compute/v1/projects/{sandbox.project}/zones/{ZONE}/instances/{NAME}/stop")
    assert instance(sandbox)["status"] == "TERMINATED"
    result = run_playbook("playbooks/provision.yml", sandbox)
    assert result.rc == 0, result
    assert instance(sandbox)["status"] == "RUNNING"


def test_service_account_key_auth_goes_through_the_token_endpoint(sandbox):
    result = run_playbook(
        "playbooks/provision.yml", sandbox,
        extra_vars={"gcp_auth_kind": "serviceaccount", "gcp_service_account_file": str(sandbox.service_account_file)},
        env={"GCP_ACCESS_TOKEN": None, "GCP_AUTH_KIND": None},
    )
    assert result.rc == 0, result
    hosts = {r["host"] for r in sandbox.requests()}
    assert "oauth2.googleapis.com" in hosts
    assert instance(sandbox)["status"] == "RUNNING"


# The VM's own settings (name, zone, GPUs, SSH ranges, budget...) are refused by preflight:
# tests/playbooks/test_preflight.py holds that table. These are the checks before it.
@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"gcp_project": "Bad Project"}, "gcp_project: 'Bad Project' is not a Google Cloud project ID"),
        ({"gcp_auth_kind": "oauth"}, "gcp_auth_kind must be application, serviceaccount"),
        ({"gcp_auth_kind": "serviceaccount", "gcp_service_account_file": ""}, "(with gcp_service_account_file"),
    ],
    ids=["project", "auth-kind", "key-file-missing"],
)
def test_bad_connection_settings_are_refused_before_any_api_call(sandbox, extra_vars, message):
    result = run_playbook("site.yml", sandbox, extra_vars=extra_vars)
    assert result.rc != 0, result
    assert message in " ".join(result.stdout.split()), result
    assert sandbox.requests() == []


def test_a_sandbox_that_is_not_running_is_named(tmp_path):
    result = run_playbook("site.yml", env={"GCE_SANDBOX_STATE": str(tmp_path)})
    assert result.rc != 0, result
    assert "The local GCE sandbox is not running" in result.stdout, result
    assert "make sandbox" in result.stdout, result


def test_every_entry_point_sees_group_vars():
    """group_vars/ is read next to the playbook or the inventory: both entry dirs must see it."""
    for playbook_dir in (REPO, REPO / "playbooks"):
        proc = subprocess.run(
            [str(BIN / "ansible-inventory"), "-i", "inventories/sandbox", "--playbook-dir", str(playbook_dir),
             "--host", "localhost"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True,
        )
        hostvars = json.loads(proc.stdout)
        assert hostvars["gce_vm_name"] == NAME, playbook_dir
        assert hostvars["gcp_target"] == "sandbox", playbook_dir
