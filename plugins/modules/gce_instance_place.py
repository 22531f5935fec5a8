#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gce_instance_place
short_description: Create a GPU VM in the first candidate zone that has capacity; start a stopped or preempted one
description:
  - Creates the instance in the first of C(zones) that accepts it. On
    C(ZONE_RESOURCE_POOL_EXHAUSTED) / C(ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS) it tries the next zone,
    the zones named by the error's C(zonesAvailable) hint first; on a regional C(QUOTA_EXCEEDED) it skips
    every zone of that region; on C(GPUS_ALL_REGIONS) / C(CPUS_ALL_REGIONS) it stops at once.
  - After every failed zone it makes sure nothing was left there (no instance, no boot disk).
  - Knows Spot VMs (C(provisioningModel=SPOT) with C(instanceTerminationAction)) and a hard run-time cap
    (C(maxRunDuration)), which google.cloud.gcp_compute_instance cannot express.
  - When the instance exists and is TERMINATED (stopped, or a preempted spot VM), starts it and waits.
  - Built on the project's gce_client (waits on operations, retries throttling, typed errors).
options:
  name: {description: Instance name., type: str, required: true}
  zones: {description: Candidate zones in order of preference., type: list, elements: str, required: true}
  existing:
    description: >-
      The instance as gce_preflight found it (zone, status), or {} when preflight found none;
      either skips the lookup.
    type: dict
  machine_type: {description: Machine type name., type: str, required: true}
  gpu_type: {description: Attached accelerator type (N1); empty for none or built-in., type: str, default: ""}
  gpu_count: {description: Attached accelerators., type: int, default: 0}
  source_image: {description: Image URL or path (a family path works)., type: str, required: true}
  disk_size_gb: {description: Boot disk size., type: int, required: true}
  disk_type: {description: Boot disk type., type: str, default: pd-balanced}
  network: {description: VPC network name., type: str, default: default}
  external_ip: {description: Give the VM an ephemeral external address., type: bool, default: true}
  tags: {description: Network tags., type: list, elements: str, default: []}
  labels: {description: Labels., type: dict, default: {}}
  metadata: {description: Instance metadata (key -> value)., type: dict, default: {}}
  vm_service_account:
    description: Email of the service account the VM runs as ("default" - the Compute Engine default account).
    type: str
    default: default
  scopes: {description: Its OAuth scopes (full URLs)., type: list, elements: str, default: []}
  provisioning_model: {description: STANDARD or SPOT., type: str, default: STANDARD, choices: [STANDARD, SPOT]}
  termination_action:
    description: What GCE does to a preempted spot VM.
    type: str
    default: STOP
    choices: [STOP, DELETE]
  max_run_seconds:
    description: >-
      A hard run-time cap (scheduling.maxRunDuration, 30 s to 120 days): GCE applies C(max_run_action)
      this long after each start. 0 - none. A spot VM has one termination action for both: it must equal
      C(termination_action).
    type: int
    default: 0
  max_run_action:
    description: What GCE does when the cap is reached (instanceTerminationAction).
    type: str
    default: STOP
    choices: [STOP, DELETE]
  flex_start:
    description: >-
      When every candidate zone is out of capacity, request a flex-start VM (C(provisioningModel=FLEX_START),
      Dynamic Workload Scheduler) in those zones, in order, with run duration C(flex_start_seconds) and
      termination action C(max_run_action), waiting at most C(flex_start_wait) seconds in all; a request still
      pending then is cancelled (the pending VM deleted). Accelerator-optimized machine types only (A2, A3, G2).
    type: bool
    default: false
  flex_start_seconds: {description: Its run duration (maxRunDuration) in seconds; up to 7 days., type: int, default: 0}
  flex_start_wait: {description: Seconds to wait for flex-start capacity in all., type: int, default: 1800}
  resource_policies:
    description: >-
      Links of the resource policies the new VM is created with (C(resourcePolicies)): a cluster's compact
      placement policy, in the VM's region. GCE takes at most one, at creation only.
    type: list
    elements: str
    default: []
  status:
    description: RUNNING starts a stopped VM; PRESENT leaves its power state alone.
    type: str
    default: RUNNING
    choices: [RUNNING, PRESENT]
  timeout: {description: Seconds to wait for each operation., type: int, default: 600}
