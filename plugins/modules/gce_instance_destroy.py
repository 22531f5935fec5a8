#!/usr/bin/python
# -*- coding: utf-8 -*-
# Delete a VM this project created, its disks, and the project's firewall rule once no VM is left.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gce_instance_destroy
short_description: Delete a project VM, its disks and, when no managed VM is left, the project's firewall rule
description:
  - Deletes the VM I(name) in I(zone) and waits for it to be gone.
  - Deletes its disks too (boot and attached), except attached data disks when
    I(keep_data_disk=true); those are switched to C(autoDelete=false) first so deleting the VM
    cannot take them along.
  - When the VM is already gone, still deletes a leftover disk named like it (the boot disk's
    default name), so a half-finished earlier run is completed.
  - Deletes the firewall rule I(firewall_name) once no VM carrying I(labels) is left.
  - Refuses VMs that lack I(labels) (it only deletes what this project created) and VMs with
    deletion protection.
  - Check mode reports exactly what would be deleted.
options:
  name:
    description: VM name.
    type: str
    required: true
  zone:
    description: Zone of the VM.
    type: str
    required: true
  keep_data_disk:
    description: Keep attached non-boot disks.
    type: bool
    default: false
  firewall_name:
    description: The project's firewall rule, deleted when no managed VM remains. Unset keeps firewalls.
    type: str
  labels:
    description: Labels that mark VMs as the project's.
    type: dict
    default: {"managed-by": "gpu-jupyter"}
  timeout:
    description: Seconds to wait for each operation.
    type: int
    default: 600
notes:
  - Auth options are those of the google.cloud collection, with the same GCP_* environment fallbacks.
# The auth options (project, auth_kind, service_account_file, ... with their GCP_* environment
# fallbacks) are google.cloud's own, taken from gce_client.auth_argument_spec.
extends_documentation_fragment:
  - google.cloud.gcp
author: GPU Jupyter project
"""

EXAMPLES = r"""
- name: Destroy | Delete the VM, its disks and the SSH firewall rule
  gce_instance_destroy:
    project: my-project
    auth_kind: application
    name: jupyter-gpu
    zone: us-central1-a
    firewall_name: gpu-jupyter-allow-ssh
"""

RETURN = r"""
deleted:
  description: What was deleted (or would be, in check mode).
  returned: always
  type: dict
  sample: {instances: [jupyter-gpu], disks: [jupyter-gpu], firewalls: [gpu-jupyter-allow-ssh]}
kept:
  description: What was left on purpose, and why.
  returned: always
  type: dict
  sample: {disks: [jupyter-data], firewalls: []}
remaining_managed_instances:
  description: Managed VMs still in the project after this run.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gce_client import (
    GceClient, GceConnectionError, GceError, GceTimeoutError, auth_argument_spec, label_filter, resource_name)

# What each collection is called in a message.
KINDS = {"instances": "VM", "disks": "disk", "firewalls": "firewall rule"}


class DestroyError(Exception):
    pass


