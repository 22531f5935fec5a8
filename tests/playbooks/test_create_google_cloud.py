"""A new STANDARD VM is created by google.cloud.gcp_compute_instance, with zone failover as a loop
around it (roles/gce_vm/tasks/create_zone.yml); SPOT stays with the project's gce_instance_place.

The sandbox's request log tells the two apart by the insert's shape: google.cloud reads the
instance first (GET, 404) and sends `kind: compute#instance` with no `provisioningModel`;
gce_instance_place sends no `kind` and always names its provisioning model."""

import pytest

from conftest import flat, run_playbook

NAME = "jupyter-gpu"
PLAYBOOK = "playbooks/provision.yml"


def zone_of(request):
    return request["path"].split("/")[6]


def inserts(sb):
    return [r for r in sb.requests(mutating=True) if r["method_id"] == "compute.instances.insert"]


def instances(sb):
    return sorted((zone, name, inst["status"]) for zone, table in (sb.state().get("instances") or {}).items()
                  for name, inst in table.items())


def disks(sb):
    return sorted((zone, name) for zone, table in (sb.state().get("disks") or {}).items() for name in table)


def by_google_cloud(insert):
    body = insert["body"]
    return body.get("kind") == "compute#instance" and "provisioningModel" not in body.get("scheduling", {})


@pytest.fixture
def sb(sandbox):
    sandbox.enable_compute()
    sandbox.clear_requests()
    return sandbox


def test_a_standard_vm_is_created_by_google_cloud_as_declared_and_kept_by_the_rerun(sb):
    first = run_playbook(PLAYBOOK, sb)
    assert first.rc == 0, first
    [insert] = inserts(sb)
    assert by_google_cloud(insert), insert["body"]
    # google.cloud's own way: it reads the instance in the zone right before it creates it.
    calls = [(r["method_id"], r["status"]) for r in sb.requests() if r["method_id"].startswith("compute.instances.")]
    at = calls.index(("compute.instances.insert", 200))
    assert calls[at - 1] == ("compute.instances.get", 404), calls

    vm = sb.api("GET", f"/compute/v1/projects/{sb.project}/zones/us-central1-a/instances/{NAME}")
    assert vm["status"] == "RUNNING"
    assert vm["scheduling"]["onHostMaintenance"] == "TERMINATE" and vm["scheduling"]["automaticRestart"] is True
    [gpu] = vm["guestAccelerators"]
    assert gpu["acceleratorType"].endswith("/zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4")
    assert vm["labels"]["managed-by"] == "gpu-jupyter"
    assert vm["tags"]["items"][0] == "gpu-jupyter"
    assert vm["deletionProtection"] is False
    # No external address unless gce_vm_external_ip asks for one.
    assert [nic.get("accessConfigs") or [] for nic in vm["networkInterfaces"]] == [[]]
    metadata = {i["key"]: i["value"] for i in vm["metadata"]["items"]}
    assert metadata["install-nvidia-driver"] == "True" and metadata["enable-guest-attributes"] == "TRUE"
    [account] = vm["serviceAccounts"]
    assert "https://www.googleapis.com/auth/devstorage.read_only" in account["scopes"]
    assert disks(sb) == [("us-central1-a", NAME)]

    # The rerun finds it as declared and changes nothing.
    sb.clear_requests()
    second = run_playbook(PLAYBOOK, sb)
    assert second.rc == 0, second
    assert second.changed == 0, second
    assert sb.requests(mutating=True) == []


