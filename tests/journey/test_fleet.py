"""A fleet from one declaration, as a user runs it: gce_vm_count=3 -> make up -> three VMs,
each its own machine with its own JupyterLab -> make up again: 0 changed -> status shows them
all -> make stop stops them all -> make down removes them all."""

from __future__ import annotations

import re
import shlex
import subprocess
import time

import pytest

from conftest import run_playbook
from test_journey import JSON_OUTPUT, assert_nothing_left, containers, mutating_calls, run_cell, tunnel

pytestmark = pytest.mark.journey

NAMES = ["jupyter-gpu", "jupyter-gpu-2", "jupyter-gpu-3"]
# Three T4 VMs are ~$1,640/month if never stopped: over the default budget, which is checked
# for the whole fleet (test_fleet_over_budget_is_refused_before_anything_exists).
FLEET = {"gce_vm_count": 3, "gce_budget_monthly_usd": 2000}


@pytest.fixture(scope="module")
def fleet_sandbox(tmp_path_factory):
    from gce_sandbox.testing import SandboxProcess

    with SandboxProcess(tmp_path_factory.mktemp("gce-fleet"), vms="podman", startup_timeout=120) as sb:
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


def test_fleet_up_rerun_status_stop_down(fleet_sandbox):
    sb = fleet_sandbox

    # 1. Three VMs, placed in parallel: every insert is sent before any VM is waited on.
    sb.clear_requests()
    up = run_playbook("site.yml", sb, extra_vars=FLEET, env=JSON_OUTPUT, timeout=1500)
    assert up.rc == 0, up
    for name in NAMES:
        assert up.recap[name]["changed"] > 0 and up.recap[name]["failed"] == 0, (name, up)
    assert [c.split()[1] for c in containers(sb)] == ["running"] * 3
    paths = [(r["method"], r["path"].split("?")[0]) for r in sb.requests()]
    inserts = [i for i, (m, p) in enumerate(paths) if m == "POST" and p.endswith("/instances")]
    first_wait = min(i for i, (m, p) in enumerate(paths) if p.endswith("/getGuestAttributes"))
    assert len(inserts) == 3 and max(inserts) < first_wait, paths

    # 2. The summary: one block per VM, tunnels on distinct local ports, and the fleet's total.
    vms = summary_lines(up.stdout, "VM")
    assert sorted(v.split()[0] for v in vms) == NAMES, vms
    tunnels = summary_lines(up.stdout, "Tunnel")
    ports = sorted(re.search(r"-L (\d+):localhost:", t).group(1) for t in tunnels)
    assert ports == ["8080", "8081", "8082"], tunnels
    fleet = summary_lines(up.stdout, "Fleet")
    assert len(fleet) == 1 and fleet[0].startswith("3 VMs (jupyter-gpu, jupyter-gpu-2, jupyter-gpu-3)"), fleet
    running = float(re.search(r"\$([\d.]+)/hour running", fleet[0]).group(1))
    assert 3 * 0.70 < running < 3 * 0.80, fleet  # three n1-standard-8 + T4 at list price

    # 3. Each VM is its own machine with its own JupyterLab: a cell run through each printed
    #    tunnel answers with that VM's host name.
    opens = summary_lines(up.stdout, "Then open")
    assert len(opens) == 3
    for vm_line, tunnel_cmd, open_line in zip(vms, tunnels, opens, strict=True):
        name = vm_line.split()[0]
        token_cmd = re.search(r"\(token: (.*)\)$", open_line).group(1)
        token = subprocess.run(shlex.split(token_cmd), stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=60, check=True).stdout.strip()
        with tunnel(tunnel_cmd) as port:
            assert run_cell(port, token, "import socket; socket.gethostname()") == repr(name)

    # 4. make up again: nothing changes on any VM, nothing mutating reaches the API.
    sb.clear_requests()
    again = run_playbook("site.yml", sb, extra_vars=FLEET, timeout=900)
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert mutating_calls(sb) == []

    # 5. Status shows every VM of the fleet.
    status = run_playbook("playbooks/status.yml", sb)
    assert status.rc == 0, status
    for name in NAMES:
        assert re.search(r"^\s*%s\s+us-central1-a\s+RUNNING" % name, status.stdout, re.M), status.stdout

    # 6. Stop acts on all of them.
    stopped = run_playbook("playbooks/stop.yml", sb, extra_vars=FLEET)
    assert stopped.rc == 0, stopped
    for name in NAMES:
        vm = sb.api("GET", f"/compute/v1/projects/{sb.project}/zones/us-central1-a/instances/{name}")
        assert vm["status"] == "TERMINATED", name
    deadline = time.monotonic() + 90
    while [c.split()[1] for c in containers(sb)] != ["exited"] * 3 and time.monotonic() < deadline:
        time.sleep(1)
    assert [c.split()[1] for c in containers(sb)] == ["exited"] * 3

    # 7. make down removes every VM, disk and container, and the firewall rule with the last VM.
    down = run_playbook("playbooks/destroy.yml", sb, extra_vars=dict(FLEET, destroy_confirm="yes"))
    assert down.rc == 0, down
    assert_nothing_left(sb)
