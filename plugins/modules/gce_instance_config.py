#!/usr/bin/python
# -*- coding: utf-8 -*-
# Reconfigure, stop and start an existing Compute Engine VM, waiting on every operation.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gce_instance_config
short_description: Change an existing Compute Engine VM (machine type, GPUs, disks, ...) and its power state
description:
  - Compares the desired machine type, GPUs, scheduling, metadata, labels, service account and
    disk sizes of an existing VM with what Compute Engine reports, and applies only the difference
    with setMachineType, setMachineResources, setScheduling, setMetadata, setLabels,
    setServiceAccount and disks.resize, waiting on each operation.
  - Changes GCE accepts only on a stopped (TERMINATED) VM (machine type, GPUs, service account,
    provisioning model) stop it first, but only with I(allow_stop=true); otherwise the module
    fails before any change, naming the parameters. A VM that was running is started again.
  - Attaching GPUs forces C(scheduling.on_host_maintenance=TERMINATE) because a VM with GPUs
    cannot live-migrate; GCE refuses GPUs on a VM set to MIGRATE.
  - Disks only grow; a smaller I(size_gb) than the disk has is refused before any change.
  - Options left unset are not managed. Supports check mode and diff mode.
  - C(google.cloud.gcp_compute_instance) sends these updates without waiting (or not at all for
    GPUs, scheduling, metadata and service accounts), which is why this module exists.
options:
  name:
    description: VM name.
    type: str
    required: true
  zone:
    description: Zone of the VM.
    type: str
    required: true
  status:
    description:
      - Power state to leave the VM in. C(RUNNING) starts it, C(TERMINATED) stops it.
      - Unset keeps the state it had (a VM stopped for a change is started again).
    type: str
    choices: [RUNNING, TERMINATED]
  allow_stop:
    description: Allow stopping a running VM to apply a change that needs it stopped.
    type: bool
    default: false
  machine_type:
    description: Machine type name (C(n1-standard-16)) or URL.
    type: str
  accelerators:
    description:
      - Attached GPUs. C([]) removes every GPU. Only N1 machine types take attached GPUs.
    type: list
    elements: dict
    suboptions:
      type:
        description: Accelerator type name (C(nvidia-tesla-t4)) or URL.
        type: str
        required: true
      count:
        description: Number of GPUs of that type (C(0) drops the entry).
        type: int
        required: true
  scheduling:
    description: Scheduling options; only the keys given are managed.
    type: dict
    suboptions:
      on_host_maintenance:
        description: C(MIGRATE) or C(TERMINATE); forced to C(TERMINATE) when GPUs are attached.
        type: str
        choices: [MIGRATE, TERMINATE]
      automatic_restart:
        description: Restart after a host event.
        type: bool
      provisioning_model:
        description: C(STANDARD) or C(SPOT); changing it needs the VM stopped.
        type: str
        choices: [STANDARD, SPOT]
      instance_termination_action:
        description: What a spot preemption does (C(STOP) or C(DELETE)).
        type: str
        choices: [STOP, DELETE]
  metadata:
    description: Metadata keys to set (values are strings). Other keys are kept unless I(purge_metadata).
    type: dict
  purge_metadata:
    description: Remove metadata keys not in I(metadata) (beware, C(gcloud compute ssh) keeps C(ssh-keys) there).
    type: bool
    default: false
  labels:
    description: Labels to set. Other labels are kept unless I(purge_labels).
    type: dict
  purge_labels:
    description: Remove labels not in I(labels).
    type: bool
    default: false
  service_account:
    description:
      - Service account and OAuth scopes. C(email=default) matches the project's Compute Engine
        default account. Scopes may be short (C(cloud-platform)) or full URLs.
    type: dict
    suboptions:
      email:
        description: Account email, or C(default).
        type: str
        default: default
      scopes:
        description: OAuth scopes.
        type: list
        elements: str
        default: []
  boot_disk_size_gb:
    description: Size of the boot disk in GB (only grows).
    type: int
  disks:
    description: Sizes of attached disks, by device name (only grow).
    type: list
    elements: dict
    suboptions:
      device_name:
        description: The disk's device name on the VM (C(deviceName)).
        type: str
        required: true
      size_gb:
        description: Size in GB.
        type: int
        required: true
  timeout:
    description: Seconds to wait for each operation.
    type: int
    default: 600
