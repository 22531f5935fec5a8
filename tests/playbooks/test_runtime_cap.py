"""The hard run-time cap (gce_vm_max_run_hours) end to end against the sandbox: sent on create,
reported in the summary, reaching it stops the VM and the next `make up` starts it; refused
before anything is created where GCE would refuse it; a VM whose cap differs is reported, never
changed."""

from conftest import flat, run_playbook

NAME = "jupyter-gpu"
ZONE = "us-central1-a"


def vm(sandbox):
    return sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/zones/{ZONE}/instances/{NAME}")


def compute_mutations(sandbox):
    return [r["method_id"] for r in sandbox.requests(mutating=True) if r["method_id"].startswith("compute.")]


def test_cap_stops_the_vm_and_the_next_run_starts_it(sandbox):
    result = run_playbook("site.yml", sandbox, extra_vars={"gce_vm_max_run_hours": 8})
    assert result.rc == 0, result
    sched = vm(sandbox)["scheduling"]
    assert sched["maxRunDuration"] == {"seconds": "28800"} and sched["instanceTerminationAction"] == "STOP"
    assert "Run cap GCE stops it at" in flat(result) and "8h 00m after each start" in flat(result), result
    status = run_playbook("playbooks/status.yml", sandbox)
    assert "jupyter-gpu run-time cap: GCE stops it at" in flat(status), status

    assert sandbox.age(ZONE, NAME, 8 * 3600)["status"] == "TERMINATED"
    sandbox.clear_requests()
    again = run_playbook("site.yml", sandbox, extra_vars={"gce_vm_max_run_hours": 8})
    assert again.rc == 0, again
    assert vm(sandbox)["status"] == "RUNNING"
    assert compute_mutations(sandbox) == ["compute.instances.start"], again
    assert "(in 7h 59m)" in flat(again) or "(in 8h 00m)" in flat(again), again


def test_a_cap_gce_refuses_is_refused_before_anything_is_created(sandbox):
    sandbox.enable_compute()
    sandbox.clear_requests()
    result = run_playbook("site.yml", sandbox, extra_vars={"gce_vm_max_run_hours": 0.005})
    assert result.rc != 0
    assert "gce_vm_max_run_hours: 0.005 is not a run-time cap GCE takes" in flat(result), result
    assert compute_mutations(sandbox) == []

    spot = {"gce_vm_max_run_hours": 4, "gce_vm_provisioning_model": "SPOT", "gce_vm_max_run_action": "DELETE"}
    result = run_playbook("site.yml", sandbox, extra_vars=spot)
    assert result.rc != 0
    assert "gce_vm_max_run_action: DELETE, but gce_vm_instance_termination_action is STOP" in flat(result), result
    assert compute_mutations(sandbox) == []


def test_a_vm_whose_cap_differs_is_reported_with_the_command_not_changed(sandbox):
    assert run_playbook("site.yml", sandbox, extra_vars={"gce_vm_max_run_hours": 8}).rc == 0
    same = run_playbook("site.yml", sandbox, extra_vars={"gce_vm_max_run_hours": 8})
    assert same.rc == 0 and same.changed == 0 and "run-time cap 8 h" not in flat(same), same
    sandbox.clear_requests()
    result = run_playbook("site.yml", sandbox, extra_vars={"gce_vm_max_run_hours": 12})
    assert result.rc == 0, result
    text = flat(result)
    assert ("run-time cap 8 h after each start, then STOP (wanted 12 h after each start, then STOP; "
            "gcloud compute instances set-scheduling jupyter-gpu --zone us-central1-a --max-run-duration=43200s "
            "--instance-termination-action=STOP sets it on the stopped VM") in text, result
    assert vm(sandbox)["scheduling"]["maxRunDuration"] == {"seconds": "28800"}
    assert compute_mutations(sandbox) == []
