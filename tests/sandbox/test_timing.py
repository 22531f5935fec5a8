"""Operation timing: `instant` by default (unit tests), `realistic` on request (rehearsals), and
clients that really wait: an operation stays RUNNING, and a client polls it until DONE."""

from __future__ import annotations

import time

from .helpers import ZONE, path_of, vm_body, wait_op, zpath
from .test_clients import BIN, VM_TASK, client_env, playbook, recap, run

SCALE = 0.25   # realistic x0.25: an instance insert runs 3 s, a stop 5 s


def test_instant_is_the_default_and_reset_restores_it(sb):
    assert sb.state()["timing"] == {"profile": "instant", "scale": 1.0}
    op = sb.api("POST", zpath("instances"), vm_body())
    assert sb.api("GET", path_of(op["selfLink"]))["status"] == "DONE"
    sb.set_timing("realistic", SCALE)
    assert sb.state()["timing"] == {"profile": "realistic", "scale": SCALE}
    sb.reset()
    assert sb.state()["timing"]["profile"] == "instant"


def test_realistic_operations_stay_running_then_finish(sb):
    sb.set_timing("realistic", SCALE)
    started = time.monotonic()
    op = sb.api("POST", zpath("instances"), vm_body())
    polled = sb.api("GET", path_of(op["selfLink"]))
    assert polled["status"] == "RUNNING"
    # The VM exists at once, STAGING until the insert is DONE (as on GCE).
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "STAGING"
    done = wait_op(sb, op)
    elapsed = time.monotonic() - started
    assert 12 * SCALE - 0.5 <= elapsed < 12 * SCALE + 5, elapsed
    assert done["progress"] == 100 and "error" not in done
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "RUNNING"

    op = sb.api("POST", zpath("instances/vm1/stop"))
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "STOPPING"
    time.sleep(1)
    assert sb.api("GET", path_of(op["selfLink"]))["status"] == "RUNNING"
    wait_op(sb, op)
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "TERMINATED"


def test_operations_wait_returns_when_the_operation_is_done(sb):
    sb.set_timing("realistic", SCALE)
    op = sb.api("POST", zpath("instances"), vm_body())
    started = time.monotonic()
    waited = sb.api("POST", path_of(op["selfLink"]) + "/wait")
    assert waited["status"] == "DONE"
    assert time.monotonic() - started >= 12 * SCALE - 1


def test_google_cloud_module_polls_a_realistic_insert(sandbox_server, tmp_path):
    """gcp_compute_instance waits on the zone operation (1 s between GETs): with a 3 s insert it must
    poll several times, and still report the VM's address when it is DONE."""
    sb = sandbox_server
    sb.reset()
    sb.set_timing("realistic", SCALE)
    sb.clear_requests()
    try:
        out = run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook(tmp_path, VM_TASK))],
                  client_env(sb), tmp_path)
    finally:
        sb.set_timing("instant")
    assert out.returncode == 0, out.stdout
    assert recap(out.stdout)["changed"] == 2, out.stdout
    polls = [r for r in sb.requests() if r["method"] == "GET" and f"/zones/{ZONE}/operations/" in r["path"]]
    assert len(polls) >= 2, [r["path"] for r in sb.requests()]
    assert "natIP=203.0.113." in out.stdout