# The auth options (project, auth_kind, service_account_file, ... with their GCP_* environment
# fallbacks) are google.cloud's own, taken from gce_client.auth_argument_spec.
extends_documentation_fragment:
  - google.cloud.gcp
notes:
  - Auth options are those of the google.cloud collection (project, auth_kind, service_account_file,
    service_account_contents, service_account_email, access_token, scopes), with the same GCP_*
    environment fallbacks.
  - A grown boot disk is expanded by the guest at boot; a grown data disk needs its file system
    grown inside the guest (C(resize2fs)).
author: GPU Jupyter project
"""

EXAMPLES = r"""
- name: Lifecycle | Give the VM 2 T4s on an n1-standard-16 and a 200 GB disk
  gce_instance_config:
    project: my-project
    auth_kind: application
    name: jupyter-gpu
    zone: us-central1-a
    machine_type: n1-standard-16
    accelerators:
      - type: nvidia-tesla-t4
        count: 2
    boot_disk_size_gb: 200
    allow_stop: true

- name: Lifecycle | Stop the VM
  gce_instance_config:
    project: my-project
    auth_kind: application
    name: jupyter-gpu
    zone: us-central1-a
    status: TERMINATED
"""

RETURN = r"""
changes:
  description: One entry per change applied (or, in check mode, to apply), in order.
  returned: always
  type: list
  elements: dict
  sample:
    - {"parameter": "machine_type", "before": "n1-standard-8", "after": "n1-standard-16", "call": "setMachineType"}
diff:
  description: Managed settings before and after.
  returned: always
  type: dict
gpu_changed:
  description: The attached GPUs changed; the guest's driver should be verified again.
  returned: always
  type: bool
stopped_for_change:
  description: The module stopped the VM to apply a change.
  returned: always
  type: bool
status:
  description: VM status at the end (or expected at the end, in check mode).
  returned: always
  type: str
summary:
  description: One line per change, for people.
  returned: always
  type: list
  elements: str
requests:
  description: API requests made (total, mutating, retries).
  returned: always
  type: dict
"""

import copy

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gce_client import (
    GceApiError,
    GceClient,
    GceError,
    GceOperationError,
    GceTimeoutError,
    auth_argument_spec,
    resource_name,
)

SCOPE_PREFIX = "https://www.googleapis.com/auth/"
# Short scope aliases gcloud accepts, mapped to their real scope.
SCOPE_ALIASES = {
    "storage-ro": "devstorage.read_only",
    "storage-rw": "devstorage.read_write",
    "storage-full": "devstorage.full_control",
    "logging-write": "logging.write",
    "monitoring-write": "monitoring.write",
    "compute-ro": "compute.readonly",
    "compute-rw": "compute",
    "default": None,
}
# GPU families that are attached to N1; A2/A3/A4/G2 carry theirs in the machine type.
ATTACHABLE_GPU_FAMILIES = ("n1",)
SCHEDULING_KEYS = {
    "on_host_maintenance": "onHostMaintenance",
    "automatic_restart": "automaticRestart",
    "provisioning_model": "provisioningModel",
    "instance_termination_action": "instanceTerminationAction",
}
# Scheduling keys GCE changes only on a stopped VM.
SCHEDULING_NEEDS_STOP = ("provisioning_model", "instance_termination_action")


class ConfigError(Exception):
    """A desired state that can't be reached; raised before any change."""


def normalize_scope(scope):
    if "://" in scope:
        return scope
    alias = SCOPE_ALIASES.get(scope, scope)
    return SCOPE_PREFIX + (alias or scope)


def accelerators_map(items, type_key="type", count_key="count"):
    result = {}
    for item in items or []:
        count = int(item.get(count_key) or 0)
        if count:
            name = resource_name(item[type_key])
            result[name] = result.get(name, 0) + count
    return result


