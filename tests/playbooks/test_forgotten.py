"""Forgotten VMs against the sandbox: status shows how long each stopped VM has been stopped and
what it costs meanwhile; the sweep deletes only this project's VMs stopped past the policy,
keeping their data, and nothing at all with the policy off."""

import time

from conftest import flat, run_playbook

ZONE = "us-central1-a"
LABELS = {"managed-by": "gpu-jupyter"}
DAY = 86400


def api(sandbox, method, rest, body=None):
    return sandbox.api(method, f"/compute/v1/projects/{sandbox.project}/{rest}", body)


def wait(sandbox, op):
    deadline = time.monotonic() + 30
    while op.get("status") != "DONE" and time.monotonic() < deadline:
        time.sleep(0.1)
        op = sandbox.api("GET", "/compute/" + op["selfLink"].split("/compute/", 1)[1])
    assert op["status"] == "DONE" and "error" not in op, op


def stopped_vm(sandbox, name, days, labels=LABELS):
    """A project VM (or another one, labels={}) stopped `days` ago."""
    body = {"name": name, "machineType": f"zones/{ZONE}/machineTypes/e2-small",
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                "sourceImage": "projects/debian-cloud/global/images/family/debian-12", "diskSizeGb": "20"}}],
            "networkInterfaces": [{"network": "global/networks/default"}]}
    if labels:
        body["labels"] = labels
    wait(sandbox, api(sandbox, "POST", f"zones/{ZONE}/instances", body))
    wait(sandbox, api(sandbox, "POST", f"zones/{ZONE}/instances/{name}/stop"))
    sandbox.age(ZONE, name, days * DAY)


def names(sandbox, collection):
    state = sandbox.state().get(collection) or {}
    if collection == "snapshots":
        return sorted(state)
    return sorted(n for table in state.values() for n in table)


def test_status_shows_how_long_each_vm_has_been_stopped_and_its_cost(sandbox):
    sandbox.enable_compute()
    stopped_vm(sandbox, "old-vm", 40)
    result = run_playbook("playbooks/status.yml", sandbox)
    assert result.rc == 0, result
    # 20 GB pd-standard at the table's price (the status table's $/MONTH STOPPED column).
    assert "old-vm stopped for 40d 0h (since " in flat(result), result
    assert "its disks bill $0.80/month while it stays stopped" in flat(result), result


def test_the_sweep_deletes_only_project_vms_stopped_past_the_policy_and_keeps_a_snapshot(sandbox):
    sandbox.enable_compute()
    stopped_vm(sandbox, "old-vm", 40)
    stopped_vm(sandbox, "recent-vm", 5)
    stopped_vm(sandbox, "not-ours", 90, labels={})

    off = run_playbook("playbooks/sweep.yml", sandbox)
    assert off.rc == 0 and off.changed == 0, off
    assert "old-vm in us-central1-a, stopped 40.0 days: kept (policy off " in flat(off), off
    assert names(sandbox, "instances") == ["not-ours", "old-vm", "recent-vm"]

    sandbox.clear_requests()
    on = run_playbook("playbooks/sweep.yml", sandbox, extra_vars={"gce_lifecycle_delete_stopped_after_days": 30})
    assert on.rc == 0 and on.changed == 1, on
    assert names(sandbox, "instances") == ["not-ours", "recent-vm"]
    assert names(sandbox, "disks") == ["not-ours", "recent-vm"]
    [snap] = names(sandbox, "snapshots")
    assert snap.startswith("old-vm-forgotten-")
    info = api(sandbox, "GET", f"global/snapshots/{snap}")
    assert info["status"] == "READY" and info["sourceDisk"].endswith(f"/zones/{ZONE}/disks/old-vm")
    assert info["labels"] == dict(LABELS, **{"forgotten-vm": "old-vm"})
    text = flat(on)
    assert (f"old-vm in us-central1-a, stopped 40.0 days: deleted; its boot disk is kept as snapshot "
            f"{info['selfLink']} (20.0 GB stored): restore with gcloud compute disks create old-vm "
            f"--source-snapshot {snap} --zone us-central1-a") in text, on
    assert "recent-vm in us-central1-a, stopped 5.0 days: kept (stopped less than 30 days)" in text, on
    assert "not-ours" not in text
    # The snapshot is taken before the delete.
    calls = [r["method_id"] for r in sandbox.requests(mutating=True)]
    assert calls == ["compute.disks.createSnapshot", "compute.instances.delete"], calls

    again = run_playbook("playbooks/sweep.yml", sandbox, extra_vars={"gce_lifecycle_delete_stopped_after_days": 30})
    assert again.rc == 0 and again.changed == 0, again


def test_keep_disk_leaves_the_boot_disk_and_check_mode_deletes_nothing(sandbox):
    sandbox.enable_compute()
    stopped_vm(sandbox, "old-vm", 40)
    policy = {"gce_lifecycle_delete_stopped_after_days": 30, "gce_lifecycle_forgotten_keep": "disk"}
    dry = run_playbook("playbooks/sweep.yml", sandbox, extra_vars=policy, check=True)
    assert dry.rc == 0 and "old-vm in us-central1-a, stopped 40.0 days: would be deleted, keeping a disk" in flat(dry)
    assert names(sandbox, "instances") == ["old-vm"]
    result = run_playbook("playbooks/sweep.yml", sandbox, extra_vars=policy)
    assert result.rc == 0, result
    assert names(sandbox, "instances") == [] and names(sandbox, "disks") == ["old-vm"]
    assert "users" not in api(sandbox, "GET", f"zones/{ZONE}/disks/old-vm")
    assert "its boot disk old-vm (20 GB) is kept in us-central1-a" in flat(result), result