def test_an_external_address_is_sent_when_asked_for_and_spot_stays_with_the_own_module(sb):
    result = run_playbook(PLAYBOOK, sb, extra_vars={"gce_vm_external_ip": True, "gce_vm_allow_public_ingress": True})
    assert result.rc == 0, result
    [insert] = inserts(sb)
    assert by_google_cloud(insert), insert["body"]
    [nic] = insert["body"]["networkInterfaces"]
    assert nic["accessConfigs"] == [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
    vm = sb.api("GET", f"/compute/v1/projects/{sb.project}/zones/us-central1-a/instances/{NAME}")
    assert vm["networkInterfaces"][0]["accessConfigs"][0]["natIP"]

    # google.cloud has no provisioningModel: a spot VM is still created by gce_instance_place.
    spot = run_playbook(PLAYBOOK, sb, extra_vars={"gce_vm_provisioning_model": "SPOT", "gce_vm_name": "spot-vm"})
    assert spot.rc == 0, spot
    spot_insert = [r for r in inserts(sb) if r["body"]["name"] == "spot-vm"]
    assert len(spot_insert) == 1 and not by_google_cloud(spot_insert[0])
    assert spot_insert[0]["body"]["scheduling"]["provisioningModel"] == "SPOT"


def test_failover_across_three_zones_through_google_cloud_leaves_nothing_behind(sb):
    """Zone 1 is out of capacity and GCE suggests us-central1-f; f fails too, after its VM and
    disk exist (GCE's partial failure); the third try, the next candidate in order, takes the VM.
    Operations take realistic time (x0.1), so google.cloud's polling and the cleanup's waits run."""
    sb.set_timing("realistic", 0.1)
    sb.add_fault("zone_exhausted", zone="us-central1-a", with_details=True, zones_available=["us-central1-f"], count=1)
    sb.add_fault("partial_insert", zone="us-central1-f", count=1)
    # site.yml: provisioning, then the summary.
    result = run_playbook("site.yml", sb, extra_vars={
        "gce_vm_candidate_zones": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]})
    assert result.rc == 0, result
    tried = inserts(sb)
    assert [zone_of(r) for r in tried] == ["us-central1-a", "us-central1-f", "us-central1-b"], result
    assert all(by_google_cloud(r) for r in tried)
    # What f's failed insert left was deleted before the next zone was tried.
    writes = [(r["method_id"], zone_of(r)) for r in sb.requests(mutating=True)
              if r["method_id"] in ("compute.instances.insert", "compute.instances.delete", "compute.disks.delete")]
    assert writes == [("compute.instances.insert", "us-central1-a"), ("compute.instances.insert", "us-central1-f"),
                      ("compute.instances.delete", "us-central1-f"), ("compute.instances.insert", "us-central1-b")]
    assert instances(sb) == [("us-central1-b", NAME, "RUNNING")]
    assert disks(sb) == [("us-central1-b", NAME)]
    text = flat(result)
    assert f"VM {NAME} in us-central1-b" in text, result
    assert ("Zones us-central1-a: out of capacity (ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS; GCE suggested "
            "us-central1-f); us-central1-f: out of capacity (ZONE_RESOURCE_POOL_EXHAUSTED; removed instance "
            f"{NAME}); then us-central1-b: created") in text, result

    # The VM is where failover put it: the rerun finds it there and changes nothing.
    sb.clear_requests()
    again = run_playbook(PLAYBOOK, sb, extra_vars={
        "gce_vm_candidate_zones": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]})
    assert again.rc == 0 and again.changed == 0, again
    assert sb.requests(mutating=True) == []


def test_a_refusal_failover_cannot_help_stops_at_once_says_why_and_leaves_nothing(sb):
    sb.add_fault("partial_insert", zone="us-central1-a", code="UNSUPPORTED_OPERATION",
                 message="The instance could not be started.", count=1)
    result = run_playbook(PLAYBOOK, sb, extra_vars={"gce_vm_candidate_zones": ["us-central1-a", "us-central1-b"]})
    assert result.rc != 0, result
    assert [zone_of(r) for r in inserts(sb)] == ["us-central1-a"]
    assert (f"Creating {NAME} in us-central1-a failed (UNSUPPORTED_OPERATION): The instance could not be started."
            in flat(result)), result
    assert instances(sb) == [] and disks(sb) == []


def test_an_insert_past_the_operation_timeout_is_reported_not_retried(sb, tmp_path):
    # Every operation is slowed, the firewall's too: a first VM puts the shared rule in place.
    assert run_playbook(PLAYBOOK, sb, extra_vars={"gce_vm_name": "first-vm"}).rc == 0
    sb.clear_requests()
    sb.set_timing("realistic", 1.0)
    sb.add_fault("slow_operations", seconds=60)
    # async kills the module at the limit before it removes its payload directory: keep that here.
    result = run_playbook(PLAYBOOK, sb, extra_vars={"gce_vm_operation_timeout": 4,
                                                   "gce_vm_candidate_zones": ["us-central1-a", "us-central1-b"]},
                          env={"TMPDIR": str(tmp_path)})
    assert result.rc != 0, result
    assert [(r["body"]["name"], zone_of(r)) for r in inserts(sb)] == [(NAME, "us-central1-a")]
    text = flat(result)
    assert f"Creating {NAME} in us-central1-a was not finished after 4s, the limit gce_vm_operation_timeout" \
        in text, result
    assert "it never creates a second one" in text, result


def test_a_fleet_is_created_by_google_cloud_in_parallel(sb):
    """Two VMs, one provisioning host each: both inserts are sent before either VM's creation
    has finished (google.cloud's read of the new VM after its operation)."""
    sb.set_timing("realistic", 0.2)
    result = run_playbook(PLAYBOOK, sb, extra_vars={"gce_vm_count": 2, "gce_budget_monthly_usd": 2000})
    assert result.rc == 0, result
    assert sorted(r["body"]["name"] for r in inserts(sb)) == [NAME, NAME + "-2"]
    assert all(by_google_cloud(r) for r in inserts(sb))
    log = [(r["method_id"], r["status"], r["path"].rsplit("/", 1)[-1]) for r in sb.requests()]
    inserted = [i for i, (m, _s, _n) in enumerate(log) if m == "compute.instances.insert"]
    first_read_back = min(i for i, (m, s, n) in enumerate(log)
                          if m == "compute.instances.get" and s == 200 and n in (NAME, NAME + "-2"))
    assert max(inserted) < first_read_back, log
    assert instances(sb) == [("us-central1-a", NAME, "RUNNING"), ("us-central1-a", NAME + "-2", "RUNNING")]