def actual_state(instance, disks_by_device):
    """Managed settings as GCE reports them, in the module's own vocabulary."""
    scheduling = instance.get("scheduling") or {}
    accounts = instance.get("serviceAccounts") or []
    return {
        "status": instance.get("status"),
        "machine_type": resource_name(instance.get("machineType")),
        "accelerators": accelerators_map(instance.get("guestAccelerators"),
                                         "acceleratorType", "acceleratorCount"),
        "scheduling": {
            "on_host_maintenance": scheduling.get("onHostMaintenance", "MIGRATE"),
            "automatic_restart": scheduling.get("automaticRestart", True),
            "provisioning_model": scheduling.get("provisioningModel",
                                                 "SPOT" if scheduling.get("preemptible") else "STANDARD"),
            "instance_termination_action": scheduling.get("instanceTerminationAction"),
        },
        "metadata": dict((i["key"], i.get("value")) for i in
                         ((instance.get("metadata") or {}).get("items") or [])),
        "labels": dict(instance.get("labels") or {}),
        "service_account": {
            "email": accounts[0].get("email") if accounts else None,
            "scopes": sorted(accounts[0].get("scopes") or []) if accounts else [],
        },
        "disks": dict((dev, int(d.get("sizeGb"))) for dev, d in disks_by_device.items()),
    }


def email_matches(desired, actual):
    if desired == "default":
        return bool(actual) and actual.endswith("-compute@developer.gserviceaccount.com")
    return desired == actual