# The auth options (project, auth_kind, service_account_file, ... with their GCP_* environment
# fallbacks) are google.cloud's own, taken from gce_client.auth_argument_spec.
extends_documentation_fragment:
  - google.cloud.gcp
author: GPU Jupyter project
"""

EXAMPLES = r"""
- name: Instance | Place the VM, failing over across zones
  gce_instance_place:
    project: "{{ gcp_project }}"
    auth_kind: "{{ gcp_auth_kind }}"
    name: jupyter-gpu
    zones: [us-central1-a, us-central1-b, us-central1-c]
    machine_type: n1-standard-8
    gpu_type: nvidia-tesla-t4
    gpu_count: 1
    source_image: projects/deeplearning-platform-release/global/images/family/pytorch-2-9-cu129-ubuntu-2404-nvidia-580
    disk_size_gb: 100
    provisioning_model: SPOT
"""

RETURN = r"""
instance:
  description: name, zone, status, external_ip, internal_ip, machine_type, provisioning_model, self_link.
  type: dict
  returned: success
zone: {description: Zone the VM is in., type: str, returned: success}
attempts:
  description: Every zone tried, with the outcome (created, exhausted, quota, skipped) and GCE's message.
  type: list
  returned: always
attempt_lines: {description: The same as one readable line per zone., type: list, returned: always}
action: {description: created, started or none., type: str, returned: always}
api_calls: {description: Compute API requests made., type: int, returned: always}
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gce_client import (
    GceClient, GceApiError, GceConnectionError, GceError, GceOperationError, GceTimeoutError, auth_argument_spec,
    instance_summary, label_filter)
from ansible.module_utils.gce_failover import (
    EXHAUSTED, attempt_line, global_quota_message, no_zone_message, quota_metric, zones_available_hint)
from ansible.module_utils.gce_preflight_checks import has_builtin_gpus
from ansible.module_utils.gce_pricing import region_of

API = "https://www.googleapis.com/compute/v1"


def instance_body(p, client, zone):
    zone_url = "%s/%s" % (API, client.zone_path(zone))
    has_gpu = bool(p["gpu_count"]) or has_builtin_gpus(p["machine_type"])
    if p.get("_flex"):
        # GCE's flex-start rules: a run duration, no automatic restart, no live migration, no reservation.
        scheduling = {"provisioningModel": "FLEX_START", "onHostMaintenance": "TERMINATE", "automaticRestart": False,
                      "maxRunDuration": {"seconds": str(p["flex_start_seconds"])},
                      "instanceTerminationAction": p.get("max_run_action") or "STOP"}
    elif p["provisioning_model"] == "SPOT":
        scheduling = {"provisioningModel": "SPOT", "instanceTerminationAction": p["termination_action"],
                      "automaticRestart": False, "onHostMaintenance": "TERMINATE"}
    else:
        # GPUs cannot live-migrate: GCE refuses a GPU VM unless host maintenance terminates it.
        scheduling = {"provisioningModel": "STANDARD", "automaticRestart": True,
                      "onHostMaintenance": "TERMINATE" if has_gpu else "MIGRATE"}
    if p.get("max_run_seconds") and not p.get("_flex"):
        scheduling["maxRunDuration"] = {"seconds": str(p["max_run_seconds"])}
        scheduling["instanceTerminationAction"] = p.get("max_run_action") or "STOP"
    source_image = p["source_image"]
    if not source_image.startswith("http") and not source_image.startswith("projects/"):
        source_image = "projects/" + source_image
    body = {
        "name": p["name"],
        "machineType": "%s/machineTypes/%s" % (zone_url, p["machine_type"]),
        "disks": [{
            "boot": True, "autoDelete": True, "type": "PERSISTENT", "mode": "READ_WRITE",
            "initializeParams": {
                "sourceImage": source_image,
                "diskSizeGb": str(p["disk_size_gb"]),
                "diskType": "%s/diskTypes/%s" % (zone_url, p["disk_type"]),
                "labels": p["labels"],
            },
        }],
        "networkInterfaces": [{
            "network": "%s/%s" % (API, client.global_path("networks", p["network"])),
            "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}] if p["external_ip"] else [],
        }],
        "scheduling": scheduling,
        "labels": p["labels"],
        "metadata": {"items": [{"key": k, "value": v if isinstance(v, str) else json.dumps(v)}
                               for k, v in sorted(p["metadata"].items())]},
        "serviceAccounts": [{"email": p["vm_service_account"], "scopes": p["scopes"]}],
    }
    if p["tags"]:
        body["tags"] = {"items": p["tags"]}
    if p.get("resource_policies"):
        body["resourcePolicies"] = list(p["resource_policies"])
    if p.get("_flex"):
        body["reservationAffinity"] = {"consumeReservationType": "NO_RESERVATION"}
    if p["gpu_type"] and p["gpu_count"]:
        body["guestAccelerators"] = [{
            "acceleratorType": "%s/acceleratorTypes/%s" % (zone_url, p["gpu_type"]),
            "acceleratorCount": p["gpu_count"],
        }]
    return body


