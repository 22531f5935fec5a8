"""Flex-start end to end against the sandbox: with every candidate zone out of capacity, the
opt-in gets a FLEX_START VM with its run duration and says when GCE stops it; preflight refuses
flex-start where GCE would (an N1 machine type) before anything is created."""

from conftest import flat, run_playbook

NAME = "jupyter-gpu"
ZONES = ["us-central1-a", "us-central1-b"]
G2 = {"gce_vm_machine_type": "g2-standard-8", "gce_vm_gpu_type": "nvidia-l4", "gce_vm_gpu_count": 0,
      "gce_vm_candidate_zones": ZONES, "gce_budget_monthly_usd": 2000}


def compute_mutations(sandbox):
    return [r["method_id"] for r in sandbox.requests(mutating=True) if r["method_id"].startswith("compute.")]


def test_all_zones_out_flex_start_gets_a_vm_with_its_run_duration(sandbox):
    sandbox.enable_compute()
    for zone in ZONES:
        sandbox.add_fault("zone_exhausted", zone=zone, count=1)
    sandbox.add_fault("flex_start", zone="us-central1-a", seconds=1, count=1)
    flex = dict(G2, gce_vm_flex_start=True, gce_vm_flex_start_hours=4, gce_vm_flex_start_wait_minutes=5)
    result = run_playbook("site.yml", sandbox, extra_vars=flex)
    assert result.rc == 0, result
    inst = sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/zones/us-central1-a/instances/{NAME}")
    sched = inst["scheduling"]
    assert (sched["provisioningModel"], sched["maxRunDuration"], sched["instanceTerminationAction"]) == (
        "FLEX_START", {"seconds": "14400"}, "STOP")
    assert inst["reservationAffinity"] == {"consumeReservationType": "NO_RESERVATION"}
    text = flat(result)
    assert "flex-start fallback: at most $" in text and "for its 4 h run" in text, result
    assert "Run cap GCE stops it at" in text and "4h 00m after each start" in text, result


def test_flex_start_on_n1_is_refused_before_anything_is_created(sandbox):
    sandbox.enable_compute()
    sandbox.clear_requests()
    result = run_playbook("site.yml", sandbox, extra_vars={"gce_vm_flex_start": True})
    assert result.rc != 0
    assert ("gce_vm_flex_start: flex-start serves accelerator-optimized machine types only (A2, A3, A4, G2), "
            "not n1-standard-8") in flat(result), result
    assert compute_mutations(sandbox) == []
