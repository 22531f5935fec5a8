"""Zone failover and spot against the sandbox: stockouts, the zonesAvailable hint, quota per region
and project-wide, nothing left behind, a preempted spot VM started again."""

import pytest

from conftest import flat, run_playbook

NAME = "jupyter-gpu"


@pytest.fixture(scope="module")
def place_playbook():
    """The real entry point: validate, preflight, firewall, placement."""
    return "playbooks/provision.yml"


def instances(sb):
    out = []
    for zone, table in (sb.state().get("instances") or {}).items():
        out.extend((zone, name, inst["status"]) for name, inst in table.items())
    return out


def disks(sb):
    out = []
    for zone, table in (sb.state().get("disks") or {}).items():
        out.extend((zone, name) for name in table)
    return out


def inserts(sb):
    return [r for r in sb.requests(mutating=True) if r["method_id"] == "compute.instances.insert"]


CANDIDATES = ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]


def test_two_stockouts_then_the_hinted_zone(sandbox):
    sandbox.enable_compute()
    sandbox.add_fault("zone_exhausted", zone="us-central1-a", with_details=False, count=1)
    sandbox.add_fault("zone_exhausted", zone="us-central1-b", with_details=True,
                      zones_available=["us-central1-f"], count=1)
    sandbox.clear_requests()
    result = run_playbook("site.yml", sandbox, extra_vars={"gce_vm_candidate_zones": CANDIDATES})
    assert result.rc == 0, result
    # a and b were out of stock; b's hint named f, tried before c.
    assert [r["path"].split("/")[6] for r in inserts(sandbox)] == ["us-central1-a", "us-central1-b", "us-central1-f"]
    # The summary says where the VM is, which zones failed first and why.
    text = flat(result)
    assert "VM jupyter-gpu in us-central1-f" in text, result
    assert ("Zones us-central1-a: out of capacity (ZONE_RESOURCE_POOL_EXHAUSTED); us-central1-b: out of capacity "
            "(ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS; GCE suggested us-central1-f); then us-central1-f: created"
            ) in text, result
    # Exactly one VM and its one disk, nothing in the failed zones.
    assert instances(sandbox) == [("us-central1-f", NAME, "RUNNING")]
    assert disks(sandbox) == [("us-central1-f", NAME)]


def test_regional_quota_skips_the_region(sandbox, place_playbook):
    sandbox.enable_compute()
    sandbox.add_fault("quota_exceeded", region="us-central1", metric="NVIDIA_T4_GPUS", count=1)
    sandbox.clear_requests()
    result = run_playbook(place_playbook, sandbox, extra_vars={
        "gce_vm_candidate_zones": ["us-central1-a", "us-central1-b", "us-east1-c"]})
    assert result.rc == 0, result
    assert [r["path"].split("/")[6] for r in inserts(sandbox)] == ["us-central1-a", "us-east1-c"]
    assert "us-central1-b: skipped (region us-central1 is out of quota (NVIDIA_T4_GPUS limit" in flat(result), result
    assert instances(sandbox) == [("us-east1-c", NAME, "RUNNING")]
    assert disks(sandbox) == [("us-east1-c", NAME)]


def test_project_wide_gpu_quota_stops_everything(sandbox, place_playbook):
    sandbox.enable_compute()
    sandbox.add_fault("quota_exceeded", region="us-central1", metric="GPUS_ALL_REGIONS", count=1)
    sandbox.clear_requests()
    result = run_playbook(place_playbook, sandbox, extra_vars={"gce_vm_candidate_zones": CANDIDATES})
    assert result.rc != 0, result
    assert len(inserts(sandbox)) == 1
    text = flat(result)
    assert "Project-wide quota GPUS_ALL_REGIONS" in text and "playbooks/quota_request.yml" in text, result
    assert instances(sandbox) == [] and disks(sandbox) == []


def test_every_zone_out_of_stock_fails_with_the_story_and_leaves_nothing(sandbox, place_playbook):
    sandbox.enable_compute()
    for zone in CANDIDATES[:2]:
        sandbox.add_fault("zone_exhausted", zone=zone, with_details=True, count=1)
    result = run_playbook(place_playbook, sandbox, extra_vars={"gce_vm_candidate_zones": CANDIDATES[:2]})
    assert result.rc != 0, result
    text = flat(result)
    assert "No candidate zone could take jupyter-gpu; nothing was left behind" in text, result
    assert "- us-central1-a: out of capacity (ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS)" in text, result
    assert instances(sandbox) == [] and disks(sandbox) == []