def plan_changes(params, instance, disks_by_device):
    """Work out the changes (pure: no API calls). Returns (before, after, changes, needs_stop).

    changes: ordered list of dicts with parameter, before, after, call, body, needs_stop.
    Raises ConfigError for anything GCE would refuse, before a single mutation.
    """
    before = actual_state(instance, disks_by_device)
    after = copy.deepcopy(before)
    changes = []
    boot_device = next((d.get("deviceName") for d in instance.get("disks") or [] if d.get("boot")), None)

    def add(parameter, call, body, needs_stop, target=None):
        changes.append(dict(parameter=parameter, before=before_of(parameter), after=after_of(parameter),
                            call=call, body=body, needs_stop=needs_stop, target=target))

    def before_of(parameter):
        return _get_path(before, parameter)

    def after_of(parameter):
        return _get_path(after, parameter)

    zone = params["zone"]

    # Machine type.
    if params.get("machine_type"):
        want = resource_name(params["machine_type"])
        if want != before["machine_type"]:
            after["machine_type"] = want
            add("machine_type", "setMachineType",
                {"machineType": "zones/%s/machineTypes/%s" % (zone, want)}, True)
    family = after["machine_type"].split("-", 1)[0]

    # GPUs.
    want_acc = None
    if params.get("accelerators") is not None:
        want_acc = accelerators_map(params["accelerators"])
        if want_acc and family not in ATTACHABLE_GPU_FAMILIES:
            raise ConfigError(
                "gce_vm_gpu_count: %s machine types have their GPUs built in; GPUs attach only to N1 "
                "machine types. Set gce_vm_gpu_count: 0 (and gce_vm_gpu_type: ''), or choose an n1-* "
                "gce_vm_machine_type." % after["machine_type"])
        if want_acc != before["accelerators"]:
            after["accelerators"] = want_acc
    gpus_after = after["accelerators"]

    # Scheduling: GPUs force TERMINATE, because GCE can't live-migrate a VM with GPUs and
    # refuses setMachineResources (and start) on one set to MIGRATE.
    want_sched = dict((k, v) for k, v in (params.get("scheduling") or {}).items() if v is not None)
    if gpus_after:
        if want_sched.get("on_host_maintenance") == "MIGRATE":
            raise ConfigError(
                "scheduling.on_host_maintenance: MIGRATE is impossible with GPUs attached (a VM with "
                "GPUs cannot live-migrate); use TERMINATE or remove the GPUs.")
        want_sched["on_host_maintenance"] = "TERMINATE"
    sched_diff = dict((k, v) for k, v in want_sched.items() if before["scheduling"].get(k) != v)
    if sched_diff:
        after["scheduling"].update(sched_diff)
        body = dict((SCHEDULING_KEYS[k], v) for k, v in after["scheduling"].items() if v is not None)
        # setScheduling replaces the whole object: send the merged result, keeping fields the
        # module does not manage (node affinities, ...).
        full = dict(instance.get("scheduling") or {})
        full.update(body)
        if after["scheduling"].get("provisioning_model") == "SPOT":
            full.pop("preemptible", None)
        needs_stop = any(k in SCHEDULING_NEEDS_STOP for k in sched_diff)
        add("scheduling", "setScheduling", full, needs_stop)

    if want_acc is not None and want_acc != before["accelerators"]:
        body = {"guestAccelerators": [
            {"acceleratorType": "projects/%s/zones/%s/acceleratorTypes/%s" % (instance_project(instance), zone, t),
             "acceleratorCount": c} for t, c in sorted(want_acc.items())]}
        add("accelerators", "setMachineResources", body, True)
        # GCE checks each step's machine type + GPU pair (e.g. an n1 with 1 T4 takes at most
        # 48 vCPUs): when GPUs grow, attach them before growing the machine; when they shrink,
        # change the machine first.
        types = [c["call"] for c in changes]
        if "setMachineType" in types and sum(want_acc.values()) > sum(before["accelerators"].values()):
            gpus = changes.pop(types.index("setMachineResources"))
            changes.insert(types.index("setMachineType"), gpus)

    # Service account.
    if params.get("service_account") is not None:
        sa = params["service_account"]
        want_scopes = sorted(set(normalize_scope(s) for s in sa.get("scopes") or []))
        email = sa.get("email") or "default"
        current = before["service_account"]["email"]
        if not email_matches(email, current) or want_scopes != before["service_account"]["scopes"]:
            after["service_account"] = {
                "email": current if email_matches(email, current) else email,
                "scopes": want_scopes}
            add("service_account", "setServiceAccount", {"email": email, "scopes": want_scopes}, True)

    # Metadata (fingerprinted).
    if params.get("metadata") is not None:
        want_md = dict((k, _meta_str(v)) for k, v in params["metadata"].items())
        new_md = {} if params.get("purge_metadata") else dict(before["metadata"])
        new_md.update(want_md)
        if new_md != before["metadata"]:
            after["metadata"] = new_md
            add("metadata", "setMetadata", {
                "fingerprint": (instance.get("metadata") or {}).get("fingerprint"),
                "items": [{"key": k, "value": v} for k, v in sorted(new_md.items())]}, False)

    # Labels (fingerprinted).
    if params.get("labels") is not None:
        want_labels = dict((k, str(v)) for k, v in params["labels"].items())
        new_labels = {} if params.get("purge_labels") else dict(before["labels"])
        new_labels.update(want_labels)
        if new_labels != before["labels"]:
            after["labels"] = new_labels
            add("labels", "setLabels", {"labels": new_labels,
                                        "labelFingerprint": instance.get("labelFingerprint")}, False)

    # Disks: only grow. Check every disk before planning any resize.
    wanted_sizes = []
    if params.get("boot_disk_size_gb") is not None:
        # Messages name what the user sets: the boot disk comes from gce_vm_disk_size_gb (through
        # gce_lifecycle_boot_disk_size_gb), data disks from gce_lifecycle_disks.
        wanted_sizes.append((boot_device, params["boot_disk_size_gb"], "gce_vm_disk_size_gb"))
    for disk in params.get("disks") or []:
        wanted_sizes.append((disk["device_name"], disk["size_gb"],
                             "gce_lifecycle_disks[%s].size_gb" % disk["device_name"]))
    for device, size, label in wanted_sizes:
        if device not in before["disks"]:
            raise ConfigError("%s: the VM has no disk with device name %r (it has: %s)" % (
                label, device, ", ".join(sorted(before["disks"])) or "none"))
        current = before["disks"][device]
        if size < current:
            raise ConfigError(
                "%s: refusing to shrink disk %r from %d GB to %d GB. Compute Engine disks can only "
                "grow: set %s to %d or more, or, for a smaller disk, create a new one and copy the "
                "data." % (label, device, current, size, label, current))
    for device, size, _label in wanted_sizes:
        if size > before["disks"][device]:
            after["disks"][device] = size
            changes.append(dict(parameter="disks.%s" % device, before=before["disks"][device], after=size,
                                call="disks.resize", body={"sizeGb": str(size)}, needs_stop=False,
                                target=disks_by_device[device]["selfLink"]))

    desired_status = params.get("status")
    needs_stop = any(c["needs_stop"] for c in changes)
    return before, after, changes, needs_stop, desired_status


def _meta_str(value):
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _get_path(state, parameter):
    node = state
    for part in parameter.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def instance_project(instance):
    # selfLink: https://.../compute/v1/projects/<project>/zones/<zone>/instances/<name>
    parts = (instance.get("selfLink") or "").split("/")
    return parts[parts.index("projects") + 1] if "projects" in parts else None