def insert_and_wait(client, p, zone):
    """Insert, then wait on the instance itself until RUNNING (its addresses come with it).

    Polling the instance rather than the operation saves the final GET; the operation is read
    only when the instance is missing or not running, to learn whether (and why) it failed.
    """
    path = client.zone_path(zone, "instances", p["name"])
    op = client.post(client.zone_path(zone, "instances"), body=instance_body(p, client, zone))
    deadline = client._clock() + p["timeout"]
    interval = client.poll_interval
    while True:
        if op.get("status") == "DONE" and op.get("error"):
            raise GceOperationError(op)
        client._sleep(interval)
        interval = min(client.poll_interval_cap, interval * 1.5)
        inst = client.get_or_none(path)
        if inst is not None and inst.get("status") == "RUNNING":
            return inst
        if op.get("status") != "DONE":
            op = client.get(client.operation_path(op))
            if op.get("status") == "DONE" and op.get("error"):
                raise GceOperationError(op)
        elif inst is None:
            raise GceError("%s vanished from %s right after its creation succeeded" % (p["name"], zone))
        if client._clock() > deadline:
            raise GceTimeoutError(op, p["timeout"])


def cleanup_zone(client, p, zone, timeout):
    """Delete what a failed insert may have left in `zone`; returns what was removed."""
    removed = []
    inst = client.get_or_none(client.zone_path(zone, "instances", p["name"]))
    if inst is not None and (inst.get("labels") or {}).get("managed-by") == p["labels"].get("managed-by"):
        client.call("DELETE", client.zone_path(zone, "instances", p["name"]), timeout=timeout)
        removed.append("instance %s" % p["name"])
    disk = client.get_or_none(client.zone_path(zone, "disks", p["name"]))
    if disk is not None and not disk.get("users"):
        client.call("DELETE", client.zone_path(zone, "disks", p["name"]), timeout=timeout)
        removed.append("disk %s" % p["name"])
    return removed


def start_existing(module, client, p, existing, result):
    zone = existing["zone"]
    path = client.zone_path(zone, "instances", p["name"])
    status = existing.get("status")
    if p["status"] == "RUNNING" and status in ("STOPPING", "TERMINATED", "STOPPED"):
        result["changed"] = True
        result["action"] = "started"
        result["previous_status"] = status
        if module.check_mode:
            return dict(existing, status="RUNNING")
        try:
            if status == "STOPPING":
                # A start is refused until the stop (or the preemption) has finished.
                inst = client.get(path)
                waited = 0
                while inst.get("status") == "STOPPING" and waited < p["timeout"]:
                    client._sleep(2)
                    waited += 2
                    inst = client.get(path)
                if inst.get("status") == "STOPPING":
                    module.fail_json(msg=(
                        "%s in %s is still STOPPING after %ss, the limit gce_vm_operation_timeout sets: GCE has not "
                        "finished stopping (or preempting) it, so it was not started; nothing was changed. The next "
                        "run starts it once it is stopped. If GCE is slow today, raise gce_vm_operation_timeout "
                        "(now %ss)." % (p["name"], zone, p["timeout"], p["timeout"])), **result)
            client.call("POST", path + "/start", timeout=p["timeout"])
            return instance_summary(client.get(path))
        except (GceConnectionError, GceTimeoutError) as exc:
            exc.zone, exc.doing = zone, "starting"
            raise
    if status == "SUSPENDED":
        module.fail_json(msg="%s is SUSPENDED; resume it (gcloud compute instances resume) - this project "
                             "does not suspend VMs." % p["name"], **result)
    result["action"] = "none"
    return existing