class Destroyer(object):
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.p = module.params
        self.check = module.check_mode
        self.deleted = dict(instances=[], disks=[], firewalls=[])
        self.kept = dict(disks=[], firewalls=[])
        # The step under way and the data disks still to delete, for a message if a step never finishes.
        self.doing = "reading %s" % self.p["name"]
        self.pending_disks = []

    def call(self, method, path, body=None, params=None):
        parts = path.rstrip("/").split("/")
        if method == "DELETE" and len(parts) >= 2:
            self.doing = "deleting %s %s" % (KINDS.get(parts[-2], parts[-2]), parts[-1])
        else:
            self.doing = "changing %s (%s)" % (self.p["name"], parts[-1])
        if not self.check:
            self.client.call(method, path, body=body, params=params, timeout=self.p["timeout"])

    def unfinished_message(self, exc):
        """A lost connection or an operation past the deadline: what was done, what exists now,
        what the next run does."""
        if isinstance(exc, GceConnectionError):
            lines = ["Lost the connection to the Compute API while %s (%s, %d attempt%s); GCE refused nothing."
                     % (self.doing, exc.cause, exc.attempts, "" if exc.attempts == 1 else "s")]
        else:
            lines = ["%s was not finished after %ss, the limit gce_lifecycle_operation_timeout sets; nothing was "
                     "cancelled, and GCE may still finish it." % (self.doing[0].upper() + self.doing[1:], exc.timeout)]
        done = ["%s %s" % (kind, ", ".join(names)) for kind, names in sorted(self.deleted.items()) if names]
        lines.append(("Confirmed deleted so far: %s." % "; ".join(done)) if done else "No delete was confirmed yet.")
        zone, name = self.p["zone"], self.p["name"]
        try:
            inst = self.client.get_or_none(self.client.zone_path(zone, "instances", name))
            lines.append("VM %s is gone from %s." % (name, zone) if inst is None else
                         "VM %s still exists in %s, status %s." % (name, zone, inst.get("status")))
        except GceError:
            lines.append("Whether VM %s still exists is unknown: reading it back failed too." % name)
        lines.append("Running the destroy again deletes what is left: the VM if it is still there, a disk named "
                     "%s, and the firewall rule once no managed VM remains." % name)
        others = [resource_name(d) for d in self.pending_disks if resource_name(d) != name]
        if others:
            lines.append("It does not find the data disk(s) %s once the VM is gone: delete them with "
                         "`gcloud compute disks delete %s --zone %s`." % (", ".join(others), " ".join(others), zone))
        if isinstance(exc, GceTimeoutError):
            lines.append("If GCE is slow today, raise gce_lifecycle_operation_timeout (now %ss)." % exc.timeout)
        return " ".join(lines)

    def delete_disk(self, link):
        name = resource_name(link)
        try:
            self.call("DELETE", link)
        except GceError as exc:
            if getattr(exc, "status", None) == 404:
                return
            raise
        self.deleted["disks"].append(name)

    def run(self):
        zone, name = self.p["zone"], self.p["name"]
        path = self.client.zone_path(zone, "instances", name)
        instance = self.client.get_or_none(path)
        if instance is not None:
            labels = instance.get("labels") or {}
            missing = dict((k, v) for k, v in self.p["labels"].items() if labels.get(k) != v)
            if missing:
                raise DestroyError(
                    "VM %s lacks the label(s) %s that mark this project's VMs; refusing to delete a VM "
                    "this project did not create." % (name, ", ".join("%s=%s" % kv for kv in missing.items())))
            if instance.get("deletionProtection"):
                raise DestroyError("VM %s has deletion protection on; turn it off first "
                                   "(gcloud compute instances update %s --no-deletion-protection)." % (name, name))
            to_delete_after = []
            # Deleted with the VM (autoDelete): counted once the VM's delete has finished.
            with_vm = []
            for attached in instance.get("disks") or []:
                source = attached.get("source")
                if not source:
                    continue
                keep = self.p["keep_data_disk"] and not attached.get("boot")
                if keep:
                    self.kept["disks"].append(resource_name(source))
                    if attached.get("autoDelete"):
                        # Else deleting the VM would take the disk along.
                        self.call("POST", "%s/setDiskAutoDelete" % path,
                                  params={"autoDelete": "false", "deviceName": attached.get("deviceName")})
                elif not attached.get("autoDelete"):
                    to_delete_after.append(source)
                else:
                    with_vm.append(resource_name(source))
            self.pending_disks = list(to_delete_after)
            self.call("DELETE", path)
            self.deleted["instances"].append(name)
            self.deleted["disks"].extend(with_vm)
            for source in to_delete_after:
                self.delete_disk(source)
                self.pending_disks.remove(source)
        else:
            # A previous run may have died between deleting the VM and its disks.
            leftover = self.client.get_or_none(self.client.zone_path(zone, "disks", name))
            if leftover is not None and not leftover.get("users"):
                self.delete_disk(leftover["selfLink"])

        remaining = []
        for inst in self.client.aggregated_list("instances", filter=label_filter(self.p["labels"])):
            if not (inst.get("name") == name and resource_name(inst.get("zone")) == zone):
                remaining.append("%s (%s)" % (inst["name"], resource_name(inst.get("zone"))))
        if self.p.get("firewall_name"):
            fw_path = self.client.global_path("firewalls", self.p["firewall_name"])
            if remaining:
                self.kept["firewalls"].append(self.p["firewall_name"])
            elif self.client.get_or_none(fw_path) is not None:
                self.call("DELETE", fw_path)
                self.deleted["firewalls"].append(self.p["firewall_name"])
        changed = any(self.deleted.values())
        return dict(changed=changed, deleted=self.deleted, kept=self.kept,
                    remaining_managed_instances=sorted(remaining), requests=self.client.counters())


def main():
    spec = auth_argument_spec()
    spec.update(
        name=dict(type="str", required=True),
        zone=dict(type="str", required=True),
        keep_data_disk=dict(type="bool", default=False),
        firewall_name=dict(type="str"),
        labels=dict(type="dict", default={"managed-by": "gpu-jupyter"}),
        timeout=dict(type="int", default=600),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    client = GceClient.from_module(module)
    worker = Destroyer(module, client)
    try:
        result = worker.run()
    except DestroyError as exc:
        module.fail_json(msg=str(exc), changed=False)
    except (GceConnectionError, GceTimeoutError) as exc:
        module.fail_json(msg=worker.unfinished_message(exc), error=exc.to_dict(), deleted=worker.deleted,
                         changed=any(worker.deleted.values()))
    except GceError as exc:
        module.fail_json(msg=str(exc), error=exc.to_dict() if hasattr(exc, "to_dict") else {},
                         deleted=worker.deleted, changed=any(worker.deleted.values()))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