class Reconfigurer(object):
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.path = client.zone_path(self.params["zone"], "instances", self.params["name"])
        self.timeout = self.params["timeout"]
        self.applied = []

    def fetch(self):
        instance = self.client.get_or_none(self.path)
        if instance is None:
            raise ConfigError("VM %s not found in zone %s of project %s" % (
                self.params["name"], self.params["zone"], self.client.project))
        return instance

    def fetch_disks(self, instance):
        """GET only the disks whose size is managed: a converged run stays cheap."""
        wanted = set(d["device_name"] for d in self.params.get("disks") or [])
        if self.params.get("boot_disk_size_gb") is not None:
            wanted.update(d.get("deviceName") for d in instance.get("disks") or [] if d.get("boot"))
        result = {}
        for attached in instance.get("disks") or []:
            if attached.get("deviceName") in wanted and attached.get("source"):
                result[attached["deviceName"]] = self.client.get(attached["source"])
        # Unknown device names stay absent, so plan_changes can name them in its error.
        for attached in instance.get("disks") or []:
            if attached.get("deviceName") not in result and attached.get("deviceName") in wanted:
                result[attached["deviceName"]] = {"sizeGb": attached.get("diskSizeGb", 0)}
        return result

    def op(self, call, path, body=None):
        self.client.call("POST", path, body=body, timeout=self.timeout)

    def power(self, action):
        self.op(action, "%s/%s" % (self.path, action))

    def apply(self, change):
        call = change["call"]
        if call == "disks.resize":
            self.op(call, "%s/resize" % change["target"], change["body"])
            return
        try:
            self.op(call, "%s/%s" % (self.path, call), change["body"])
        except GceApiError as exc:
            # A fingerprint went stale (someone changed metadata/labels meanwhile): re-read once.
            if exc.status != 412 or call not in ("setMetadata", "setLabels"):
                raise
            fresh = self.client.get(self.path)
            body = dict(change["body"])
            if call == "setMetadata":
                body["fingerprint"] = (fresh.get("metadata") or {}).get("fingerprint")
            else:
                body["labelFingerprint"] = fresh.get("labelFingerprint")
            self.op(call, "%s/%s" % (self.path, call), body)

    def run(self):
        instance = self.fetch()
        disks = self.fetch_disks(instance)
        before, after, changes, needs_stop, desired_status = plan_changes(self.params, instance, disks)
        status = before["status"]
        gpu_changed = any(c["parameter"] == "accelerators" for c in changes)

        if status in ("SUSPENDING", "SUSPENDED") and (changes or desired_status):
            raise ConfigError("VM %s is %s; resume it first (gcloud compute instances resume)." % (
                self.params["name"], status))
        stopped_states = ("TERMINATED", "STOPPED")
        is_stopped = status in stopped_states
        must_stop = needs_stop and not is_stopped
        # Asking for status TERMINATED is consent to stop.
        if must_stop and not self.params["allow_stop"] and desired_status != "TERMINATED":
            reasons = ["%s (%s -> %s)" % (c["parameter"], _short(c["before"]), _short(c["after"]))
                       for c in changes if c["needs_stop"]]
            raise ConfigError(
                "VM %s is %s and these changes need it stopped: %s. Compute Engine applies "
                "setMachineType, setMachineResources (GPUs), setServiceAccount and provisioning-model "
                "changes only to a TERMINATED VM. Set allow_stop: true (playbook: -e gce_lifecycle_allow_stop=true) "
                "to let this run stop and restart it, or stop it yourself." % (
                    self.params["name"], status, "; ".join(reasons)))

        was_running = status in ("RUNNING", "PROVISIONING", "STAGING")
        if desired_status == "TERMINATED":
            final_status = "TERMINATED"
        elif desired_status == "RUNNING":
            final_status = "RUNNING"
        else:
            final_status = "RUNNING" if was_running else status

        power_changes = []
        if must_stop:
            power_changes.append(dict(parameter="status", before=status, after="TERMINATED", call="stop",
                                      needs_stop=False))
        start_at_end = final_status == "RUNNING" and (must_stop or not was_running)
        stop_at_end = final_status == "TERMINATED" and not must_stop and not is_stopped
        if start_at_end:
            power_changes.append(dict(parameter="status", before="TERMINATED" if must_stop else status,
                                      after="RUNNING", call="start", needs_stop=False))
        if stop_at_end:
            power_changes.append(dict(parameter="status", before=status, after="TERMINATED", call="stop",
                                      needs_stop=False))
        after["status"] = final_status

        stop_first = [c for c in power_changes if c["call"] == "stop" and must_stop]
        end = [c for c in power_changes if c not in stop_first]
        plan = stop_first + changes + end
        report = [dict((k, v) for k, v in c.items() if k in ("parameter", "before", "after", "call"))
                  for c in plan]

        if self.module.check_mode or not plan:
            return self.result(plan, report, before, after, gpu_changed, must_stop, final_status)

        stopped = False
        try:
            for change in plan:
                if change["call"] in ("stop", "start"):
                    self.power(change["call"])
                    stopped = change["call"] == "stop"
                else:
                    self.apply(change)
                self.applied.append(change)
        except (GceApiError, GceOperationError, GceTimeoutError) as exc:
            self.fail_midway(exc, report, stopped, was_running and must_stop)
        return self.result(plan, report, before, after, gpu_changed, must_stop, final_status)

    def fail_midway(self, exc, report, stopped, restart):
        done = [c["call"] + " " + c["parameter"] for c in self.applied]
        note = ""
        if stopped and restart:
            # Leave the user with a running VM where possible: a failed GPU change must not
            # leave a notebook server down.
            try:
                self.power("start")
                note = " The VM was started again."
            except GceError as start_exc:
                note = " Starting the VM again failed too (%s); it is stopped." % start_exc
        details = exc.to_dict() if hasattr(exc, "to_dict") else {}
        self.module.fail_json(
            msg="Changing VM %s failed at %s after applying [%s]: %s.%s" % (
                self.params["name"], _next_call(report, self.applied), ", ".join(done), exc, note),
            error=details, changes=[dict((k, v) for k, v in c.items() if k in ("parameter", "before", "after", "call"))
                                    for c in self.applied],
            changed=bool(self.applied), requests=self.client.counters())

    def result(self, plan, report, before, after, gpu_changed, stopped_for_change, final_status):
        summary = ["%s: %s -> %s (%s)" % (c["parameter"], _short(c["before"]), _short(c["after"]), c["call"])
                   for c in report] or ["VM %s: nothing to change" % self.params["name"]]
        return dict(changed=bool(plan), changes=report, summary=summary, gpu_changed=gpu_changed,
                    stopped_for_change=stopped_for_change and bool(plan), status=final_status,
                    diff=dict(before=before, after=after), requests=self.client.counters())