def failed_zone(module, client, p, zone, exc, result, queue, blocked_regions):
    """After an insert failed in `zone`: clean up there, note why, and return the zones still to
    try (GCE's zonesAvailable hint first); fails the module when no other zone can help."""
    codes = exc.codes
    message = "; ".join(e.get("message", "") for e in exc.errors)
    entry = {"zone": zone, "result": "failed", "code": ",".join(codes), "reason": message}
    result["attempts"].append(entry)
    entry["cleaned_up"] = cleanup_zone(client, p, zone, p["timeout"])
    if any(code in EXHAUSTED for code in codes):
        entry["result"] = "exhausted"
        hint = zones_available_hint(exc.errors)
        if hint:
            entry["zones_available"] = hint
            preferred = [z for z in hint if z in queue]
            entry["hint_not_candidates"] = [z for z in hint if z not in p["zones"]]
            queue = preferred + [z for z in queue if z not in preferred]
        return queue
    if "QUOTA_EXCEEDED" in codes:
        entry["result"] = "quota"
        quota_error = [e for e in exc.errors if e.get("code") == "QUOTA_EXCEEDED"][0]
        metric, is_global, limit = quota_metric(quota_error)
        entry["metric"] = metric
        if is_global:
            result["api_calls"] = client.request_count
            module.fail_json(msg=global_quota_message(metric, limit, client.project, message), **result)
        blocked_regions[region_of(zone)] = "%s limit %s" % (metric, limit)
        return queue
    result["api_calls"] = client.request_count
    module.fail_json(msg="Creating %s in %s failed (%s): %s" % (p["name"], zone, ",".join(codes), message), **result)


def create_in(module, client, p, zone, result):
    """Create the VM in `zone`: its summary, or None when GCE failed the insert's operation (the
    caller moves on). A refusal fails the module; a lost connection or an unfinished operation
    propagates, marked with the zone, for main to report."""
    try:
        instance = insert_and_wait(client, p, zone)
    except GceConnectionError as exc:
        exc.zone, exc.doing = zone, "creating"
        raise
    except GceTimeoutError as exc:
        exc.zone, exc.doing = zone, "creating"
        raise
    except GceApiError as exc:
        if exc.status != 409:
            result["api_calls"] = client.request_count
            module.fail_json(msg="GCE refused to create %s in %s: %s" % (p["name"], zone, exc.message),
                             error=exc.to_dict(), **result)
        result["attempts"].append({"zone": zone, "result": "exists"})
        result["action"] = "none"
        return instance_summary(client.get(client.zone_path(zone, "instances", p["name"])))
    result["attempts"].append({"zone": zone, "result": "created"})
    result["changed"] = True
    result["action"] = "created"
    return instance_summary(instance)


def place(module, client, p, result):
    queue = list(p["zones"])
    tried = set()
    blocked_regions = {}
    attempts = result["attempts"]
    while queue:
        zone = queue.pop(0)
        if zone in tried:
            continue
        tried.add(zone)
        region = region_of(zone)
        if region in blocked_regions:
            attempts.append({"zone": zone, "result": "skipped",
                             "reason": "region %s is out of quota (%s)" % (region, blocked_regions[region])})
            continue
        if module.check_mode:
            result["changed"] = True
            result["action"] = "created"
            attempts.append({"zone": zone, "result": "would create"})
            return {"name": p["name"], "zone": zone, "status": "RUNNING", "external_ip": "", "internal_ip": ""}
        try:
            return create_in(module, client, p, zone, result)
        except GceOperationError as exc:
            try:
                queue = failed_zone(module, client, p, zone, exc, result, queue, blocked_regions)
            except (GceConnectionError, GceTimeoutError) as cleanup_exc:
                cleanup_exc.zone, cleanup_exc.doing = zone, "cleaning up after a failed insert of"
                raise
    exhausted = [a["zone"] for a in attempts if a["result"] == "exhausted"]
    if p["flex_start"] and exhausted:
        instance = flex_place(module, client, p, result, exhausted)
        if instance is not None:
            return instance
    result["api_calls"] = client.request_count
    result["attempt_lines"] = [attempt_line(a) for a in attempts]
    msg = no_zone_message(p["name"], attempts)
    if p["flex_start"] and exhausted:
        msg += ("\nFlex-start (gce_vm_flex_start) found no capacity in %s within gce_vm_flex_start_wait_minutes "
                "(%g min)." % (", ".join(exhausted), p["flex_start_wait"] / 60.0))
    elif exhausted:
        msg += ("\nOr let GCE's flex-start wait for capacity: gce_vm_flex_start: true (accelerator-optimized "
                "machine types only; gce_vm_flex_start_hours sets its run duration).")
    module.fail_json(msg=msg, **result)