# ---- The gce_failover filters on their own (no sandbox) --------------------------------------

def failover_filters():
    import importlib.util
    from conftest import REPO

    spec = importlib.util.spec_from_file_location("gce_failover_filters", REPO / "plugins/filter/gce_failover.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What google.cloud 1.10.2 fails with: the operation's error.errors as Python prints the list, or
# "GCP returned error: " and the HTTP error's body when the request itself was refused.
STOCKOUT = repr([{"code": "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "message": "The zone 'projects/p/zones/"
                  "us-central1-a' does not have enough resources available to fulfill the request.",
                  "errorDetails": [{"errorInfo": {"reason": "resource_availability",
                                                  "metadatas": {"zonesAvailable": "us-central1-f,us-east1-c"}}}]}])
REGION_QUOTA = repr([{"code": "QUOTA_EXCEEDED",
                      "message": "Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 1.0 in region us-central1.",
                      "errorDetails": [{"quotaInfo": {"metricName": "compute.googleapis.com/nvidia_t4_gpus",
                                                      "dimensions": {"region": "us-central1"}, "limit": 1}}]}])
GLOBAL_QUOTA = repr([{"code": "QUOTA_EXCEEDED", "message": "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 globally."}])
REFUSED = "GCP returned error: " + repr({"error": {"code": 400, "message": "Invalid value for field 'resource.name'",
                                                  "errors": [{"message": "Invalid value for field 'resource.name'",
                                                              "domain": "global", "reason": "invalid"}]}})
CANDIDATES = ["us-central1-a", "us-central1-b", "us-central1-f", "us-east1-c"]


@pytest.mark.parametrize(("msg", "result", "failover", "operation", "extra"), [
    (STOCKOUT, "exhausted", True, True,
     {"zones_available": ["us-central1-f", "us-east1-c"], "hint_not_candidates": []}),
    (REGION_QUOTA, "quota", True, True, {"metric": "NVIDIA_T4_GPUS", "global": False, "region": "us-central1"}),
    (GLOBAL_QUOTA, "quota", False, True, {"metric": "GPUS_ALL_REGIONS", "global": True}),
    (REFUSED, "failed", False, False, {"code": "invalid", "reason": "Invalid value for field 'resource.name'"}),
    ("Something else broke", "failed", False, False, {"code": "", "reason": "Something else broke"}),
], ids=["stockout", "region-quota", "global-quota", "http-refusal", "unparsed"])
def test_what_a_google_cloud_insert_failure_means(msg, result, failover, operation, extra):
    entry = failover_filters().gce_vm_insert_failure(msg, "us-central1-a", CANDIDATES)
    assert (entry["result"], entry["failover"], entry["operation"]) == (result, failover, operation), entry
    for key, value in extra.items():
        assert entry[key] == value, (key, entry)


def test_the_next_zone_hint_first_a_blocked_region_passed_over_none_once_created():
    f = failover_filters()
    state = f.gce_vm_failover_pop({"queue": CANDIDATES, "blocked": {}, "attempts": [], "instance": {}})
    assert state["zone"] == "us-central1-a"
    state = f.gce_vm_failover_failed(state, f.gce_vm_insert_failure(STOCKOUT, "us-central1-a", CANDIDATES),
                                     {"instances": [], "disks": ["jupyter-gpu"]})
    assert state["queue"] == ["us-central1-f", "us-east1-c", "us-central1-b"]
    assert state["attempts"][-1]["cleaned_up"] == ["disk jupyter-gpu"]
    state = f.gce_vm_failover_pop(state)
    assert state["zone"] == "us-central1-f"
    state = f.gce_vm_failover_failed(state, f.gce_vm_insert_failure(REGION_QUOTA, "us-central1-f", CANDIDATES), {})
    state = f.gce_vm_failover_pop(state)
    assert state["zone"] == "us-east1-c"
    state = dict(state, instance={"name": "jupyter-gpu", "zone": "us-east1-c"})
    state = f.gce_vm_failover_pop(state)
    assert state["zone"] == "" and state["queue"] == ["us-central1-b"]
    assert f.gce_vm_attempt_lines(state["attempts"]) == [
        "us-central1-a: out of capacity (ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS; GCE suggested us-central1-f, "
        "us-east1-c; removed disk jupyter-gpu)",
        "us-central1-f: out of quota (QUOTA_EXCEEDED NVIDIA_T4_GPUS)"]
    # us-central1-b was never reached: the VM exists. Had it been, its region was out of quota.
    blocked = f.gce_vm_failover_pop(dict(state, instance={}))
    assert blocked["zone"] == "" and blocked["attempts"][-1] == {
        "zone": "us-central1-b", "result": "skipped",
        "reason": "region us-central1 is out of quota (NVIDIA_T4_GPUS limit 1)"}
