"""gce_client against the local GCE sandbox over its HTTPS proxy: retries of injected bursts,
operation waits and GCE's own error codes. No Ansible involved: seconds, not minutes."""

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "module_utils"))
from gce_client import GceApiError, GceClient, GceConnectionError, GceOperationError, GceTimeoutError

ZONE = "us-central1-a"


@pytest.fixture
def client(sandbox, monkeypatch):
    # Exactly what a module sees: HTTPS_PROXY, REQUESTS_CA_BUNDLE and the token from the environment.
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    sandbox.enable_compute()
    made = GceClient.from_params({"auth_kind": "accesstoken", "access_token": sandbox.env["GCP_ACCESS_TOKEN"],
                                  "project": sandbox.project}, backoff_base=0.05, poll_interval=0.1)
    return made


def create_vm(client, name="vm", gpus=1):
    body = {
        "name": name, "machineType": f"zones/{ZONE}/machineTypes/n1-standard-4",
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
            "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
        "networkInterfaces": [{"network": "global/networks/default"}],
        "scheduling": {"onHostMaintenance": "TERMINATE"},
    }
    if gpus:
        body["guestAccelerators"] = [{"acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4",
                                      "acceleratorCount": gpus}]
    return client.call("POST", client.zone_path(ZONE, "instances"), body, timeout=30)


def logged(sandbox, method, suffix):
    return [r for r in sandbox.requests() if r["method"] == method and r["path"].endswith(suffix)]


def test_503_burst_is_retried_until_success(sandbox, client):
    create_vm(client)
    sandbox.clear_requests()
    sandbox.add_fault("http_error", status=503, count=3, method="GET", path_regex=r"/instances/vm$")
    vm = client.get(client.zone_path(ZONE, "instances", "vm"))
    assert vm["status"] == "RUNNING"
    assert client.retry_count == 3
    assert [r["status"] for r in logged(sandbox, "GET", "/instances/vm")] == [503, 503, 503, 200]


def test_429_burst_on_a_mutation_reuses_one_request_id(sandbox, client):
    create_vm(client)
    sandbox.clear_requests()
    sandbox.add_fault("http_error", status=429, count=2, method="POST", path_regex=r"/instances/vm/stop$")
    client.call("POST", client.zone_path(ZONE, "instances", "vm", "stop"), timeout=30)
    attempts = logged(sandbox, "POST", "/instances/vm/stop")
    assert [r["status"] for r in attempts] == [429, 429, 200]
    assert len({r["query"]["requestId"] for r in attempts}) == 1
    assert client.get(client.zone_path(ZONE, "instances", "vm"))["status"] == "TERMINATED"


def test_a_burst_longer_than_max_retries_surfaces_the_typed_error(sandbox, client):
    client.max_retries = 2
    sandbox.add_fault("http_error", status=503, count=5, method="GET", path_regex=r"/zones/us-central1-a$")
    with pytest.raises(GceApiError) as info:
        client.get(client.project_path("zones", ZONE))
    assert (info.value.status, info.value.reason) == (503, "backendError")


def test_slow_operations_are_waited_for_and_time_out_cleanly(sandbox, client):
    create_vm(client, gpus=0)
    sandbox.add_fault("slow_operations", seconds=2)
    started = time.monotonic()
    op = client.post(client.zone_path(ZONE, "instances", "vm", "stop"))
    assert op["status"] != "DONE"
    with pytest.raises(GceTimeoutError):
        client.wait_for_operation(op, timeout=0.5)
    done = client.wait_for_operation(op, timeout=30)
    assert done["status"] == "DONE" and time.monotonic() - started >= 1.5


def test_operation_errors_carry_gce_codes(sandbox, client):
    create_vm(client, gpus=1)
    client.call("POST", client.zone_path(ZONE, "instances", "vm", "stop"), timeout=30)
    client.call("POST", client.zone_path(ZONE, "instances", "vm", "setMachineResources"),
                {"guestAccelerators": [{"acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4",
                                        "acceleratorCount": 4}]}, timeout=30)
    sandbox.set_quota("NVIDIA_T4_GPUS", 2, region="us-central1")
    with pytest.raises(GceOperationError) as info:
        client.call("POST", client.zone_path(ZONE, "instances", "vm", "start"), timeout=30)
    assert info.value.codes == ["QUOTA_EXCEEDED"]
    assert "NVIDIA_T4_GPUS" in str(info.value)


