"""The SSH firewall rule (google.cloud.gcp_compute_firewall, which gives up on a single 429 or 503)
is created through a throttling burst, gives up after a bounded number of tries when the burst
does not end, and stops waiting on an operation at gce_vm_operation_timeout, saying so."""

from conftest import run_playbook

RULE = "gpu-jupyter-allow-ssh"
# The role's wait between tries is made short here so the test takes seconds; the count is the role's.
FAST = {"__gce_vm_firewall_retry_delay": 1}
TASK = "Firewall | Allow SSH from the configured ranges only"


def calls(sandbox, method, suffix):
    return [r["status"] for r in sandbox.requests() if r["method"] == method and suffix in r["path"]]


def test_the_firewall_rule_rides_out_a_dropped_connection_and_a_429_503_burst(sandbox):
    # A dropped connection on the module's first read, then throttling on the insert itself and
    # while the module polls the insert's operation.
    sandbox.add_fault("disconnect", count=1, method="GET", path_regex=r"/global/firewalls/%s$" % RULE)
    sandbox.add_fault("http_error", status=429, count=2, method="POST", path_regex=r"/global/firewalls$")
    sandbox.add_fault("http_error", status=503, count=1, method="GET", path_regex=r"/global/operations/")
    result = run_playbook("playbooks/provision.yml", sandbox, extra_vars=FAST)
    assert result.rc == 0, result
    assert result.stdout.count("FAILED - RETRYING: [") >= 4, result
    rule = sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/global/firewalls/{RULE}")
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]
    assert rule["targetTags"] == ["gpu-jupyter"]
    inserts = calls(sandbox, "POST", "/global/firewalls")
    # Two throttled inserts, the one that succeeded, and no second rule after the lost poll.
    assert inserts == [429, 429, 200], inserts
    assert 503 in calls(sandbox, "GET", "/global/operations/")


def test_a_burst_that_does_not_end_fails_after_a_bounded_number_of_tries(sandbox):
    sandbox.add_fault("http_error", status=429, method="POST", path_regex=r"/global/firewalls$")
    result = run_playbook("playbooks/provision.yml", sandbox, extra_vars=FAST)
    assert result.rc != 0, result
    flat = " ".join(result.stdout.split())
    assert ("Firewall rule %s could not be put in place: the first try and 6 retries 1s apart failed; the last "
            "said: GCP returned error:" % RULE) in flat, result
    assert "No VM was created or started." in flat, result
    # The first try and six retries, then the play stops before any VM is created.
    assert calls(sandbox, "POST", "/global/firewalls") == [429] * 7
    assert calls(sandbox, "POST", "/instances") == []


def test_an_operation_that_does_not_finish_stops_at_the_timeout_and_names_it(sandbox, tmp_path):
    sandbox.enable_compute()
    sandbox.add_fault("slow_operations", seconds=300)
    # async kills the module at the limit before it removes its payload directory: keep that here.
    result = run_playbook("playbooks/provision.yml", sandbox, extra_vars=dict(FAST, gce_vm_operation_timeout=5),
                          timeout=240, env={"TMPDIR": str(tmp_path)})
    assert result.rc != 0, result
    flat = " ".join(result.stdout.split())
    assert ("GCE had not finished creating or updating firewall rule %s after 5s, the limit "
            "gce_vm_operation_timeout sets" % RULE) in flat, result
    assert "raise gce_vm_operation_timeout (now 5s)" in flat, result
    # No retry after the deadline, and nothing created after it.
    assert calls(sandbox, "POST", "/global/firewalls") == [200]
    assert calls(sandbox, "POST", "/instances") == []


def test_enabling_the_compute_api_rides_out_a_429_503_burst(sandbox):
    # A fresh project (the Compute API is off): google.cloud.gcp_serviceusage_service alone gives
    # up on the first 429.
    sandbox.add_fault("http_error", status=429, count=1, method="POST", path_regex=r":enable$")
    sandbox.add_fault("http_error", status=503, count=1, method="POST", path_regex=r":enable$")
    result = run_playbook("playbooks/provision.yml", sandbox,
                          extra_vars={"__gce_vm_api_retry_delay": 1, **FAST})
    assert result.rc == 0, result
    enables = [r["status"] for r in sandbox.requests()
               if r["method"] == "POST" and r["path"].endswith("/compute.googleapis.com:enable")]
    assert enables == [429, 503, 200], enables
    assert calls(sandbox, "POST", "/instances") == [200]
