"""gce_instance_place: the hard run-time cap (scheduling.maxRunDuration + instanceTerminationAction)
is sent to GCE, refused locally where GCE would refuse it, and reported back."""

from tests.support.fake_module import ExitedError, FailedError
from tests.unit.test_gce_instance_place import NAME, place, run, vm  # noqa: F401 - `run` is a fixture

ZONE = "us-central1-a"


def test_the_cap_is_sent_and_reaching_it_stops_the_vm(sandbox, run):  # noqa: F811
    out = run(max_run_seconds=8 * 3600)
    assert isinstance(out, ExitedError), out.result
    sched = vm(sandbox, ZONE)["scheduling"]
    assert sched["maxRunDuration"] == {"seconds": "28800"}
    assert sched["instanceTerminationAction"] == "STOP"
    assert sched["provisioningModel"] == "STANDARD"
    assert out.result["instance"]["max_run_seconds"] == 28800
    assert sandbox.age(ZONE, NAME, 8 * 3600)["status"] == "TERMINATED"
    # The next run starts it again, with the cap counting afresh.
    again = run(max_run_seconds=8 * 3600, existing={"zone": ZONE, "status": "TERMINATED", "name": NAME})
    assert again.result["action"] == "started"
    assert vm(sandbox, ZONE)["status"] == "RUNNING"


def test_no_cap_sends_no_limit(sandbox, run):  # noqa: F811
    assert isinstance(run(), ExitedError)
    sched = vm(sandbox, ZONE)["scheduling"]
    assert "maxRunDuration" not in sched and "instanceTerminationAction" not in sched


def test_delete_action_and_spot(sandbox, run):  # noqa: F811
    out = run(max_run_seconds=3600, max_run_action="DELETE", provisioning_model="SPOT", termination_action="DELETE")
    assert isinstance(out, ExitedError), out.result
    sched = vm(sandbox, ZONE)["scheduling"]
    assert (sched["provisioningModel"], sched["instanceTerminationAction"]) == ("SPOT", "DELETE")
    assert sandbox.age(ZONE, NAME, 3600) == {"name": NAME, "deleted": True}


def test_refusals_name_the_variable_and_send_nothing(sandbox, run):  # noqa: F811
    out = run(max_run_seconds=10)
    assert isinstance(out, FailedError)
    assert out.result["msg"].startswith("gce_vm_max_run_hours: GCE takes a run-time cap of 30 seconds to 120 days")
    out = run(max_run_seconds=3600, max_run_action="STOP", provisioning_model="SPOT", termination_action="DELETE")
    assert isinstance(out, FailedError)
    assert "gce_vm_max_run_action (STOP) must equal gce_vm_instance_termination_action (DELETE)" in out.result["msg"]
    assert not [r for r in sandbox.requests(mutating=True) if "compute" in r.get("method_id", "")]


def test_body_carries_the_cap_only_when_set():
    class Client:
        def zone_path(self, zone, *rest):
            return "projects/p/zones/%s" % zone

        def global_path(self, kind, name):
            return "projects/p/global/%s/%s" % (kind, name)

    base = dict(name=NAME, machine_type="n1-standard-4", gpu_type="", gpu_count=0, source_image="projects/x",
                disk_size_gb=10, disk_type="pd-balanced", labels={}, network="default", external_ip=False,
                metadata={}, vm_service_account="default", scopes=[], tags=[], provisioning_model="STANDARD",
                termination_action="STOP", max_run_seconds=0, max_run_action="STOP")
    assert "maxRunDuration" not in place.instance_body(base, Client(), ZONE)["scheduling"]
    capped = place.instance_body(dict(base, max_run_seconds=90, max_run_action="DELETE"), Client(), ZONE)
    assert capped["scheduling"]["maxRunDuration"] == {"seconds": "90"}
    assert capped["scheduling"]["instanceTerminationAction"] == "DELETE"


G2 = {"machine_type": "g2-standard-8", "gpu_type": "", "gpu_count": 0, "zones": ["us-central1-a", "us-central1-b"],
      "flex_start": True, "flex_start_seconds": 4 * 3600, "flex_start_wait": 60, "max_run_action": "DELETE"}


def test_flex_start_when_every_zone_is_out(sandbox, run):  # noqa: F811
    sandbox.set_quota("PREEMPTIBLE_NVIDIA_L4_GPUS", 2, "us-central1")
    for zone in G2["zones"]:
        sandbox.add_fault("zone_exhausted", zone=zone, count=1)
    sandbox.add_fault("flex_start", zone="us-central1-a", seconds=1, count=1)
    out = run(**G2)
    assert isinstance(out, ExitedError), out.result
    sched = vm(sandbox, "us-central1-a")["scheduling"]
    assert sched["provisioningModel"] == "FLEX_START"
    assert sched["maxRunDuration"] == {"seconds": "14400"} and sched["instanceTerminationAction"] == "DELETE"
    assert vm(sandbox, "us-central1-a")["status"] == "RUNNING"
    assert out.result["flex_start"] == {"zone": "us-central1-a", "run_seconds": 14400, "termination_action": "DELETE"}
    assert out.result["attempt_lines"][-1] == "us-central1-a: created (flex-start)"
    assert out.result["instance"]["max_run_seconds"] == 14400


def test_flex_start_that_stays_pending_is_cancelled_and_opt_out_fails_with_zones(sandbox, run):  # noqa: F811
    sandbox.set_quota("PREEMPTIBLE_NVIDIA_L4_GPUS", 2, "us-central1")
    for zone in G2["zones"]:
        sandbox.add_fault("zone_exhausted", zone=zone, count=2)
    sandbox.add_fault("flex_start", zone="us-central1-a", seconds=600, count=1)
    out = run(**dict(G2, flex_start_wait=2))
    assert isinstance(out, FailedError), out.result
    msg = out.result["msg"]
    assert "us-central1-a: out of capacity (ZONE_RESOURCE_POOL_EXHAUSTED)" in msg
    assert "us-central1-a: skipped (flex-start: no capacity within 0.0333333 min, request cancelled" in msg
    assert "us-central1-b: skipped (flex-start: its wait (gce_vm_flex_start_wait_minutes) is used up)" in msg
    assert "Flex-start (gce_vm_flex_start) found no capacity in us-central1-a, us-central1-b" in msg
    assert vm(sandbox, "us-central1-a") is None and vm(sandbox, "us-central1-b") is None
    # Opt-out (the default): the zones and reasons, and the hint; no flex-start request at all.
    sandbox.clear_requests()
    out = run(**dict(G2, flex_start=False))
    assert isinstance(out, FailedError)
    assert "us-central1-b: out of capacity (ZONE_RESOURCE_POOL_EXHAUSTED)" in out.result["msg"]
    assert "Or let GCE's flex-start wait for capacity: gce_vm_flex_start: true" in out.result["msg"]
    inserts = [r for r in sandbox.requests(mutating=True) if r["method_id"] == "compute.instances.insert"]
    assert len(inserts) == 2 and all("FLEX_START" not in str(r.get("body")) for r in inserts)