def test_http_errors_are_parsed(client):
    create_vm(client, gpus=0)
    with pytest.raises(GceApiError) as info:
        client.post(client.zone_path(ZONE, "instances", "vm", "setMachineType"),
                    {"machineType": f"zones/{ZONE}/machineTypes/n1-standard-8"})
    assert info.value.status == 400 and "must be stopped" in info.value.message
    assert client.get_or_none(client.zone_path(ZONE, "instances", "nope")) is None


def test_realistic_operations_are_polled_until_done(sandbox, client):
    """Under realistic timing (x0.25: a 3 s insert) the client waits on the zone operation with
    growing intervals instead of finding it DONE at the first look."""
    sandbox.set_timing("realistic", 0.25)
    try:
        sandbox.clear_requests()
        started = time.monotonic()
        op = create_vm(client, gpus=0)
        elapsed = time.monotonic() - started
    finally:
        sandbox.set_timing("instant")
    assert op["status"] == "DONE" and elapsed >= 2.5
    polls = [r for r in sandbox.requests() if r["method"] == "GET" and "/operations/" in r["path"]]
    assert len(polls) >= 3
    assert client.get(client.zone_path(ZONE, "instances", "vm"))["status"] == "RUNNING"


def test_a_429_and_503_burst_on_insert_makes_exactly_one_vm(sandbox, client):
    sandbox.add_fault("http_error", status=429, count=2, method="POST", path_regex=r"/instances$")
    sandbox.add_fault("http_error", status=503, count=2, method="POST", path_regex=r"/instances$")
    sandbox.clear_requests()
    op = create_vm(client, gpus=0)
    assert op["status"] == "DONE" and "error" not in op
    attempts = logged(sandbox, "POST", "/instances")
    assert [r["status"] for r in attempts] == [429, 429, 503, 503, 200]
    assert len({r["query"]["requestId"] for r in attempts}) == 1
    assert client.retry_count == 4
    assert [i["name"] for i in client.list(client.zone_path(ZONE, "instances"))] == ["vm"]


def test_a_503_burst_while_polling_the_operation_is_ridden_out(sandbox, client):
    sandbox.set_timing("realistic", 0.1)
    try:
        op = client.post(client.zone_path(ZONE, "instances"), {
            "name": "vm", "machineType": f"zones/{ZONE}/machineTypes/n1-standard-4",
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
            "networkInterfaces": [{"network": "global/networks/default"}]})
        sandbox.add_fault("http_error", status=503, count=3, method="GET", path_regex=r"/operations/")
        done = client.wait_for_operation(op, timeout=30)
    finally:
        sandbox.set_timing("instant")
    assert done["status"] == "DONE" and client.retry_count == 3


def test_an_answer_lost_after_the_insert_was_done_does_not_make_a_second_vm(sandbox, client):
    """The worst connection failure: GCE did the insert, the answer never arrived. The retry carries
    the same requestId, so GCE (and the sandbox) hand back the first operation."""
    sandbox.add_fault("disconnect", when="after", count=1, method="POST", path_regex=r"/instances$")
    sandbox.clear_requests()
    op = create_vm(client, gpus=0)
    assert op["status"] == "DONE" and "error" not in op
    attempts = logged(sandbox, "POST", "/instances")
    assert [r["status"] for r in attempts] == [0, 200]
    assert len({r["query"]["requestId"] for r in attempts}) == 1
    assert [i["name"] for i in client.list(client.zone_path(ZONE, "instances"))] == ["vm"]


def test_a_connection_that_stays_down_says_so_within_the_bound(sandbox, client):
    client.max_retries = 2
    sandbox.add_fault("disconnect", method="GET", path_regex=r"/zones/us-central1-a$")
    started = time.monotonic()
    with pytest.raises(GceConnectionError) as info:
        client.get(client.project_path("zones", ZONE))
    assert time.monotonic() - started < 10
    assert info.value.status is None and info.value.attempts == 3
    assert "GCE refused nothing" in info.value.message and "no answer" in info.value.message
    assert len(logged(sandbox, "GET", "/zones/us-central1-a")) == 3
    sandbox.clear_faults()
