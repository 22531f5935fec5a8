"""Filters the gce_vm role's zone failover around google.cloud.gcp_compute_instance uses
(roles/gce_vm/tasks/create_zone.yml): what an insert's failure means, which zone comes next,
the lines and messages a person reads. The reading itself is plugins/module_utils/gce_failover.py,
shared with the gce_instance_place module, so both ways of creating a VM tell the same story.
"""

from __future__ import annotations

import os

import ansible.module_utils

# Controller-side plugins do not see the project's module_utils (only modules get them, packed
# in by Ansible): put that folder on ansible.module_utils' path, as the unit tests do.
_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
if _UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_UTILS)

from ansible.module_utils import gce_failover  # noqa: E402
from ansible.module_utils.gce_pricing import region_of  # noqa: E402


def gce_vm_insert_failure(msg, zone, candidates):
    """What google.cloud's failure `msg` for an insert in `zone` means: gce_failover.failed_attempt's
    record, plus `failover` (another zone may take the VM) and `operation` (GCE accepted the
    insert and failed its operation, so something may be left in the zone)."""
    errors = gce_failover.google_cloud_errors(msg)
    if not errors:
        entry = {"zone": zone, "result": "failed", "code": "", "reason": str(msg or "")}
    else:
        entry = gce_failover.failed_attempt(zone, errors, list(candidates or []))
    entry["failover"] = entry["result"] == "exhausted" or (entry["result"] == "quota" and not entry.get("global"))
    entry["operation"] = bool(errors) and not str(msg or "").lstrip().startswith("GCP returned error")
    return entry


def gce_vm_failover_pop(failover):
    """The failover state with `zone` set to the next zone to try ("" when the VM exists or no zone
    is left); zones of a region that ran out of quota are passed over and recorded as skipped."""
    state = dict(failover, zone="", queue=list(failover.get("queue") or []),
                 attempts=list(failover.get("attempts") or []))
    blocked = dict(state.get("blocked") or {})
    while state["queue"] and not state.get("instance"):
        zone = state["queue"].pop(0)
        if region_of(zone) in blocked:
            state["attempts"].append(gce_failover.skipped_attempt(zone, blocked))
            continue
        state["zone"] = zone
        break
    return state


def gce_vm_failover_failed(failover, entry, deleted=None):
    """The failover state after the failed try `entry`: the try recorded (with what was removed
    from its zone), GCE's suggested zones moved to the front, a region out of quota blocked."""
    deleted = deleted or {}
    record = dict((k, v) for k, v in entry.items() if k not in ("failover", "operation"))
    # The boot disk goes with the instance (autoDelete): named only when it was left alone.
    record["cleaned_up"] = ["instance %s" % n for n in deleted.get("instances") or []] or \
        ["disk %s" % n for n in deleted.get("disks") or []]
    blocked = dict(failover.get("blocked") or {})
    if entry.get("result") == "quota" and not entry.get("global"):
        blocked[region_of(entry["zone"])] = gce_failover.blocked_reason(entry)
    return dict(failover, attempts=list(failover.get("attempts") or []) + [record], blocked=blocked,
                queue=gce_failover.next_queue(list(failover.get("queue") or []), entry))


def gce_vm_instance_summary(instance):
    """The VM as google.cloud returned it, in the shape gce_instance_place returns (`instance`)."""
    # Imported here, not at the top: gce_client brings requests and google-auth (about 0.2 s),
    # and Ansible loads every filter file in each task's worker process whenever a task uses
    # any filter at all; only the tasks that call this filter should pay for that import.
    from ansible.module_utils.gce_client import instance_summary

    return instance_summary(instance)


def gce_vm_attempt_lines(attempts):
    return [gce_failover.attempt_line(a) for a in attempts or []]


def gce_vm_global_quota_message(entry, project):
    return gce_failover.global_quota_message(entry.get("metric"), entry.get("limit"), project, entry.get("reason"))


def gce_vm_no_zone_message(attempts, name):
    return gce_failover.no_zone_message(name, attempts or [])


class FilterModule(object):
    def filters(self):
        return {
            "gce_vm_insert_failure": gce_vm_insert_failure,
            "gce_vm_failover_pop": gce_vm_failover_pop,
            "gce_vm_failover_failed": gce_vm_failover_failed,
            "gce_vm_instance_summary": gce_vm_instance_summary,
            "gce_vm_attempt_lines": gce_vm_attempt_lines,
            "gce_vm_global_quota_message": gce_vm_global_quota_message,
            "gce_vm_no_zone_message": gce_vm_no_zone_message,
        }
