"""The SSH firewall rule (google.cloud.gcp_compute_firewall, which gives up on a single 429 or 503)
is created through a throttling burst, and gives up after a bounded number of tries when the burst
does not end."""

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
    assert "fatal: [" in result.stdout and TASK in result.stdout, result
    # The first try and six retries, then the play stops before any VM is created.
    assert calls(sandbox, "POST", "/global/firewalls") == [429] * 7
    assert calls(sandbox, "POST", "/instances") == []
