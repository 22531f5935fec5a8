"""A fleet from one declaration (gce_vm_count=3): the whole budget is checked for the fleet
before anything exists. Three container VMs going up, rerun, status, stop and down as a fleet is
the first half of the cluster journey (test_cluster.py): a cluster is a fleet with two more
roles, and one bring-up of three VMs serves both."""

from __future__ import annotations

import re

import pytest

from conftest import run_playbook
from test_journey import mutating_calls

pytestmark = pytest.mark.journey


@pytest.fixture(scope="module")
def fleet_sandbox(tmp_path_factory):
    from gce_sandbox.testing import SandboxProcess

    with SandboxProcess(tmp_path_factory.mktemp("gce-fleet"), startup_timeout=120) as sb:
        yield sb


def summary_lines(stdout: str, label: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r'"%s\s+((?:[^"\\]|\\.)*)"' % re.escape(label), stdout)]


def test_fleet_over_budget_is_refused_before_anything_exists(fleet_sandbox):
    sb = fleet_sandbox
    sb.clear_requests()
    refused = run_playbook("site.yml", sb, extra_vars={"gce_vm_count": 3})
    assert refused.rc != 0
    assert "For the fleet of 3 VMs (gce_vm_count)" in refused.stdout, refused
    assert "gce_budget_monthly_usd" in refused.stdout
    assert mutating_calls(sb) == []

