"""playbooks/quota_request.yml against the sandbox's Cloud Quotas API: files a QuotaPreference once."""

from conftest import flat, run_playbook


def test_quota_request_files_a_quota_preference_once(sandbox):
    request = {"gce_quota_request_metric": "NVIDIA_T4_GPUS", "gce_quota_request_region": "us-central1",
               "gce_quota_request_value": 8}
    first = run_playbook("playbooks/quota_request.yml", sandbox, extra_vars=request)
    assert first.rc == 0, first
    assert first.changed == 1, first
    assert "NVIDIA-T4-GPUS-per-project-region in us-central1: current limit 4.0, increase to 8 filed" in flat(first), (
        first
    )
    [pref] = sandbox.state()["quota_preferences"].values()
    assert pref["service"] == "compute.googleapis.com"
    assert pref["quotaId"] == "NVIDIA-T4-GPUS-per-project-region"
    assert pref["dimensions"] == {"region": "us-central1"}
    assert pref["quotaConfig"]["preferredValue"] == "8"
    assert pref["justification"]

    sandbox.clear_requests()
    again = run_playbook("playbooks/quota_request.yml", sandbox, extra_vars=request)
    assert again.rc == 0 and again.changed == 0, again
    assert "a request for 8 is already filed" in flat(again), again
    assert sandbox.requests(mutating=True) == []


def test_quota_request_files_nothing_when_the_limit_suffices(sandbox):
    result = run_playbook("playbooks/quota_request.yml", sandbox, extra_vars={
        "gce_quota_request_metric": "GPUS_ALL_REGIONS", "gce_quota_request_value": 2})
    assert result.rc == 0 and result.changed == 0, result
    assert "already enough, nothing filed" in flat(result), result
    assert sandbox.requests(mutating=True) == []


def test_quota_request_needs_the_region_of_a_regional_metric(sandbox):
    result = run_playbook("playbooks/quota_request.yml", sandbox, extra_vars={
        "gce_quota_request_metric": "NVIDIA_T4_GPUS", "gce_quota_request_value": 2})
    assert result.rc != 0, result
    assert "gce_quota_request_region: NVIDIA_T4_GPUS is a regional quota" in flat(result), result