def flex_place(module, client, p, result, zones):
    """Every candidate zone was out of capacity: ask for a flex-start VM in those zones, in order,
    within one bounded wait. Returns the VM's summary, or None when no zone gave capacity in time
    (nothing is left behind: a request still pending at the bound is cancelled)."""
    deadline = client._clock() + p["flex_start_wait"]
    for zone in zones:
        remaining = int(deadline - client._clock())
        entry = {"zone": zone, "flex_start": True}
        result["attempts"].append(entry)
        if remaining <= 0:
            entry.update(result="skipped", reason="flex-start: its wait (gce_vm_flex_start_wait_minutes) is used up")
            continue
        try:
            instance = insert_and_wait(client, dict(p, _flex=True, timeout=remaining), zone)
        except GceOperationError as exc:
            entry.update(result="exhausted", code="flex-start " + ",".join(exc.codes),
                         reason="; ".join(e.get("message", "") for e in exc.errors))
            entry["cleaned_up"] = cleanup_zone(client, p, zone, p["timeout"])
            continue
        except GceTimeoutError:
            # Still PENDING at the bound: cancelling the request is deleting the pending VM.
            entry.update(result="skipped", reason="flex-start: no capacity within %g min, request cancelled"
                         % (p["flex_start_wait"] / 60.0))
            entry["cleaned_up"] = cleanup_zone(client, p, zone, p["timeout"])
            continue
        except GceApiError as exc:
            result["api_calls"] = client.request_count
            module.fail_json(msg="GCE refused the flex-start request for %s in %s: %s" % (p["name"], zone, exc.message),
                             error=exc.to_dict(), **result)
        entry.update(result="created", code="flex-start")
        result["changed"] = True
        result["action"] = "created"
        result["flex_start"] = {"zone": zone, "run_seconds": p["flex_start_seconds"],
                                "termination_action": p.get("max_run_action") or "STOP"}
        return instance_summary(instance)
    return None


def now_in_zone(client, p, zone):
    """What GCE has of the VM in `zone`, read afresh after a failure: "exists", "absent" or
    "unknown" (the read failed too), and a sentence that says so."""
    try:
        inst = client.get_or_none(client.zone_path(zone, "instances", p["name"]))
    except GceError as exc:
        return "unknown", "What exists now is unknown: reading %s back failed too (%s)." % (
            p["name"], getattr(exc, "cause", None) or exc)
    if inst is None:
        return "absent", "Nothing of it exists now: %s has no instance %s." % (zone, p["name"])
    return "exists", "%s exists now in %s, status %s." % (p["name"], zone, inst.get("status"))


NEXT_RUN = {
    "exists": "The next run finds %(name)s there and keeps it (starting it if it is stopped): it never creates "
              "a second one.",
    "absent": "The next run tries the candidate zones (gce_vm_candidate_zones) again from the first.",
    "unknown": "The next run looks for %(name)s in every zone first: if it exists it is kept (and started if it "
               "is stopped), never created twice; if not, the candidate zones (gce_vm_candidate_zones) are tried "
               "again from the first.",
}


def unfinished_message(client, p, exc):
    """Why the run stopped without GCE refusing anything (a lost connection, an operation still
    running at the deadline), what exists now and what the next run does."""
    zone = getattr(exc, "zone", None)
    doing = "%s %s%s" % (getattr(exc, "doing", "placing"), p["name"], " in %s" % zone if zone else "")
    if isinstance(exc, GceConnectionError):
        lines = ["Lost the connection to the Compute API while %s (%s, %d attempt%s); GCE refused nothing."
                 % (doing, exc.cause, exc.attempts, "" if exc.attempts == 1 else "s")]
    else:
        lines = ["%s was not finished after %ss, the limit gce_vm_operation_timeout sets (GCE's %s operation %s "
                 "is still %s); nothing was cancelled, and GCE may still finish it."
                 % (doing[0].upper() + doing[1:], exc.timeout, exc.operation.get("operationType") or "",
                    exc.operation.get("name"), exc.operation.get("status"))]
    state = "unknown"
    if zone:
        state, sentence = now_in_zone(client, p, zone)
        lines.append(sentence)
    lines.append(NEXT_RUN[state] % {"name": p["name"]})
    if isinstance(exc, GceTimeoutError):
        lines.append("If GCE is slow today, raise gce_vm_operation_timeout (now %ss)." % exc.timeout)
    elif state == "unknown":
        lines.append("Check the network path to the Compute API (a proxy, VPN or HTTPS_PROXY) before running again.")
    return " ".join(lines)


