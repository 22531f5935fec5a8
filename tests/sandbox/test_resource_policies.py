"""Compact placement policies, with GCE's rules: regional, one policy a VM, only the machine
series GCE can place compactly, a policy's VM limit, and no deleting a policy a VM uses."""

from __future__ import annotations

from .helpers import BASE, PROJECT, create_vm, vm_body, wait_op, zpath

REGION_PATH = f"/compute/v1/projects/{PROJECT}/regions/us-central1/resourcePolicies"


def compact_policy(sb, name: str = "cluster-compact", **group) -> dict:
    op = sb.api("POST", REGION_PATH, {"name": name, "groupPlacementPolicy": dict({"collocation": "COLLOCATED"},
                                                                                 **group)})
    assert wait_op(sb, op)["status"] == "DONE"
    return sb.api("GET", f"{REGION_PATH}/{name}")


def g2(name: str, policy: str, zone: str = "us-central1-a") -> dict:
    return vm_body(name=name, zone=zone, machine="g2-standard-4", gpus=0, resourcePolicies=[policy])


def test_a_compact_policy_reads_back_as_gce_shows_it(sb):
    policy = compact_policy(sb)
    assert policy["kind"] == "compute#resourcePolicy" and policy["status"] == "READY"
    assert policy["selfLink"] == f"{BASE}projects/{PROJECT}/regions/us-central1/resourcePolicies/cluster-compact"
    assert policy["region"] == f"{BASE}projects/{PROJECT}/regions/us-central1"
    assert policy["groupPlacementPolicy"] == {"collocation": "COLLOCATED"}
    listed = sb.api("GET", REGION_PATH)["items"]
    assert [p["name"] for p in listed] == ["cluster-compact"]
    status, out = sb.call("POST", REGION_PATH, {"name": "cluster-compact",
                                                 "groupPlacementPolicy": {"collocation": "COLLOCATED"}})
    assert status == 409 and out["error"]["errors"][0]["reason"] == "alreadyExists"


def test_a_vm_in_a_compact_policy_carries_its_link(sb):
    sb.set_quota("NVIDIA_L4_GPUS", 4, region="us-central1")
    policy = compact_policy(sb)
    # A region-relative reference, as gcloud and Terraform send it, is stored as the full link.
    create_vm(sb, name="node-1", machine="g2-standard-4", gpus=0,
              resourcePolicies=["projects/%s/regions/us-central1/resourcePolicies/cluster-compact" % PROJECT])
    vm = sb.api("GET", zpath("instances/node-1"))
    assert vm["resourcePolicies"] == [policy["selfLink"]]


def test_n1_with_a_t4_cannot_be_placed_compactly(sb):
    policy = compact_policy(sb)
    status, out = sb.call("POST", zpath("instances"), vm_body(name="t4-node", resourcePolicies=[policy["selfLink"]]))
    assert status == 400, out
    assert out["error"]["message"] == "Placement policy is not applicable to machine type n1-standard-4."
    assert "t4-node" not in sb.state().get("instances", {}).get("us-central1-a", {})


def test_a_policy_serves_its_own_region_only_and_a_vm_takes_one(sb):
    sb.set_quota("NVIDIA_L4_GPUS", 4, region="us-east1")
    policy = compact_policy(sb)
    status, out = sb.call("POST", zpath("instances", "us-east1-d"), g2("east", policy["selfLink"], "us-east1-d"))
    assert status == 400 and "must be in the instance's region, us-east1" in out["error"]["message"], out
    second = compact_policy(sb, "other")
    status, out = sb.call("POST", zpath("instances"),
                          vm_body(name="two", machine="g2-standard-4", gpus=0,
                                  resourcePolicies=[policy["selfLink"], second["selfLink"]]))
    assert status == 400 and "Currently a max of 1 resource policy is supported." in out["error"]["message"], out
    status, out = sb.call("POST", zpath("instances"), g2("missing", policy["selfLink"].replace("cluster-", "no-")))
    assert status == 404, out


def test_vm_count_caps_the_policy(sb):
    sb.set_quota("NVIDIA_L4_GPUS", 4, region="us-central1")
    policy = compact_policy(sb, vmCount=1)
    assert wait_op(sb, sb.api("POST", zpath("instances"), g2("first", policy["selfLink"])))["status"] == "DONE"
    status, out = sb.call("POST", zpath("instances"), g2("second", policy["selfLink"]))
    assert status == 400, out
    assert out["error"]["message"] == ("No more than 1 instances of machine type g2-standard-4 can be created "
                                       "with this policy.")


def test_a_policy_in_use_cannot_be_deleted(sb):
    sb.set_quota("NVIDIA_L4_GPUS", 4, region="us-central1")
    policy = compact_policy(sb)
    create_vm(sb, name="user", machine="g2-standard-4", gpus=0, resourcePolicies=[policy["selfLink"]])
    status, out = sb.call("DELETE", f"{REGION_PATH}/cluster-compact")
    assert status == 400, out
    assert out["error"]["errors"][0]["reason"] == "resourceInUseByAnotherResource"
    assert out["error"]["message"] == (
        f"The resource_policy resource 'projects/{PROJECT}/regions/us-central1/resourcePolicies/cluster-compact' "
        f"is already being used by 'projects/{PROJECT}/zones/us-central1-a/instances/user'")
    wait_op(sb, sb.api("DELETE", zpath("instances/user")))
    assert wait_op(sb, sb.api("DELETE", f"{REGION_PATH}/cluster-compact"))["status"] == "DONE"
    status, _ = sb.call("GET", f"{REGION_PATH}/cluster-compact")
    assert status == 404


def test_policies_the_sandbox_does_not_act_on_answer_501(sb):
    status, out = sb.call("POST", REGION_PATH, {"name": "spread",
                                                 "groupPlacementPolicy": {"availabilityDomainCount": 3}})
    assert status == 501 and "spread placement policy" in out["error"]["message"], out
    status, out = sb.call("POST", REGION_PATH, {"name": "snap", "snapshotSchedulePolicy": {
        "schedule": {"dailySchedule": {"daysInCycle": 1, "startTime": "04:00"}}}})
    assert status == 501, out