def test_candidate_regions_expand_to_zones_offering_the_gpu(sandbox, place_playbook):
    sandbox.enable_compute()
    # us-east1-b offers no T4: it must never be tried.
    for zone in ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"):
        sandbox.add_fault("zone_exhausted", zone=zone, count=1)
    sandbox.clear_requests()
    result = run_playbook(place_playbook, sandbox, extra_vars={"gce_vm_candidate_regions": ["us-central1", "us-east1"]})
    assert result.rc == 0, result
    tried = [r["path"].split("/")[6] for r in inserts(sandbox)]
    assert tried[:4] == ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]
    assert tried[4] == "us-east1-c" and "us-east1-b" not in tried
    assert instances(sandbox) == [("us-east1-c", NAME, "RUNNING")]


def test_preempted_spot_vm_is_started_by_the_rerun(sandbox, place_playbook):
    sandbox.enable_compute()
    spot = {"gce_vm_provisioning_model": "SPOT"}
    first = run_playbook(place_playbook, sandbox, extra_vars=spot)
    assert first.rc == 0, first
    vm = sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/zones/us-central1-a/instances/{NAME}")
    assert vm["scheduling"]["provisioningModel"] == "SPOT"
    assert vm["scheduling"]["instanceTerminationAction"] == "STOP"
    assert vm["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert "spot: ~$0.24/hour" in flat(first), first

    sandbox.preempt("us-central1-a", NAME)
    assert instances(sandbox) == [("us-central1-a", NAME, "TERMINATED")]
    sandbox.clear_requests()
    second = run_playbook(place_playbook, sandbox, extra_vars=spot)
    assert second.rc == 0, second
    assert [r["method_id"] for r in sandbox.requests(mutating=True)] == ["compute.instances.start"]
    assert instances(sandbox) == [("us-central1-a", NAME, "RUNNING")]

    sandbox.clear_requests()
    third = run_playbook(place_playbook, sandbox, extra_vars=spot)
    assert third.rc == 0, third
    assert sandbox.requests(mutating=True) == []
    # The second run recorded what it left: the third reads exactly that, in one parallel step (the
    # VM, its host keys, the firewall rule, the VM's service account, its project roles, the NAT
    # router), and runs none of the role's other tasks.
    assert sorted(r["method_id"] for r in sandbox.requests()) == [
        "cloudresourcemanager.projects.getIamPolicy", "compute.firewalls.get", "compute.instances.get",
        "compute.instances.getGuestAttributes", "compute.routers.get", "iam.projects.serviceAccounts.get"]


def test_an_insert_that_fails_after_the_vm_exists_is_cleaned_up_before_the_next_zone(sandbox, place_playbook):
    """GCE's partial failure: the insert's operation ends with an error, but the VM and its boot
    disk exist in that zone (TERMINATED). Placement must delete them before moving on, or the
    failed zone keeps a billed disk and a VM the next run finds in the wrong place. Operations take
    realistic time (x0.1) so the waits on the insert and on the cleanup's delete run for real."""
    sandbox.enable_compute()
    sandbox.set_timing("realistic", 0.1)
    sandbox.add_fault("partial_insert", zone="us-central1-a", count=1)
    sandbox.clear_requests()
    result = run_playbook(place_playbook, sandbox, extra_vars={"gce_vm_candidate_zones": CANDIDATES[:2]})
    assert [r["path"].split("/")[6] for r in inserts(sandbox)] == ["us-central1-a", "us-central1-b"], result
    # Nothing left behind in the failed zone: the VM GCE left there is gone, and its boot disk with it.
    assert instances(sandbox) == [("us-central1-b", NAME, "RUNNING")]
    assert disks(sandbox) == [("us-central1-b", NAME)]
    # ... and it was removed before the next zone was tried.
    calls = [(r["method_id"], r["path"].split("/")[6]) for r in sandbox.requests(mutating=True)
             if r["method_id"] in ("compute.instances.insert", "compute.instances.delete")]
    assert calls == [("compute.instances.insert", "us-central1-a"), ("compute.instances.delete", "us-central1-a"),
                     ("compute.instances.insert", "us-central1-b")], calls
    assert "us-central1-a: out of capacity (ZONE_RESOURCE_POOL_EXHAUSTED; removed instance jupyter-gpu)" \
        in flat(result), result
    assert result.rc == 0, result
