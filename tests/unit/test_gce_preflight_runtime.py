"""Preflight's local rules for the run-time cap and flex-start (no API call), the preemptible quota
flex-start draws, and the drift line for a VM whose cap differs."""

import importlib

import pytest

# Importing it puts plugins/module_utils and plugins/modules on the import paths.
from tests.unit.test_gce_preflight_local import GOOD, pc

preflight = importlib.import_module("gce_preflight")

G2 = dict(GOOD, machine_type="g2-standard-8", gpu_type="", gpu_count=0, flex_start=True, flex_start_hours=8,
          flex_start_wait_minutes=30)


def refusals(**change):
    return [(r.variable, r.message) for r in pc.local_refusals(dict(GOOD, **change))]


@pytest.mark.parametrize("hours", [0.005, 2881, -1, "soon"])
def test_caps_gce_refuses_are_refused(hours):
    [(variable, message)] = refusals(max_run_hours=hours)
    assert variable == "gce_vm_max_run_hours" and "between 0.0084 (30 seconds) and 2880 (120 days)" in message


@pytest.mark.parametrize("hours", [0, 0.0084, 12, 2880])
def test_caps_gce_takes_pass(hours):
    assert refusals(max_run_hours=hours) == []


def test_spot_needs_one_action_and_delete_must_be_asked_for_by_name():
    [(variable, message)] = refusals(max_run_hours=4, provisioning_model="SPOT", max_run_action="DELETE")
    assert variable == "gce_vm_max_run_action" and "one termination action for both" in message
    assert refusals(max_run_hours=4, max_run_action="DELETE") == []
    assert refusals(max_run_hours=4, max_run_action="KILL")[0][0] == "gce_vm_max_run_action"


def test_flex_start_rules():
    assert [r.variable for r in pc.local_refusals(G2)] == []
    n1 = [(r.variable, r.message) for r in pc.local_refusals(dict(GOOD, flex_start=True, flex_start_hours=8,
                                                                  flex_start_wait_minutes=30))]
    assert n1[0][0] == "gce_vm_flex_start" and "not n1-standard-8" in n1[0][1] and "g2-standard-8" in n1[0][1]
    assert [r.variable for r in pc.local_refusals(dict(G2, flex_start_hours=169))] == ["gce_vm_flex_start_hours"]
    assert [r.variable for r in pc.local_refusals(dict(G2, flex_start_wait_minutes=121))] == [
        "gce_vm_flex_start_wait_minutes"]
    # Off, nothing about flex-start is judged.
    assert pc.local_refusals(dict(GOOD, flex_start=False, flex_start_hours=999)) == []


def test_flex_start_checks_the_preemptible_gpu_quota_and_names_its_variable():
    p = dict(GOOD, flex_start=True)
    wanted = pc.quota_metrics(p, 8, "nvidia-tesla-t4", 1)
    assert ("NVIDIA_T4_GPUS", 1, "region") in wanted and ("PREEMPTIBLE_NVIDIA_T4_GPUS", 1, "region") in wanted
    assert ("PREEMPTIBLE_NVIDIA_T4_GPUS", 1, "region") not in pc.quota_metrics(GOOD, 8, "nvidia-tesla-t4", 1)
    quotas = {"region": {"NVIDIA_T4_GPUS": {"limit": 4, "usage": 0},
                         "PREEMPTIBLE_NVIDIA_T4_GPUS": {"limit": 0, "usage": 0}}, "region_name": "us-central1"}
    [short] = pc.quota_shortfalls(p, quotas, wanted[:1] + [w for w in wanted if w[0].startswith("PREEMPTIBLE")])
    assert short.variable == "gce_vm_flex_start" and "Flex-start VMs draw this preemptible quota" in short.message


def test_a_cap_that_differs_is_drift_with_the_command():
    have = {"name": "jupyter-gpu", "zone": "us-central1-b", "max_run_seconds": 0, "instance_termination_action": None}
    line = preflight.run_limit_difference({"max_run_hours": 12, "max_run_action": "STOP"}, have)
    assert line == ("run-time cap none (wanted 12 h after each start, then STOP; gcloud compute instances "
                    "set-scheduling jupyter-gpu --zone us-central1-b --max-run-duration=43200s "
                    "--instance-termination-action=STOP sets it on the stopped VM, or declare the VM's cap in "
                    "gce_vm_max_run_hours)")
    same = dict(have, max_run_seconds=43200, instance_termination_action="STOP")
    assert preflight.run_limit_difference({"max_run_hours": 12, "max_run_action": "STOP"}, same) is None
    assert "--clear-max-run-duration" in preflight.run_limit_difference({"max_run_hours": 0}, same)


def test_flex_start_run_is_priced_and_held_to_the_budget():
    result = {"cost": {}}
    p = {"flex_start_hours": 10, "fleet_size": 1, "max_run_action": "STOP", "budget_monthly_usd": 5}
    refusal = preflight.flex_start_cost(result, {"hourly": 1.25}, p)
    assert result["cost"]["flex_start"]["run_usd"] == 12.5
    assert "at most $12.50 for its 10 h run" in result["cost"]["flex_start"]["text"]
    assert "over gce_budget_monthly_usd ($5): lower gce_vm_flex_start_hours" in refusal
    assert preflight.flex_start_cost({"cost": {}}, {"hourly": 1.25}, dict(p, budget_monthly_usd=100)) is None
