"""Run-time limits: maxRunDuration / terminationTime on any VM, and FLEX_START VMs.

GCE's rules (Compute Engine docs, "Limit the run time of a VM" and "About Flex-start VMs"):
- a time limit is maxRunDuration (30 s to 120 days) or terminationTime, never both;
- when it is reached GCE applies instanceTerminationAction: STOP (the default) or DELETE;
- legacy preemptible VMs cannot have one (Spot VMs can);
- the run duration counts from the VM's start: a VM stopped and started again gets it afresh;
- FLEX_START needs a maxRunDuration of at most 7 days, onHostMaintenance TERMINATE, no automatic
  restart and no reservation, runs only on accelerator-optimized machine types (A2, A3, G2, ...,
  not N1), draws preemptible quota, and its insert waits for capacity instead of failing at once.

How the sandbox keeps time for them: an instance's deadline is computed from its own
lastStartTimestamp, so the admin endpoint `age` (tests, rehearsals) moves an instance's timestamps
into the past instead of making anyone wait 30 s or 40 days.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .. import catalog
from ..errors import bad_request, invalid_field
from .common import now_rfc3339, public

MIN_RUN_SECONDS = 30
MAX_RUN_SECONDS = 120 * 86400
FLEX_MAX_SECONDS = 7 * 86400
# Accelerator-optimized families in the catalog: the only ones flex-start serves.
FLEX_FAMILIES = ("a2", "a3", "a4", "g2")


def duration_seconds(value) -> float | None:
    """A Duration ({"seconds": "3600", "nanos": 0}) in seconds, or None when absent."""
    if not value:
        return None
    try:
        return int(value.get("seconds") or 0) + int(value.get("nanos") or 0) / 1e9
    except (TypeError, ValueError, AttributeError):
        raise invalid_field("resource.scheduling.maxRunDuration", value, "Invalid duration.") from None


def check_run_limit(sched: dict) -> None:
    """Refuse the run-time limits GCE refuses (the FLEX_START ones in check_flex_start)."""
    seconds = duration_seconds(sched.get("maxRunDuration"))
    if seconds is not None and sched.get("terminationTime"):
        raise invalid_field("resource.scheduling.terminationTime", sched["terminationTime"],
                            "maxRunDuration and terminationTime cannot both be specified.")
    if seconds is not None and not MIN_RUN_SECONDS <= seconds <= MAX_RUN_SECONDS:
        raise invalid_field("resource.scheduling.maxRunDuration.seconds", int(seconds),
                            f"maxRunDuration must be between {MIN_RUN_SECONDS} seconds and 120 days.")
    if sched.get("terminationTime"):
        try:
            datetime.fromisoformat(str(sched["terminationTime"]).replace("Z", "+00:00"))
        except ValueError:
            raise invalid_field("resource.scheduling.terminationTime", sched["terminationTime"],
                                "Invalid RFC 3339 timestamp.") from None
    limited = seconds is not None or bool(sched.get("terminationTime"))
    if limited and sched.get("preemptible"):
        raise invalid_field("resource.scheduling.preemptible", True,
                            "A time limit cannot be set on a preemptible VM; use a Spot VM "
                            "(provisioningModel SPOT) instead.")


def check_flex_start(sched: dict, body: dict, machine: str) -> None:
    if sched.get("provisioningModel") != "FLEX_START":
        return
    seconds = duration_seconds(sched.get("maxRunDuration"))
    if seconds is None:
        raise invalid_field("resource.scheduling.maxRunDuration", "",
                            "maxRunDuration must be specified for FLEX_START instances.")
    if seconds > FLEX_MAX_SECONDS:
        raise invalid_field("resource.scheduling.maxRunDuration.seconds", int(seconds),
                            "maxRunDuration of a FLEX_START instance must be at most 7 days.")
    if sched.get("onHostMaintenance") == "MIGRATE":
        raise invalid_field("resource.scheduling.onHostMaintenance", "MIGRATE",
                            "FLEX_START instances must have onHostMaintenance TERMINATE.")
    if sched.get("automaticRestart") is True:
        raise invalid_field("resource.scheduling.automaticRestart", True,
                            "FLEX_START instances cannot be automatically restarted.")
    affinity = (body.get("reservationAffinity") or {}).get("consumeReservationType")
    if affinity != "NO_RESERVATION":
        raise invalid_field("resource.reservationAffinity.consumeReservationType", affinity or "",
                            "FLEX_START instances must not consume reservations (NO_RESERVATION).")
    if catalog.MACHINE_TYPES[machine]["family"] not in FLEX_FAMILIES:
        raise bad_request(f"[{machine}, FLEX_START] features are not compatible for creating instance.",
                          "invalid")


def deadline(inst: dict) -> datetime | None:
    """When GCE applies the instance's termination action, or None (no limit, or not running)."""
    sched = inst.get("scheduling") or {}
    if sched.get("terminationTime"):
        return datetime.fromisoformat(str(sched["terminationTime"]).replace("Z", "+00:00"))
    seconds = duration_seconds(sched.get("maxRunDuration"))
    if seconds is None or not inst.get("lastStartTimestamp"):
        return None
    return datetime.fromisoformat(inst["lastStartTimestamp"]) + timedelta(seconds=seconds)


