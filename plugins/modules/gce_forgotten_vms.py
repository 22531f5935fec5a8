#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gce_forgotten_vms
short_description: Delete project VMs stopped for longer than N days, keeping their data as a snapshot or a disk
description:
  - Lists every VM carrying I(labels) (this project's VMs only) and, for each stopped one, how long it has
    been stopped (its C(lastStopTimestamp)).
  - With I(older_than_days) above 0, deletes each VM stopped longer than that. Before the delete it keeps the
    boot disk's data as I(keep) says - C(snapshot) (a snapshot of the boot disk, waited on until READY),
    C(disk) (the boot disk is detached from the VM's fate with setDiskAutoDelete and stays) or C(none).
    Attached data disks that do not auto-delete stay, as they would with any delete.
  - With I(older_than_days) 0 it deletes nothing, whatever else is set.
  - Skips VMs with deletion protection, and says so.
  - Check mode reports what would be deleted and kept.
options:
  older_than_days:
    description: Delete VMs stopped longer than this many days; 0 deletes nothing.
    type: int
    default: 0
  keep:
    description: What to keep of a deleted VM's boot disk.
    type: str
    default: snapshot
    choices: [snapshot, disk, none]
  labels:
    description: Labels that mark VMs as the project's.
    type: dict
    default: {"managed-by": "gpu-jupyter"}
  timeout: {description: Seconds to wait for each operation., type: int, default: 600}
extends_documentation_fragment:
  - google.cloud.gcp
author: GPU Jupyter project
"""

EXAMPLES = r"""
- name: Sweep | Delete VMs stopped for more than 30 days, keeping a snapshot of each boot disk
  gce_forgotten_vms:
    project: my-project
    auth_kind: application
    older_than_days: 30
    keep: snapshot
"""

RETURN = r"""
stopped:
  description: Every stopped project VM, with name, zone, stopped_days, last_stop and what happened to it (action).
  type: list
  elements: dict
  returned: always
deleted:
  description: The VMs deleted, each with what was kept (kept, kept_link, kept_gb).
  type: list
  elements: dict
  returned: always
lines: {description: One readable line per stopped VM., type: list, elements: str, returned: always}
"""

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gce_client import (
    GceClient, GceError, auth_argument_spec, label_filter, resource_name)

DAY = 86400.0


def parse_timestamp(value):
    try:
        return datetime.datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def snapshot_name(vm_name, stopped):
    # Names are RFC 1035, at most 63: the VM's name (cut), "forgotten", the stop date.
    return "%s-forgotten-%s" % (vm_name[:42].rstrip("-"), stopped.strftime("%Y%m%d"))


def boot_disk(instance):
    return next((d for d in instance.get("disks") or [] if d.get("boot")), None)


class Sweeper(object):
    def __init__(self, module, client, now=None):
        self.module = module
        self.client = client
        self.p = module.params
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        # Filled as the sweep goes, so a failure half way still reports what it did.
        self.stopped, self.deleted, self.lines = [], [], []

    def stopped_vms(self):
        out = []
        for inst in self.client.aggregated_list("instances", filter=label_filter(self.p["labels"])):
            labels = inst.get("labels") or {}
            if any(labels.get(k) != v for k, v in self.p["labels"].items()):
                continue   # the filter is GCE's; the check is ours
            if inst.get("status") not in ("TERMINATED", "STOPPED"):
                continue
            stopped = parse_timestamp(inst.get("lastStopTimestamp"))
            days = (self.now - stopped).total_seconds() / DAY if stopped else None
            out.append((inst, stopped, days))
        out.sort(key=lambda item: (resource_name(item[0].get("zone")), item[0]["name"]))
        return out

    def keep_snapshot(self, inst, zone, disk, stopped):
        name = snapshot_name(inst["name"], stopped)
        path = self.client.global_path("snapshots", name)
        snap = self.client.get_or_none(path)
        if snap is not None and snap.get("sourceDisk") and resource_name(snap["sourceDisk"]) != resource_name(
                disk["source"]):
            raise GceError("snapshot %s exists and was taken of another disk (%s); nothing was deleted"
                           % (name, snap["sourceDisk"]))
        if snap is None:
            body = {"name": name, "labels": dict(self.p["labels"], **{"forgotten-vm": inst["name"]}),
                    "description": "Boot disk of %s (%s), stopped since %s, kept when the VM was deleted."
                                   % (inst["name"], zone, inst.get("lastStopTimestamp"))}
            self.client.call("POST", self.client.zone_path(zone, "disks", resource_name(disk["source"]),
                                                           "createSnapshot"), body=body, timeout=self.p["timeout"])
            snap = self.client.get(path)
        if snap.get("status") != "READY":
            raise GceError("snapshot %s is %s, not READY; %s was not deleted"
                           % (name, snap.get("status"), inst["name"]))
        gb = round(int(snap.get("storageBytes") or 0) / float(1024 ** 3), 1)
        return {"kept": "snapshot", "kept_name": name, "kept_link": snap.get("selfLink"), "kept_gb": gb}

    def delete(self, inst, stopped):
        zone = resource_name(inst.get("zone"))
        path = self.client.zone_path(zone, "instances", inst["name"])
        disk = boot_disk(inst)
        kept = {"kept": "nothing"}
        if self.p["keep"] == "snapshot" and disk:
            kept = self.keep_snapshot(inst, zone, disk, stopped)
        elif self.p["keep"] == "disk" and disk:
            if disk.get("autoDelete"):
                self.client.call("POST", path + "/setDiskAutoDelete", timeout=self.p["timeout"],
                                 params={"autoDelete": "false", "deviceName": disk.get("deviceName")})
            kept = {"kept": "disk", "kept_name": resource_name(disk["source"]),
                    "kept_link": self.client.url(disk["source"]) if disk.get("source") else None,
                    "kept_gb": int(disk.get("diskSizeGb") or 0)}
        self.client.call("DELETE", path, timeout=self.p["timeout"])
        return kept

    def run(self):
        limit = self.p["older_than_days"]
        stopped, deleted, lines = self.stopped, self.deleted, self.lines
        changed = False
        for inst, stopped_at, days in self.stopped_vms():
            zone = resource_name(inst.get("zone"))
            entry = {"name": inst["name"], "zone": zone, "last_stop": inst.get("lastStopTimestamp"),
                     "stopped_days": round(days, 1) if days is not None else None, "action": "kept"}
            why = "policy off (gce_lifecycle_delete_stopped_after_days: 0)" if not limit else \
                "stopped less than %d days" % limit
            if limit and days is not None and days > limit:
                if inst.get("deletionProtection"):
                    why = "deletion protection is on"
                elif self.module.check_mode:
                    entry["action"] = "would delete"
                    entry["kept"] = self.p["keep"]
                    changed = True
                else:
                    entry.update(self.delete(inst, stopped_at))
                    entry["action"] = "deleted"
                    deleted.append(entry)
                    changed = True
            if days is None:
                why = "its stop time is unknown"
            stopped.append(entry)
            lines.append(self.line(entry, why))
        return dict(changed=changed, stopped=stopped, deleted=deleted, lines=lines)

    def line(self, e, why):
        head = "%s in %s, stopped %s days" % (e["name"], e["zone"], "?" if e["stopped_days"] is None
                                               else "%.1f" % e["stopped_days"])
        if e["action"] == "deleted":
            if e["kept"] == "snapshot":
                return "%s: deleted; its boot disk is kept as snapshot %s (%s GB stored): restore with " \
                       "gcloud compute disks create %s --source-snapshot %s --zone %s" % (
                           head, e["kept_link"], e["kept_gb"], e["name"], e["kept_name"], e["zone"])
            if e["kept"] == "disk":
                return "%s: deleted; its boot disk %s (%s GB) is kept in %s" % (head, e["kept_name"], e["kept_gb"],
                                                                              e["zone"])
            return "%s: deleted with its boot disk; nothing kept (gce_lifecycle_forgotten_keep: none)" % head
        if e["action"] == "would delete":
            return "%s: would be deleted, keeping a %s (check mode)" % (head, e["kept"])
        return "%s: kept (%s)" % (head, why)


def main():
    spec = auth_argument_spec()
    spec.update(
        older_than_days=dict(type="int", default=0),
        keep=dict(type="str", default="snapshot", choices=["snapshot", "disk", "none"]),
        labels=dict(type="dict", default={"managed-by": "gpu-jupyter"}),
        timeout=dict(type="int", default=600),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    if module.params["older_than_days"] < 0:
        module.fail_json(msg="gce_lifecycle_delete_stopped_after_days: %d is not a number of days; 0 turns the "
                             "policy off." % module.params["older_than_days"])
    if not module.params["labels"]:
        module.fail_json(msg="gce_lifecycle_labels is empty: the sweep deletes only VMs carrying this project's "
                             "labels.")
    client = GceClient.from_module(module)
    sweeper = Sweeper(module, client)
    try:
        result = sweeper.run()
    except GceError as exc:
        done = ["%s (kept: %s)" % (e["name"], e.get("kept_link") or e.get("kept")) for e in sweeper.deleted]
        module.fail_json(msg="The sweep stopped: %s. Deleted before that: %s. A rerun continues with the rest."
                             % (exc, "; ".join(done) or "nothing"), changed=bool(sweeper.deleted),
                         deleted=sweeper.deleted, lines=sweeper.lines,
                         error=exc.to_dict() if hasattr(exc, "to_dict") else {})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
