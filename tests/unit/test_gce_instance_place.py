"""gce_instance_place against the local GCE sandbox's faults: a partial insert is cleaned up before
the next zone, and a lost connection or an operation still running at the deadline is reported as
what it is (never "GCE refused"), with what exists now and what the next run does."""

import importlib

import pytest

from tests.support.fake_module import ExitedError, FailedError, FakeModule, load

place = load("gce_instance_place")
gce_client = importlib.import_module("ansible.module_utils.gce_client")

NAME = "jupyter-gpu"
LABELS = {"managed-by": "gpu-jupyter"}


@pytest.fixture
def run(sandbox, monkeypatch):
    """Run the module's main() against the sandbox; returns the result (ExitedError or FailedError)."""
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    sandbox.enable_compute()
    # Short backoffs and polls so a lost connection or a slow operation costs seconds here.
    monkeypatch.setattr(place.GceClient, "from_module", classmethod(lambda cls, module: cls.from_params(
        module.params, backoff_base=0.02, max_retries=2, poll_interval=0.05, poll_interval_cap=0.2)))
    monkeypatch.setattr(place, "AnsibleModule", FakeModule)

    def _run(**args):
        FakeModule.args = dict({
            "auth_kind": "accesstoken", "access_token": sandbox.env["GCP_ACCESS_TOKEN"], "project": sandbox.project,
            "name": NAME, "zones": ["us-central1-a", "us-central1-b"], "existing": {},
            "machine_type": "n1-standard-4", "gpu_type": "nvidia-tesla-t4", "gpu_count": 1,
            "source_image": "projects/debian-cloud/global/images/family/debian-12", "disk_size_gb": 20,
            "labels": LABELS, "timeout": 30}, **args)
        with pytest.raises((FailedError, ExitedError)) as info:
            place.main()
        return info.value
    return _run


def vm(sandbox, zone):
    status, body = sandbox.call("GET", f"/compute/v1/projects/{sandbox.project}/zones/{zone}/instances/{NAME}")
    return body if status == 200 else None


def disk(sandbox, zone):
    status, body = sandbox.call("GET", f"/compute/v1/projects/{sandbox.project}/zones/{zone}/disks/{NAME}")
    return body if status == 200 else None


def test_a_partial_insert_is_cleaned_up_before_the_next_zone(sandbox, run):
    sandbox.add_fault("partial_insert", zone="us-central1-a", count=1)
    out = run()
    assert isinstance(out, ExitedError), out.result
    first, second = out.result["attempts"]
    assert (first["zone"], first["result"]) == ("us-central1-a", "exhausted")
    assert first["cleaned_up"] == ["instance %s" % NAME]
    assert vm(sandbox, "us-central1-a") is None and disk(sandbox, "us-central1-a") is None
    assert (second["zone"], second["result"]) == ("us-central1-b", "created")
    assert vm(sandbox, "us-central1-b")["status"] == "RUNNING"


def test_a_connection_lost_after_the_insert_says_so_and_that_the_vm_exists(sandbox, run):
    # GCE acts on the insert, but no answer ever comes back (every retry is dropped too).
    sandbox.add_fault("disconnect", when="after", method="POST", path_regex=r"/instances$")
    out = run()
    assert isinstance(out, FailedError), out.result
    msg = out.result["msg"]
    assert "GCE refused" not in msg.replace("GCE refused nothing", "")
    assert msg.startswith("Lost the connection to the Compute API while creating %s in us-central1-a" % NAME), msg
    assert "%s exists now in us-central1-a, status RUNNING." % NAME in msg
    assert "The next run finds %s there and keeps it (starting it if it is stopped): it never creates a second one." \
        % NAME in msg
    assert out.result["error"]["reason"] == "connectionError"
    # Nothing second was tried, and one VM exists.
    assert vm(sandbox, "us-central1-b") is None


def test_a_connection_lost_before_the_insert_says_nothing_exists(sandbox, run):
    sandbox.add_fault("disconnect", method="POST", path_regex=r"/instances$")
    out = run()
    msg = out.result["msg"]
    assert msg.startswith("Lost the connection to the Compute API while creating"), msg
    assert "Nothing of it exists now: us-central1-a has no instance %s." % NAME in msg
    assert "The next run tries the candidate zones (gce_vm_candidate_zones) again from the first." in msg
    assert vm(sandbox, "us-central1-a") is None