def shift(stamp: str | None, seconds: float) -> str | None:
    if not stamp:
        return stamp
    return (datetime.fromisoformat(stamp) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


class SchedulingMixin:
    def expire_run_limits(self) -> bool:
        """Apply the termination action to every running VM past its time limit. Returns whether
        anything changed."""
        now = datetime.fromisoformat(now_rfc3339())
        changed = False
        for zone, table in list(self.state.get("instances", {}).items()):
            for name, inst in list(table.items()):
                if inst.get("status") != "RUNNING":
                    continue
                due = deadline(inst)
                if due is not None and due <= now:
                    self._terminate_at_limit(zone, name, inst)
                    changed = True
        return changed

    def _terminate_at_limit(self, zone: str, name: str, inst: dict) -> None:
        action = (inst.get("scheduling") or {}).get("instanceTerminationAction") or "STOP"
        self._stop_now(inst)
        inst["lastStopTimestamp"] = now_rfc3339()
        if action == "DELETE":
            self._delete_instance_now(zone, name)
        else:
            inst["status"] = "TERMINATED"
            self.backend.on_stop(public(inst))
        # A system operation, as GCE's own stop or delete of the VM shows in the operations list.
        self.new_operation("stop" if action == "STOP" else "delete", inst["selfLink"], inst["id"], zone=zone,
                           user="system", done=True,
                           status_message="Instance reached its maximum run duration (%s)." % action)

    def age_instance(self, zone: str, name: str, seconds) -> dict:
        """Move an instance's timestamps `seconds` into the past (admin: tests and rehearsals),
        then apply any time limit that is now reached."""
        inst = self.get_instance(zone, name)
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise bad_request("age needs seconds (a number)") from None
        if seconds < 0:
            raise bad_request("age moves timestamps into the past only: seconds must be >= 0")
        for key in ("creationTimestamp", "lastStartTimestamp", "lastStopTimestamp"):
            if inst.get(key):
                inst[key] = shift(inst[key], seconds)
        self.expire_run_limits()
        table = self.instances(zone)
        return public(table[name]) if name in table else {"name": name, "deleted": True}

    # ---- FLEX_START: wait for capacity instead of failing on a stockout ----------------------------
    def _insert_flex_start(self, zone: str, inst: dict, new_disks: list[dict]) -> tuple[int, dict]:
        """The instance exists at once, PENDING, while its insert operation waits for capacity (the
        `flex_start` fault sets how long and whether it comes; none: at once). A zone_exhausted
        fault does not apply: flex-start draws on the Dynamic Workload Scheduler's pool. Quota does:
        the preemptible metrics."""
        need = self.instance_needs(inst, include_static=True)
        for disk in new_disks:
            metric = "SSD_TOTAL_GB" if catalog.DISK_TYPES[disk["type"].rsplit("/", 1)[-1]]["ssd"] else "DISKS_TOTAL_GB"
            need[metric] = need.get(metric, 0) + int(disk["sizeGb"])
        errors = self.quota_errors(catalog.region_of(zone), need)
        if errors:
            op = self.new_operation("insert", inst["selfLink"], inst["id"], zone=zone, error=errors,
                                    http_error=(403, "FORBIDDEN"))
            return self.op_response(op)
        fault = self.faults.take("flex_start", zone=zone) or {}
        for disk in new_disks:
            disk["users"] = [inst["selfLink"]]
            self.disks(zone)[disk["name"]] = disk
        inst["status"] = "PENDING"
        inst.pop("lastStartTimestamp", None)
        self.instances(zone)[inst["name"]] = inst
        target = {"zone": zone, "name": inst["name"]}
        if fault.get("outcome") == "no_capacity":
            # The wording of GCE's error for a flex-start request that found no capacity in time is
            # not public; this is the sandbox's own, under the stockout code clients already know.
            op = self.new_operation("insert", inst["selfLink"], inst["id"], zone=zone, http_error=(503, "SERVICE "
                                    "UNAVAILABLE"), error=[{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": (
                                        f"The flex-start request for '{inst['name']}' in zone '{zone}' could not be "
                                        "fulfilled: no capacity became available in time.")}],
                                    on_error=dict(target, action="flex_start_failed"))
        else:
            op = self.new_operation("insert", inst["selfLink"], inst["id"], zone=zone,
                                    on_done=dict(target, action="flex_start_ready"))
        op["_ready_at"] = max(op["_ready_at"], op["_started_at"] + float(fault.get("seconds") or 0))
        return self.op_response(op)

    def _flex_start_ready(self, zone: str, name: str) -> None:
        inst = self.instances(zone).get(name)
        if inst is None or inst.get("status") != "PENDING":
            return   # cancelled (deleted) while it waited
        external = any(nic.get("accessConfigs") for nic in inst["networkInterfaces"])
        addrs = self.backend.on_create(public(inst), external=external)
        nic0 = inst["networkInterfaces"][0]
        nic0["networkIP"] = nic0.pop("_networkIP", None) or addrs.internal_ip
        for ac in nic0.get("accessConfigs", []):
            if not ac.get("natIP") and addrs.external_ip:
                ac["natIP"] = addrs.external_ip
        for nic in inst["networkInterfaces"][1:]:
            nic["networkIP"] = nic.pop("_networkIP", None) or addrs.internal_ip
        inst["status"] = "RUNNING"
        # The run duration counts from here.
        inst["lastStartTimestamp"] = now_rfc3339()

    def _flex_start_failed(self, zone: str, name: str) -> None:
        inst = self.instances(zone).pop(name, None)
        for attached in (inst or {}).get("disks", []):
            if attached.get("autoDelete"):
                self.disks(zone).pop(attached["source"].rsplit("/", 1)[-1], None)