def _short(value):
    if isinstance(value, dict):
        return ", ".join("%s=%s" % (k, v) for k, v in sorted(value.items())) or "none"
    return value


def _next_call(report, applied):
    return report[len(applied)]["call"] if len(applied) < len(report) else "the end"


def argument_spec():
    spec = auth_argument_spec()
    spec.update(
        name=dict(type="str", required=True),
        zone=dict(type="str", required=True),
        status=dict(type="str", choices=["RUNNING", "TERMINATED"]),
        allow_stop=dict(type="bool", default=False),
        machine_type=dict(type="str"),
        accelerators=dict(type="list", elements="dict", options=dict(
            type=dict(type="str", required=True),
            count=dict(type="int", required=True))),
        scheduling=dict(type="dict", options=dict(
            on_host_maintenance=dict(type="str", choices=["MIGRATE", "TERMINATE"]),
            automatic_restart=dict(type="bool"),
            provisioning_model=dict(type="str", choices=["STANDARD", "SPOT"]),
            instance_termination_action=dict(type="str", choices=["STOP", "DELETE"]))),
        metadata=dict(type="dict"),
        purge_metadata=dict(type="bool", default=False),
        labels=dict(type="dict"),
        purge_labels=dict(type="bool", default=False),
        service_account=dict(type="dict", options=dict(
            email=dict(type="str", default="default"),
            scopes=dict(type="list", elements="str", default=[]))),
        boot_disk_size_gb=dict(type="int"),
        disks=dict(type="list", elements="dict", options=dict(
            device_name=dict(type="str", required=True),
            size_gb=dict(type="int", required=True))),
        timeout=dict(type="int", default=600),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[["project"]])
    client = GceClient.from_module(module)
    worker = Reconfigurer(module, client)
    try:
        result = worker.run()
    except ConfigError as exc:
        module.fail_json(msg=str(exc), changed=False, requests=client.counters())
    except GceError as exc:
        details = exc.to_dict() if hasattr(exc, "to_dict") else {}
        module.fail_json(msg=str(exc), error=details, changed=bool(worker.applied),
                         requests=client.counters())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
