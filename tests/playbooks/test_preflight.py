"""Preflight against the local GCE sandbox: bad requests refused before any mutating call,
short quota and over-budget refused with the numbers."""

import pytest

from conftest import flat, run_playbook



KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0cDJ4cTJ1bHl0ZXN0a2V5a2V5a2V5a2V5a2V5 alice@laptop"


@pytest.fixture(scope="module")
def preflight_playbook():
    """The real entry point; gce_vm validates, then runs preflight before any mutating call."""
    return "playbooks/provision.yml"


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory):
    from gce_sandbox.testing import SandboxProcess

    with SandboxProcess(tmp_path_factory.mktemp("gce-sandbox-preflight")) as sb:
        sb.enable_compute()
        yield sb


# (extra vars, texts the refusal must contain, refused without any API call)
BAD_INPUTS = [
    ({"gce_vm_name": "Jupyter_GPU"}, ["gce_vm_name", "lowercase"], True),
    ({"gce_vm_zone": "us-central1"}, ["gce_vm_zone", "us-central1-a"], True),
    ({"gce_vm_candidate_zones": ["us-central1-b", "central-b"]}, ["gce_vm_candidate_zones", "zone name"], True),
    ({"gce_vm_machine_type": "N1 standard 8"}, ["gce_vm_machine_type", "n1-standard-8"], True),
    ({"gce_vm_gpu_count": 3}, ["gce_vm_gpu_count", "1, 2, 4"], True),
    ({"gce_vm_machine_type": "g2-standard-8"}, ["gce_vm_gpu_count", "built in", "gce_vm_gpu_count: 0"], True),
    ({"gce_vm_machine_type": "e2-standard-8"}, ["gce_vm_machine_type", "only N1"], True),
    ({"gce_vm_gpu_type": "nvidia-l4"}, ["gce_vm_gpu_type", "g2-standard-4"], True),
    ({"gce_vm_gpu_type": "tesla-t4"}, ["gce_vm_gpu_type", "nvidia-tesla-t4"], True),
    ({"gce_vm_disk_size_gb": 5}, ["gce_vm_disk_size_gb", "between 10 and 65536"], True),
    ({"gce_vm_disk_type": "ssd"}, ["gce_vm_disk_type", "pd-balanced"], True),
    ({"gce_vm_labels": {"Team": "ds"}}, ["gce_vm_labels", "label key"], True),
    ({"gce_vm_labels": {"owner": "Jane Doe"}}, ["gce_vm_labels", "jane-doe"], True),
    ({"gce_vm_ssh_source_ranges": ["0.0.0.0/0"], "gce_vm_ssh_public_key": KEY},
     ["gce_vm_ssh_source_ranges", "whole internet"], True),
    ({"gce_vm_ssh_source_ranges": ["10.0.0.1/8"], "gce_vm_ssh_public_key": KEY},
     ["gce_vm_ssh_source_ranges", "10.0.0.0/8"], True),
    ({"gce_vm_ssh_source_ranges": ["203.0.113.7/32"]}, ["gce_vm_ssh_public_key", ".pub"], True),
    ({"gce_vm_provisioning_model": "PREEMPTIBLE"}, ["gce_vm_provisioning_model", "SPOT"], True),
    ({"gce_vm_instance_termination_action": "HIBERNATE"}, ["gce_vm_instance_termination_action", "STOP"], True),
    ({"gce_budget_monthly_usd": -5}, ["gce_budget_monthly_usd", "positive"], True),
    ({"gce_vm_gpu_count": True}, ["gce_vm_gpu_count: True is a yes/no, not a number of GPUs"], True),
    ({"gce_budget_monthly_usd": 100}, ["gce_budget_monthly_usd", "542.90", "100.00", "spot"], True),
    # Read-only API checks.
    ({"gce_vm_zone": "us-central1-z"}, ["gce_vm_zone", "does not exist", "us-central1-a, us-central1-b"], False),
    ({"gce_vm_zone": "us-east1-b"}, ["gce_vm_gpu_type", "not offered in us-east1-b", "us-east1-c"], False),
    ({"gce_vm_machine_type": "n1-standard-3"}, ["gce_vm_machine_type: no such machine type n1-standard-3"], False),
    ({"gce_vm_candidate_zones": ["us-central1-q"]}, ["gce_vm_candidate_zones: zone us-central1-q does not exist",
                                                     "us-central1-a, us-central1-b"], False),
    ({"gce_vm_machine_type": "g2-standard-8", "gce_vm_gpu_count": 0, "gce_vm_gpu_type": "",
      "gce_vm_zone": "us-central1-f"}, ["gce_vm_machine_type", "not offered in us-central1-f", "us-central1-a"], False),
    ({"gce_vm_image_family": "pytorch-9-9-cu999"}, ["gce_vm_image_family", "no image family"], False),
    ({"gce_vm_image_family": "pytorch-latest-gpu-debian-11-py310"},
     ["gce_vm_image_family", "DEPRECATED", "pytorch-2-9-cu129-ubuntu-2404-nvidia-580"], False),
    ({"gce_vm_disk_size_gb": 30}, ["gce_vm_disk_size_gb", "smaller than image", "at least 50"], False),
    ({"gce_vm_machine_type": "a2-highgpu-1g", "gce_vm_gpu_count": 0, "gce_vm_gpu_type": "",
      "gce_budget_monthly_usd": None},
     ["NVIDIA_A100_GPUS", "limit 0", "playbooks/quota_request.yml"], False),
]


