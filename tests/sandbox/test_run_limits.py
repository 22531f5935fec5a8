"""Run-time limits (maxRunDuration / terminationTime) and FLEX_START rules in the sandbox."""

from __future__ import annotations

import pytest

from gce_sandbox.testing import SandboxError

from .helpers import ZONE, create_vm, vm_body, wait_op, zpath

CAP = {"onHostMaintenance": "TERMINATE", "automaticRestart": True, "maxRunDuration": {"seconds": "3600"},
       "instanceTerminationAction": "STOP"}


def refused(sb, body):
    with pytest.raises(SandboxError) as info:
        sb.api("POST", zpath("instances"), body)
    return info.value.body["error"]["message"]


@pytest.mark.parametrize("seconds", ["29", str(120 * 86400 + 1)])
def test_max_run_duration_outside_30s_to_120_days_is_refused(sb, seconds):
    msg = refused(sb, vm_body(scheduling=dict(CAP, maxRunDuration={"seconds": seconds})))
    assert "between 30 seconds and 120 days" in msg


def test_duration_and_termination_time_are_exclusive_and_not_on_legacy_preemptible(sb):
    msg = refused(sb, vm_body(scheduling=dict(CAP, terminationTime="2030-01-01T00:00:00Z")))
    assert "cannot both be specified" in msg
    legacy = {"preemptible": True, "automaticRestart": False, "onHostMaintenance": "TERMINATE",
              "maxRunDuration": {"seconds": "3600"}}
    assert "preemptible" in refused(sb, vm_body(scheduling=legacy))


def test_termination_action_without_a_limit_is_still_refused_on_standard(sb):
    msg = refused(sb, vm_body(scheduling={"onHostMaintenance": "TERMINATE", "instanceTerminationAction": "STOP"}))
    assert "instanceTerminationAction is only supported" in msg


def test_reaching_the_limit_stops_the_vm_and_a_start_gives_it_afresh(sb):
    create_vm(sb, scheduling=CAP)
    inst = sb.api("GET", zpath("instances/vm1"))
    assert inst["scheduling"]["maxRunDuration"] == {"seconds": "3600"}
    assert inst["scheduling"]["instanceTerminationAction"] == "STOP"
    assert sb.age(ZONE, "vm1", 3000)["status"] == "RUNNING"          # 50 of its 60 minutes
    stopped = sb.age(ZONE, "vm1", 601)
    assert stopped["status"] == "TERMINATED"
    assert stopped["lastStopTimestamp"] > stopped["lastStartTimestamp"]
    ops = sb.api("GET", zpath("operations"))["items"]
    assert any(o["user"] == "system" and "maximum run duration" in o.get("statusMessage", "") for o in ops)
    wait_op(sb, sb.api("POST", zpath("instances/vm1/start")))
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "RUNNING"
    assert sb.age(ZONE, "vm1", 3000)["status"] == "RUNNING"          # the new start counts afresh


def test_delete_action_deletes_the_vm_and_its_boot_disk(sb):
    create_vm(sb, scheduling=dict(CAP, instanceTerminationAction="DELETE"))
    assert sb.age(ZONE, "vm1", 3601) == {"name": "vm1", "deleted": True}
    with pytest.raises(SandboxError):
        sb.api("GET", zpath("instances/vm1"))
    with pytest.raises(SandboxError):
        sb.api("GET", zpath("disks/vm1"))


def test_limit_is_applied_on_the_next_request_without_the_admin_endpoint(sb):
    create_vm(sb, scheduling=dict(CAP, maxRunDuration={"seconds": "30"}))
    sb.age(ZONE, "vm1", 10)
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "RUNNING"
    # A terminationTime in the past is reached at the next request, as GCE's own clock would.
    create_vm(sb, name="vm2", scheduling={"onHostMaintenance": "TERMINATE",
                                          "terminationTime": "2020-01-01T00:00:00Z"})
    assert sb.api("GET", zpath("instances/vm2"))["status"] == "TERMINATED"


FLEX = {"provisioningModel": "FLEX_START", "onHostMaintenance": "TERMINATE", "automaticRestart": False,
        "maxRunDuration": {"seconds": "7200"}, "instanceTerminationAction": "DELETE"}
NO_RES = {"consumeReservationType": "NO_RESERVATION"}


def test_flex_start_rules(sb):
    g2 = dict(machine="g2-standard-8", gpus=0, reservationAffinity=NO_RES)
    unlimited = {k: v for k, v in FLEX.items() if k != "maxRunDuration"}
    assert "must be specified" in refused(sb, vm_body(scheduling=unlimited, **g2))
    assert "at most 7 days" in refused(sb, vm_body(
        scheduling=dict(FLEX, maxRunDuration={"seconds": str(8 * 86400)}), **g2))
    assert "NO_RESERVATION" in refused(sb, vm_body(scheduling=FLEX, machine="g2-standard-8", gpus=0))
    assert "not compatible" in refused(sb, vm_body(scheduling=FLEX, reservationAffinity=NO_RES))   # N1 + T4
    create_vm(sb, scheduling=FLEX, **g2)
    sched = sb.api("GET", zpath("instances/vm1"))["scheduling"]
    assert sched["provisioningModel"] == "FLEX_START" and sched["automaticRestart"] is False
    usage = {q["metric"]: q["usage"] for q in sb.api("GET", f"/compute/v1/projects/{sb.project}/regions/us-central1")
             ["quotas"]}
    assert usage["PREEMPTIBLE_NVIDIA_L4_GPUS"] == 1 and usage["NVIDIA_L4_GPUS"] == 0


def test_flex_start_waits_pending_then_runs_or_fails_without_capacity(sb):
    g2 = dict(machine="g2-standard-8", gpus=0, reservationAffinity=NO_RES)
    sb.add_fault("zone_exhausted", zone=ZONE)          # a stockout for STANDARD VMs: not for flex-start
    sb.add_fault("flex_start", zone=ZONE, seconds=1.5, count=1)
    op = sb.api("POST", zpath("instances"), vm_body(scheduling=FLEX, **g2))
    pending = sb.api("GET", zpath("instances/vm1"))
    assert pending["status"] == "PENDING" and "lastStartTimestamp" not in pending
    assert "error" not in wait_op(sb, op)
    running = sb.api("GET", zpath("instances/vm1"))
    assert running["status"] == "RUNNING" and running["lastStartTimestamp"]
    assert running["networkInterfaces"][0]["networkIP"]
    # Flex-start draws preemptible quota: a second L4 does not fit a fresh project's.
    quota = wait_op(sb, sb.api("POST", zpath("instances"), vm_body(name="vm2", scheduling=FLEX, **g2)))
    assert quota["error"]["errors"][0]["code"] == "QUOTA_EXCEEDED"
    assert "PREEMPTIBLE_NVIDIA_L4_GPUS" in quota["error"]["errors"][0]["message"]
    sb.set_quota("PREEMPTIBLE_NVIDIA_L4_GPUS", 4, "us-central1")
    # No capacity in time: the insert fails and nothing stays behind.
    sb.add_fault("flex_start", zone=ZONE, seconds=0.5, outcome="no_capacity", count=1)
    done = wait_op(sb, sb.api("POST", zpath("instances"), vm_body(name="vm2", scheduling=FLEX, **g2)))
    assert done["error"]["errors"][0]["code"] == "ZONE_RESOURCE_POOL_EXHAUSTED"
    for path in ("instances/vm2", "disks/vm2"):
        with pytest.raises(SandboxError):
            sb.api("GET", zpath(path))