def test_a_connection_still_down_leaves_what_exists_unknown(sandbox, run):
    sandbox.add_fault("disconnect", path_regex=r"/zones/us-central1-a/instances")
    out = run()
    msg = out.result["msg"]
    assert msg.startswith("Lost the connection to the Compute API while creating"), msg
    assert "What exists now is unknown" in msg
    assert "The next run looks for %s in every zone first" % NAME in msg
    assert "Check the network path to the Compute API" in msg


def test_an_insert_past_the_deadline_names_the_variable_and_what_exists(sandbox, run):
    sandbox.add_fault("slow_operations", seconds=30)
    out = run(timeout=1)
    assert isinstance(out, FailedError), out.result
    msg = out.result["msg"]
    assert msg.startswith("Creating %s in us-central1-a was not finished after 1s, the limit "
                          "gce_vm_operation_timeout sets (GCE's insert operation " % NAME), msg
    assert "%s exists now in us-central1-a, status STAGING." % NAME in msg
    assert "nothing was cancelled, and GCE may still finish it" in msg
    assert "The next run finds %s there and keeps it" % NAME in msg
    assert "raise gce_vm_operation_timeout (now 1s)" in msg
    # The VM GCE is still creating is left alone: no delete, no second zone.
    assert vm(sandbox, "us-central1-a") is not None and vm(sandbox, "us-central1-b") is None
    assert [r for r in sandbox.requests(mutating=True) if r["method"] == "DELETE"] == []


def test_a_429_and_503_burst_on_the_insert_makes_one_vm(sandbox, run):
    sandbox.add_fault("http_error", status=429, count=1, method="POST", path_regex=r"/instances$")
    sandbox.add_fault("http_error", status=503, count=1, method="POST", path_regex=r"/instances$")
    out = run()
    assert isinstance(out, ExitedError), out.result
    assert out.result["action"] == "created" and out.result["zone"] == "us-central1-a"
    inserts = [r for r in sandbox.requests(mutating=True) if r["path"].endswith("/instances")]
    assert [r["status"] for r in inserts] == [429, 503, 200]
    assert len({r["query"]["requestId"] for r in inserts}) == 1


def test_a_spot_vm_still_stopping_at_the_deadline_is_not_started(sandbox, run):
    assert isinstance(run(provisioning_model="SPOT"), ExitedError)
    sandbox.add_fault("slow_operations", seconds=60)
    sandbox.api("POST", f"/compute/v1/projects/{sandbox.project}/zones/us-central1-a/instances/{NAME}/stop")
    out = run(provisioning_model="SPOT", timeout=3,
              existing={"zone": "us-central1-a", "status": "STOPPING", "provisioning_model": "SPOT"})
    assert isinstance(out, FailedError), out.result
    assert out.result["msg"].startswith(
        "%s in us-central1-a is still STOPPING after 3s, the limit gce_vm_operation_timeout sets" % NAME)
    assert "raise gce_vm_operation_timeout (now 3s)" in out.result["msg"]
    assert not [r for r in sandbox.requests(mutating=True) if r["path"].endswith("/start")]


def test_builtin_gpu_machine_types_get_terminate_on_host_maintenance():
    class Client:
        project = "p"

        @staticmethod
        def zone_path(zone):
            return "projects/p/zones/" + zone

        @staticmethod
        def global_path(*parts):
            return "projects/p/global/" + "/".join(parts)

    params = {"name": NAME, "gpu_count": 0, "gpu_type": "", "provisioning_model": "STANDARD",
              "source_image": "projects/x/global/images/y", "disk_size_gb": 100, "disk_type": "pd-balanced",
              "labels": {}, "network": "default", "external_ip": True, "metadata": {}, "tags": [],
              "vm_service_account": "default", "scopes": []}
    from ansible.module_utils.gce_preflight_checks import BUILTIN_GPU_FAMILIES
    for family in BUILTIN_GPU_FAMILIES:
        body = place.instance_body(dict(params, machine_type=family + "-standard-48"), Client, "us-central1-a")
        assert body["scheduling"]["onHostMaintenance"] == "TERMINATE", family
    body = place.instance_body(dict(params, machine_type="n2-standard-8"), Client, "us-central1-a")
    assert body["scheduling"]["onHostMaintenance"] == "MIGRATE"
