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
