"""A cluster with compact placement, as a user runs it: a machine series GCE cannot place
compactly (the default N1 with a T4) or compact placement without a cluster is refused before any
call; a G2 cluster gets one regional placement policy that every node is created with; a rerun
changes nothing; a node made before compact placement was asked for is named, not moved; make
down removes the nodes, then the policy, which GCE refuses to delete while a node uses it."""

from __future__ import annotations

import pytest

from conftest import flat, run_playbook

REGION = "us-central1"
NAMES = ["jupyter-gpu", "jupyter-gpu-2"]
POLICY = "jupyter-gpu-cluster-compact"
CLUSTER = {"gce_vm_count": 2, "gce_budget_monthly_usd": 3000, "gce_cluster_engines": ["torchrun"],
           "gce_cluster_compact_placement": True}
G2 = {"gce_vm_machine_type": "g2-standard-4", "gce_vm_gpu_type": "nvidia-l4", "gce_vm_gpu_count": 0}


@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    from gce_sandbox.testing import SandboxProcess

    with SandboxProcess(tmp_path_factory.mktemp("gce-placement")) as sandbox:
        sandbox.set_quota("NVIDIA_L4_GPUS", 4, region=REGION)
        yield sandbox


def policy_path(sb) -> str:
    return f"/compute/v1/projects/{sb.project}/regions/{REGION}/resourcePolicies/{POLICY}"


def instances(sb) -> dict[str, dict]:
    listed = sb.api("GET", f"/compute/v1/projects/{sb.project}/aggregated/instances")
    return {i["name"]: i for scope in listed.get("items", {}).values() for i in scope.get("instances", [])}


def test_an_n1_cluster_is_refused_before_any_call(sb):
    sb.clear_requests()
    refused = run_playbook("site.yml", sb, extra_vars=CLUSTER)
    assert refused.rc != 0, refused
    assert ("gce_cluster_compact_placement: GCE does not place n1-standard-8 (N1 series) compactly and would refuse "
            "every node. Set gce_vm_machine_type to a series it does place so: G2") in flat(refused), refused
    assert sb.requests(mutating=True) == []


def test_compact_placement_without_a_cluster_is_refused_before_any_call(sb):
    sb.clear_requests()
    refused = run_playbook("site.yml", sb, extra_vars=dict(CLUSTER, **G2, gce_cluster_engines=[]))
    assert refused.rc != 0, refused
    assert ("gce_cluster_compact_placement places the nodes of a cluster close to each other, and no cluster is "
            "declared") in flat(refused), refused
    assert sb.requests() == []


def test_a_g2_cluster_is_placed_compactly_and_down_removes_the_policy(sb):
    up = run_playbook("site.yml", sb, extra_vars=dict(CLUSTER, **G2))
    assert up.rc == 0, up
    policy = sb.api("GET", policy_path(sb))
    assert policy["groupPlacementPolicy"]["collocation"] == "COLLOCATED"
    vms = instances(sb)
    assert sorted(vms) == NAMES
    for name in NAMES:
        assert vms[name]["resourcePolicies"] == [policy["selfLink"]], vms[name]

    sb.clear_requests()
    again = run_playbook("site.yml", sb, extra_vars=dict(CLUSTER, **G2))
    assert again.rc == 0 and again.changed == 0, again
    assert sb.requests(mutating=True) == []
    assert "created without the compact placement policy" not in again.stdout

    down = run_playbook("playbooks/destroy.yml", sb, extra_vars=dict(CLUSTER, **G2, destroy_confirm="yes"))
    assert down.rc == 0, down
    assert instances(sb) == {}
    status, _ = sb.call("GET", policy_path(sb))
    assert status == 404


def test_nodes_made_before_compact_placement_are_named_not_moved(sb):
    plain = dict(CLUSTER, **G2, gce_cluster_compact_placement=False)
    assert run_playbook("site.yml", sb, extra_vars=plain).rc == 0
    sb.clear_requests()
    later = run_playbook("site.yml", sb, extra_vars=dict(CLUSTER, **G2))
    assert later.rc == 0, later
    for name in NAMES:
        assert (f"{name} was created without the compact placement policy {POLICY}: GCE placed it on its own. "
                "Nothing was changed.") in flat(later), later
    # The policy is made for the nodes to come; no node is touched.
    assert [r["method_id"] for r in sb.requests(mutating=True)] == ["compute.resourcePolicies.insert"]
    assert all("resourcePolicies" not in vm for vm in instances(sb).values())

    down = run_playbook("playbooks/destroy.yml", sb, extra_vars=dict(CLUSTER, **G2, destroy_confirm="yes"))
    assert down.rc == 0, down
    assert instances(sb) == {}
    assert sb.call("GET", policy_path(sb))[0] == 404