def main():
    spec = auth_argument_spec()
    spec.update(
        name=dict(type="str", required=True),
        zones=dict(type="list", elements="str", required=True),
        existing=dict(type="dict"),
        machine_type=dict(type="str", required=True),
        gpu_type=dict(type="str", default=""),
        gpu_count=dict(type="int", default=0),
        source_image=dict(type="str", required=True),
        disk_size_gb=dict(type="int", required=True),
        disk_type=dict(type="str", default="pd-balanced"),
        network=dict(type="str", default="default"),
        external_ip=dict(type="bool", default=True),
        tags=dict(type="list", elements="str", default=[]),
        labels=dict(type="dict", default={}),
        metadata=dict(type="dict", default={}),
        vm_service_account=dict(type="str", default="default"),
        scopes=dict(type="list", elements="str", default=[]),
        provisioning_model=dict(type="str", default="STANDARD", choices=["STANDARD", "SPOT"]),
        termination_action=dict(type="str", default="STOP", choices=["STOP", "DELETE"]),
        max_run_seconds=dict(type="int", default=0),
        max_run_action=dict(type="str", default="STOP", choices=["STOP", "DELETE"]),
        flex_start=dict(type="bool", default=False),
        flex_start_seconds=dict(type="int", default=0),
        flex_start_wait=dict(type="int", default=1800),
        resource_policies=dict(type="list", elements="str", default=[]),
        status=dict(type="str", default="RUNNING", choices=["RUNNING", "PRESENT"]),
        timeout=dict(type="int", default=600),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = dict(module.params)
    p["gpu_type"] = p["gpu_type"] or ""
    if not p["zones"]:
        module.fail_json(msg="gce_vm_candidate_zones: no candidate zone left to try (preflight dropped them all).")
    if p["max_run_seconds"] and not 30 <= p["max_run_seconds"] <= 120 * 86400:
        module.fail_json(msg="gce_vm_max_run_hours: GCE takes a run-time cap of 30 seconds to 120 days (got %d s); "
                             "set 0 for none." % p["max_run_seconds"])
    if p["flex_start"] and not (30 <= p["flex_start_seconds"] <= 7 * 86400 and p["flex_start_wait"] > 0):
        module.fail_json(msg="gce_vm_flex_start_hours: a flex-start VM runs 30 seconds to 7 days (got %d s), and "
                             "gce_vm_flex_start_wait_minutes must be above 0 (got %d s)."
                         % (p["flex_start_seconds"], p["flex_start_wait"]))
    if p["max_run_seconds"] and p["provisioning_model"] == "SPOT" and p["max_run_action"] != p["termination_action"]:
        module.fail_json(msg="gce_vm_max_run_action (%s) must equal gce_vm_instance_termination_action (%s) on a spot "
                             "VM: GCE has one termination action for both preemption and the run-time cap."
                         % (p["max_run_action"], p["termination_action"]))
    result = {"changed": False, "attempts": [], "action": "none", "api_calls": 0}
    client = GceClient.from_module(module)
    try:
        existing = p["existing"]
        if existing is None:
            found = client.aggregated_list("instances", filter=label_filter({}, p["name"]))
            existing = instance_summary(found[0]) if found else None
        if existing:
            instance = start_existing(module, client, p, existing, result)
        else:
            instance = place(module, client, p, result)
    except (GceConnectionError, GceTimeoutError) as exc:
        result["api_calls"] = client.request_count
        result["attempt_lines"] = [attempt_line(a) for a in result["attempts"]]
        module.fail_json(msg=unfinished_message(client, p, exc), error=exc.to_dict(), **result)
    except GceError as exc:
        result["api_calls"] = client.request_count
        module.fail_json(msg="Compute API error while placing %s: %s" % (p["name"], exc), **result)
    result["instance"] = instance
    result["zone"] = instance.get("zone")
    result["attempt_lines"] = [attempt_line(a) for a in result["attempts"]]
    result["api_calls"] = client.request_count
    module.exit_json(**result)


if __name__ == "__main__":
    main()