@pytest.mark.parametrize(
    "extra_vars,texts,local",
    BAD_INPUTS,
    ids=[",".join(sorted(b[0])) + "=" + str(list(b[0].values())[0]) for b in BAD_INPUTS],
)
def test_bad_request_is_refused_before_any_mutating_call(shared_sandbox, preflight_playbook, extra_vars, texts, local):
    shared_sandbox.clear_requests()
    result = run_playbook(preflight_playbook, shared_sandbox, extra_vars=extra_vars)
    assert result.rc != 0, result
    for text in texts:
        assert text.lower() in flat(result).lower(), (text, result)
    requests = shared_sandbox.requests()
    assert [r for r in requests if r["mutating"]] == []
    if local:
        assert requests == [], "a local check made API calls: %s" % requests


def test_good_request_checks_with_six_reads_before_the_first_write(sandbox, preflight_playbook):
    sandbox.enable_compute()
    sandbox.clear_requests()
    result = run_playbook(preflight_playbook, sandbox)
    assert result.rc == 0, result
    assert "~$542.90/month if left running" in flat(result), result
    assert "~$10.00/month while stopped" in flat(result), result
    calls = [(r["method_id"], r["mutating"]) for r in sandbox.requests()]
    first_write = [m for m, mutating in calls].index("compute.firewalls.insert")
    assert [m for m, _ in calls[:6]] == [
        "compute.instances.aggregatedList", "compute.machineTypes.aggregatedList",
        "compute.acceleratorTypes.aggregatedList", "compute.images.getFromFamily", "compute.projects.get",
        "compute.regions.get"], calls
    assert not any(mutating for _, mutating in calls[:first_write])


def test_short_gpu_quota_is_refused_with_the_numbers(sandbox, preflight_playbook):
    sandbox.enable_compute()
    sandbox.set_quota("NVIDIA_T4_GPUS", 1, region="us-central1")
    sandbox.clear_requests()
    result = run_playbook(
        preflight_playbook, sandbox, extra_vars={"gce_vm_gpu_count": 2, "gce_budget_monthly_usd": None}
    )
    assert result.rc != 0, result
    for text in ("Quota NVIDIA_T4_GPUS in us-central1 is short: limit 1, usage 0, available 1 < requested 2",
                 "console.cloud.google.com/iam-admin/quotas?project=" + sandbox.project,
                 "playbooks/quota_request.yml -e gce_quota_request_metric=NVIDIA_T4_GPUS "
                 "-e gce_quota_request_region=us-central1 -e gce_quota_request_value=2"):
        assert text in flat(result), (text, result)
    assert sandbox.requests(mutating=True) == []


def test_spot_checks_the_preemptible_metric_and_project_gpus(sandbox, preflight_playbook):
    sandbox.enable_compute()
    sandbox.set_quota("PREEMPTIBLE_NVIDIA_T4_GPUS", 0, region="us-central1")
    sandbox.set_quota("GPUS_ALL_REGIONS", 0)
    sandbox.clear_requests()
    result = run_playbook(preflight_playbook, sandbox, extra_vars={"gce_vm_provisioning_model": "SPOT"})
    assert result.rc != 0, result
    assert "Quota PREEMPTIBLE_NVIDIA_T4_GPUS in us-central1 is short: limit 0, usage 0" in flat(result), result
    assert "Quota GPUS_ALL_REGIONS in project %s is short: limit 0" % sandbox.project in flat(result), result
    # On-demand T4 quota is free in the sandbox: the refusal says how to use it.
    assert "gce_vm_provisioning_model: STANDARD fits now" in flat(result), result
    assert sandbox.requests(mutating=True) == []


def test_a_candidate_zone_without_the_gpu_is_named_not_dropped_silently(sandbox, preflight_playbook):
    sandbox.enable_compute()
    result = run_playbook(preflight_playbook, sandbox, extra_vars={"gce_vm_candidate_zones": ["us-east1-b"]})
    assert result.rc == 0, result
    assert "gce_vm_candidate_zones: us-east1-b left out: nvidia-tesla-t4 not offered there" in flat(result), result


def test_usage_counts_against_the_limit(sandbox, preflight_playbook):
    """limit - usage: a VM already holding the T4s leaves none for a second one."""
    sandbox.enable_compute()
    sandbox.set_quota("NVIDIA_T4_GPUS", 2, region="us-central1")
    body = {
        "name": "other-vm", "machineType": "zones/us-central1-b/machineTypes/n1-standard-4",
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
            "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
        "networkInterfaces": [{"network": "global/networks/default"}],
        "guestAccelerators": [{"acceleratorType": "zones/us-central1-b/acceleratorTypes/nvidia-tesla-t4",
                               "acceleratorCount": 2}],
        "scheduling": {"onHostMaintenance": "TERMINATE"},
    }
    sandbox.api("POST", f"/compute/v1/projects/{sandbox.project}/zones/us-central1-b/instances", body)
    sandbox.clear_requests()
    result = run_playbook(preflight_playbook, sandbox)
    assert result.rc != 0, result
    assert "Quota NVIDIA_T4_GPUS in us-central1 is short: limit 2, usage 2, available 0 < requested 1" in flat(result)
    assert sandbox.requests(mutating=True) == []


def test_reconfigure_over_the_budget_is_refused_before_any_call(sandbox):
    """The budget holds on every change: 2 x T4 on n1-standard-8 (~$798/month) against $750."""
    sandbox.clear_requests()
    result = run_playbook("playbooks/reconfigure.yml", sandbox,
                          extra_vars={"gce_vm_gpu_count": 2, "gce_lifecycle_allow_stop": True})
    assert result.rc != 0, result
    assert "exceeds gce_budget_monthly_usd = 750.00" in flat(result), result
    assert "~$798" in flat(result), result
    assert sandbox.requests(mutating=True) == []
