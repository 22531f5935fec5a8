"""A cluster declaration that cannot work is refused before anything is created or billed: an
engine this project does not know, and zone failover (a cluster is one zone)."""

from conftest import run_playbook

CLUSTER = {"gce_vm_count": 3, "gce_budget_monthly_usd": 2000, "gce_cluster_engines": ["ray", "torchrun"]}


def test_an_unknown_engine_is_refused_by_validation(sandbox):
    result = run_playbook("playbooks/validate.yml", sandbox,
                          extra_vars=dict(CLUSTER, gce_cluster_engines=["ray", "slurm"]))
    assert result.rc != 0, result
    assert "gce_cluster_engines names engines this project does not know: slurm" in result.stdout, result
    assert sandbox.requests() == []


def test_known_engines_pass_validation(sandbox):
    result = run_playbook("playbooks/validate.yml", sandbox, extra_vars=CLUSTER)
    assert result.rc == 0, result
    assert "Validate | Check Ray's version, paths, account and ports" in result.stdout, result


def test_a_cluster_with_candidate_zones_is_refused_before_any_call(sandbox):
    result = run_playbook("playbooks/provision.yml", sandbox,
                          extra_vars=dict(CLUSTER, gce_vm_candidate_zones=["us-central1-b"]))
    assert result.rc != 0, result
    assert "runs in one zone, gce_vm_zone (us-central1-a), and does not fail over zone by zone" in result.stdout, result
    assert sandbox.requests(mutating=True) == []
