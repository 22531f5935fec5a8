"""Unit tests for plugins/module_utils/gce_client.py with a scripted fake HTTP session."""

import json
import os
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "module_utils"))

import gce_client
from gce_client import (
    GceApiError,
    GceClient,
    GceOperationError,
    GceTimeoutError,
)


class FakeResponse:
    def __init__(self, status, payload=None, headers=None, text=None):
        self.status_code = status
        self.headers = headers or {}
        if text is None:
            text = json.dumps(payload) if payload is not None else ""
        self.text = text
        self.content = text.encode()

    def json(self):
        return json.loads(self.text)


class FakeSession:
    """Answers requests from a script: a list of FakeResponse (or callables)."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def request(self, method, url, params=None, json=None, headers=None, timeout=None):
        self.calls.append(dict(method=method, url=url, params=params, json=json))
        item = self.script.pop(0)
        return item(method, url, params, json) if callable(item) else item


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self):
        return self.now


def make_client(script, **kwargs):
    clock = FakeClock()
    session = FakeSession(script)
    kwargs.setdefault("rand", lambda: 1.0)
    client = GceClient("proj", session=session, sleep=clock.sleep, clock=clock, **kwargs)
    return client, session, clock


def error_body(code, reason, message):
    return {"error": {"code": code, "message": message,
                      "errors": [{"domain": "global", "reason": reason, "message": message}]}}


def op(status="DONE", error=None, name="op-1"):
    body = {"kind": "compute#operation", "name": name, "status": status,
            "operationType": "stop", "zone": "https://compute.googleapis.com/compute/v1/projects/proj/zones/us-central1-a",
            "targetLink": "https://compute.googleapis.com/compute/v1/projects/proj/zones/us-central1-a/instances/vm"}
    if error:
        body["error"] = {"errors": error}
        body["httpErrorStatusCode"] = 403
    return body


def test_get_returns_json_and_counts():
    client, session, _ = make_client([FakeResponse(200, {"name": "vm"})])
    assert client.get(client.zone_path("us-central1-a", "instances", "vm")) == {"name": "vm"}
    assert session.calls[0]["url"] == (
        "https://compute.googleapis.com/compute/v1/projects/proj/zones/us-central1-a/instances/vm")
    assert client.counters() == {"requests": 1, "mutating": 0, "retries": 0}


def test_retries_503_three_times_then_succeeds_with_growing_backoff():
    client, session, clock = make_client(
        [FakeResponse(503, error_body(503, "backendError", "try later"))] * 3 + [FakeResponse(200, {"ok": 1})],
        backoff_base=1.0, backoff_cap=30)
    assert client.get("projects/proj/zones/z/instances/vm") == {"ok": 1}
    assert len(session.calls) == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert client.retry_count == 3


def test_backoff_is_capped_and_jittered():
    client, _, _ = make_client([], backoff_base=1.0, backoff_cap=8.0, rand=lambda: 0.0)
    assert client._backoff(0, None) == 0.5
    assert client._backoff(10, None) == 4.0  # half of the cap with rand() == 0
    client._rand = lambda: 1.0
    assert client._backoff(10, None) == 8.0


def test_retry_after_header_is_honoured():
    client, _, clock = make_client(
        [FakeResponse(429, error_body(429, "rateLimitExceeded", "slow down"), headers={"Retry-After": "7"}),
         FakeResponse(200, {})])
    client.get("projects/proj/global/networks")
    assert clock.sleeps == [7.0]


def test_gives_up_after_max_retries_with_typed_error():
    client, session, _ = make_client([FakeResponse(503, error_body(503, "backendError", "down"))] * 3,
                                     max_retries=2)
    with pytest.raises(GceApiError) as info:
        client.get("projects/proj/zones/z/instances/vm")
    assert info.value.status == 503
    assert info.value.reason == "backendError"
    assert len(session.calls) == 3


def test_retry_budget_caps_total_sleep():
    client, session, clock = make_client([FakeResponse(503, {})] * 10, backoff_base=10, backoff_cap=100,
                                         retry_budget=25)
    with pytest.raises(GceApiError):
        client.get("x")
    assert sum(clock.sleeps) <= 25
    assert len(session.calls) == 2  # 10 s slept, the next 20 s would exceed the budget


def test_non_retryable_error_raises_at_once_with_parsed_fields():
    client, session, _ = make_client([FakeResponse(
        400, error_body(400, "invalid", "Instance must be stopped"))])
    with pytest.raises(GceApiError) as info:
        client.post("projects/proj/zones/z/instances/vm/setMachineType", {"machineType": "x"})
    err = info.value
    assert (err.status, err.reason, err.message) == (400, "invalid", "Instance must be stopped")
    assert err.errors[0]["domain"] == "global"
    assert err.method == "POST"
    assert len(session.calls) == 1


def test_403_rate_limit_is_retried_but_plain_403_is_not():
    client, session, _ = make_client([FakeResponse(403, error_body(403, "rateLimitExceeded", "quota")),
                                      FakeResponse(200, {})])
    client.get("x")
    assert len(session.calls) == 2
    client, session, _ = make_client([FakeResponse(403, error_body(403, "forbidden", "nope"))])
    with pytest.raises(GceApiError):
        client.get("x")
    assert len(session.calls) == 1


def test_mutating_requests_carry_one_request_id_across_retries():
    client, session, _ = make_client([FakeResponse(503, {}), FakeResponse(200, op())])
    client.post("projects/proj/zones/z/instances/vm/stop")
    ids = [c["params"]["requestId"] for c in session.calls]
    assert ids[0] == ids[1] and len(ids[0]) == 36
    assert client.mutating_count == 2


def test_get_or_none_on_404():
    client, _, _ = make_client([FakeResponse(404, error_body(404, "notFound", "gone"))])
    assert client.get_or_none("projects/proj/zones/z/instances/vm") is None


def test_non_json_error_body():
    err = gce_client.parse_error_response(502, "<html>Bad Gateway</html>", "GET", "u")
    assert err.status == 502 and err.reason is None and "Bad Gateway" in err.message


def test_list_follows_pages():
    client, session, _ = make_client([FakeResponse(200, {"items": [1, 2], "nextPageToken": "t"}),
                                      FakeResponse(200, {"items": [3]})])
    assert client.list("projects/proj/zones/z/instances") == [1, 2, 3]
    assert session.calls[1]["params"] == {"pageToken": "t"}


def test_aggregated_list_flattens_scopes():
    page = {"items": {"zones/a": {"instances": [{"name": "x"}]},
                      "zones/b": {"warning": {"code": "NO_RESULTS_ON_PAGE"}}}}
    client, session, _ = make_client([FakeResponse(200, page)])
    assert client.aggregated_list("instances", filter="labels.managed-by=gpu-jupyter") == [{"name": "x"}]
    assert session.calls[0]["url"].endswith("/projects/proj/aggregated/instances")
    assert session.calls[0]["params"] == {"filter": "labels.managed-by=gpu-jupyter"}


def test_wait_for_operation_polls_zone_operation_until_done():
    client, session, clock = make_client([FakeResponse(200, op("RUNNING")), FakeResponse(200, op("DONE"))])
    done = client.wait_for_operation(op("PENDING"), timeout=60)
    assert done["status"] == "DONE"
    assert session.calls[0]["url"].endswith("/projects/proj/zones/us-central1-a/operations/op-1")
    assert len(clock.sleeps) == 2


def test_wait_for_operation_raises_with_gce_codes():
    failing = op("DONE", error=[{"code": "QUOTA_EXCEEDED", "message": "Quota 'NVIDIA_T4_GPUS' exceeded"}])
    client, _, _ = make_client([FakeResponse(200, failing)])
    with pytest.raises(GceOperationError) as info:
        client.wait_for_operation(op("RUNNING"), timeout=60)
    assert info.value.codes == ["QUOTA_EXCEEDED"]
    assert "NVIDIA_T4_GPUS" in str(info.value)
    assert info.value.to_dict()["http_status"] == 403


def test_wait_for_operation_times_out():
    client, _, _ = make_client([FakeResponse(200, op("RUNNING"))] * 50, poll_interval=1, poll_interval_cap=1)
    with pytest.raises(GceTimeoutError) as info:
        client.wait_for_operation(op("RUNNING"), timeout=5)
    assert info.value.timeout == 5


def test_region_and_global_operations():
    client, _, _ = make_client([])
    assert client.operation_path({"name": "o", "region": "https://x/regions/us-central1"}) == \
        "projects/proj/regions/us-central1/operations/o"
    assert client.operation_path({"name": "o"}) == "projects/proj/global/operations/o"


def test_call_waits_only_for_operations():
    client, session, _ = make_client([FakeResponse(200, op("RUNNING")), FakeResponse(200, op("DONE"))])
    assert client.call("POST", "projects/proj/zones/z/instances/vm/stop")["status"] == "DONE"
    client, session, _ = make_client([FakeResponse(200, {"name": "vm"})])
    assert client.call("GET", "projects/proj/zones/z/instances/vm") == {"name": "vm"}


def test_self_links_from_either_google_host_are_rerooted():
    client, _, _ = make_client([], base_url="https://sandbox.example/compute/v1")
    for host in ("www", "compute"):
        assert client.url("https://%s.googleapis.com/compute/v1/projects/p/zones/z" % host) == \
            "https://sandbox.example/compute/v1/projects/p/zones/z"


def test_parse_retry_after_http_date():
    assert gce_client._parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert gce_client._parse_retry_after("soon") is None


def test_credentials_validation():
    with pytest.raises(gce_client.GceError, match="access_token"):
        gce_client.credentials_from_params({"auth_kind": "accesstoken"})
    with pytest.raises(gce_client.GceError, match="serviceaccount"):
        gce_client.credentials_from_params({"auth_kind": "application", "service_account_file": "/x"})
    creds = gce_client.credentials_from_params({"auth_kind": "accesstoken", "access_token": "tok"})
    assert creds.token == "tok"


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40))
def test_resource_name_of_url_is_last_segment(name):
    assert (
        gce_client.resource_name("https://compute.googleapis.com/compute/v1/projects/p/zones/z/machineTypes/" + name)
        == name
    )
    assert gce_client.resource_name(name) == name
