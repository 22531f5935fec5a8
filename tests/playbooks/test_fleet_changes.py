"""A fleet whose size changes, one sandbox through the sequence a user runs: growing it asks quota
only for the VMs that hold none yet (the running ones are already in the usage), and shrinking it
leaves the VMs the declaration no longer names running, so every run names them, with what they
cost and the command that deletes just them; that command deletes them and nothing else."""

from __future__ import annotations

import re

import pytest

from conftest import flat, run_playbook

NAME = "jupyter-gpu"
REGION = "us-central1"
BUDGET = {"gce_budget_monthly_usd": 5000}


@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    from gce_sandbox.testing import SandboxProcess

    with SandboxProcess(tmp_path_factory.mktemp("gce-fleet-changes")) as sandbox:
        sandbox.set_quota("NVIDIA_T4_GPUS", 3, region=REGION)
        yield sandbox


def vms(sandbox) -> dict[str, str]:
    listed = sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/aggregated/instances")
    return {i["name"]: i["status"] for scope in listed.get("items", {}).values() for i in scope.get("instances", [])}


def assert_refused_for_quota(sandbox, count: int, numbers: str) -> None:
    """site.yml with gce_vm_count=count is refused for T4 quota, with these numbers, and nothing
    is created, started or changed for any VM of the fleet."""
    sandbox.clear_requests()
    refused = run_playbook("site.yml", sandbox, extra_vars=dict(BUDGET, gce_vm_count=count))
    assert refused.rc != 0
    assert f"Quota NVIDIA_T4_GPUS in {REGION} is short: {numbers}" in flat(refused), refused
    assert sandbox.requests(mutating=True) == []


def test_growing_a_fleet_asks_quota_only_for_the_new_vms(sb):
    assert run_playbook("site.yml", sb, extra_vars=dict(BUDGET, gce_vm_count=2)).rc == 0
    sb.clear_requests()
    # Two T4s in use of three: room for one more VM, not for three.
    grown = run_playbook("site.yml", sb, extra_vars=dict(BUDGET, gce_vm_count=3))
    assert grown.rc == 0, grown
    assert len([r for r in sb.requests(mutating=True) if r["method_id"] == "compute.instances.insert"]) == 1
    assert vms(sb) == {NAME: "RUNNING", f"{NAME}-2": "RUNNING", f"{NAME}-3": "RUNNING"}

    assert_refused_for_quota(sb, 5, "limit 3, usage 3, available 0 < requested 2")


def test_a_stopped_member_asks_quota_again(sb):
    """A stopped VM gave its GPU back: starting it with a new one needs room for both."""
    sb.api("POST", f"/compute/v1/projects/{sb.project}/zones/{REGION}-a/instances/{NAME}-3/stop")
    assert_refused_for_quota(sb, 4, "limit 3, usage 2, available 1 < requested 2")


def test_a_vm_the_declaration_dropped_is_named_with_its_cost_and_the_command(sb):
    sb.clear_requests()
    shrunk = run_playbook("site.yml", sb, extra_vars=dict(BUDGET, gce_vm_count=2))
    assert shrunk.rc == 0, shrunk
    # jupyter-gpu-3 was stopped above; the run starts its own two and leaves the third alone.
    assert vms(sb) == {NAME: "RUNNING", f"{NAME}-2": "RUNNING", f"{NAME}-3": "TERMINATED"}
    text = flat(shrunk)
    assert f"Not in this declaration ({NAME}, {NAME}-2), still in project {sb.project}:" in text, shrunk
    assert f"{NAME}-3, {REGION}-a, TERMINATED" in text
    assert "they cost" not in text  # stopped: no running cost to add up
    assert 'make down PLAYBOOK_ARGS="-e gce_vm_names=jupyter-gpu-3"' in text, shrunk

    sb.api("POST", f"/compute/v1/projects/{sb.project}/zones/{REGION}-a/instances/{NAME}-3/start")
    again = run_playbook("site.yml", sb, extra_vars=dict(BUDGET, gce_vm_count=2))
    assert again.rc == 0 and again.changed == 0, again
    cost = re.search(r"Running, they cost ~\$([0-9.]+)/hour together", flat(again))
    assert cost and float(cost.group(1)) > 0.3, again  # n1-standard-8 with a T4


def test_the_printed_command_deletes_just_those(sb):
    """As the Makefile passes it: -e gce_vm_names=<names> is one comma-separated string."""
    gone = run_playbook("playbooks/destroy.yml", sb, extra_vars={"destroy_confirm": "yes"},
                        args=["-e", f"gce_vm_names={NAME}-3"])
    assert gone.rc == 0, gone
    assert vms(sb) == {NAME: "RUNNING", f"{NAME}-2": "RUNNING"}
    quiet = run_playbook("site.yml", sb, extra_vars=dict(BUDGET, gce_vm_count=2))
    assert quiet.rc == 0 and quiet.changed == 0, quiet
    assert "Not in this declaration" not in quiet.stdout
