#!/usr/bin/python
# -*- coding: utf-8 -*-
# Find the project's VMs (by label or name) and describe them: state, shape, GPUs, uptime, cost.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gce_instances_info
short_description: List the Compute Engine VMs this project manages, with state, GPUs, uptime and cost
description:
  - Finds VMs in every zone of the project with one aggregated list call filtered by I(labels)
    (default C(managed-by=gpu-jupyter)), or one VM by I(name) and I(zone).
  - For each VM returns its state, machine type, GPUs, disks, uptime, the SSH tunnel command,
    and, when I(prices) is given, the cost from the project's price table
    (C(gce_pricing.estimate)), that is $/hour now, $/month if left running and $/month while stopped.
  - Also returns a ready-to-print C(table).
  - Read-only; runs in check mode.
options:
  name:
    description:
      - Only this VM. Without I(zone) it is looked for in every zone (one aggregated list call,
        filtered by name and I(labels)), so a VM that zone failover put elsewhere is still found.
    type: str
  zone:
    description: Zone of I(name), when known (one GET instead of the aggregated list).
    type: str
  console_tail:
    description:
      - Also return the last this many lines of each VM's serial port 1 (the boot console), with
        terminal control sequences removed; 0 reads nothing.
    type: int
    default: 0
  host_keys:
    description:
      - Also return each running VM's SSH host keys, read from its guest attributes
        (C(hostkeys/), published by the guest agent when the VM's metadata has
        C(enable-guest-attributes=TRUE)); empty until the guest has published them.
    type: bool
    default: false
  labels:
    description: Labels every listed VM carries (ignored with I(name) and I(zone)).
    type: dict
    default: {"managed-by": "gpu-jupyter"}
  prices:
    description: The price table (roles/gce_preflight/files/prices.yml); no cost figures without it.
    type: dict
  tunnel_port:
    description: Port JupyterLab listens on inside the VM, for the tunnel command.
    type: int
    default: 8080
  tunnel_through_iap:
    description: Add C(--tunnel-through-iap) to the tunnel command.
    type: bool
    default: true
notes:
  - Auth options are those of the google.cloud collection, with the same GCP_* environment fallbacks.
# The auth options (project, auth_kind, service_account_file, ... with their GCP_* environment
# fallbacks) are google.cloud's own, taken from gce_client.auth_argument_spec.
extends_documentation_fragment:
  - google.cloud.gcp
author: GPU Jupyter project
"""

EXAMPLES = r"""
- name: Lifecycle | Describe the managed VMs
  gce_instances_info:
    project: my-project
    auth_kind: application
    prices: "{{ lookup('ansible.builtin.file', 'roles/gce_preflight/files/prices.yml') | from_yaml }}"
  register: vms
"""

RETURN = r"""
instances:
  description: One entry per VM, sorted by zone and name.
  returned: always
  type: list
  elements: dict
  sample:
    - name: jupyter-gpu
      zone: us-central1-a
      status: RUNNING
      machine_type: n1-standard-8
      gpus: {nvidia-tesla-t4: 1}
      uptime_seconds: 4210
      max_run_seconds: 43200
      termination_action: STOP
      run_limit_ends: "2026-12-02T23:40:00-08:00"
      run_limit_text: GCE stops it at 2026-12-03 07:40 UTC (in 10h 50m), 12h 00m after each start
      last_stop: null
      stopped_seconds: null
      stopped_for: null
      cost: {hourly_now: 0.7241, monthly_running: 528.6, monthly_stopped: 10.0}
      tunnel_command: >-
        gcloud compute ssh jupyter-gpu --zone us-central1-a --project p --tunnel-through-iap
        -- -N -L 8080:localhost:8080
      service_accounts: [jupyter-gpu-vm@p.iam.gserviceaccount.com]
      host_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA..."]
      console_tail: ["[  OK  ] Started ssh.service - OpenBSD Secure Shell server."]
table:
  description: Lines of a fixed-width table of the VMs.
  returned: always
  type: list
  elements: str
builtin_gpu_families:
  description:
    - Machine families whose types carry their GPUs (C(a2), C(g2), ...), from the project's one
      list (gce_preflight_checks.BUILTIN_GPU_FAMILIES), for tasks that treat them apart.
  returned: always
  type: list
  elements: str
"""

import datetime
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gce_client import (
    GceClient, GceConnectionError, GceError, auth_argument_spec, label_filter, resource_name,
    run_limit_seconds)
from ansible.module_utils.gce_preflight_checks import BUILTIN_GPU_FAMILIES

try:
    from ansible.module_utils import gce_pricing
    HAS_PRICING = True
except ImportError:  # pragma: no cover - the project ships it
    gce_pricing = None
    HAS_PRICING = False

RUNNING_STATES = ("PROVISIONING", "STAGING", "RUNNING")


# Colour and cursor codes, and what is left of one that the console cut short ("\x1b…").
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b\[?[0-9;]*|\r")


def console_lines(contents, count):
    """The last `count` non-empty lines of a serial console, without terminal control codes."""
    lines = [ANSI.sub("", line).rstrip() for line in (contents or "").split("\n")]
    return [line for line in lines if line.strip()][-count:] if count > 0 else []


def parse_timestamp(value):
    # GCE: 2025-06-01T10:11:12.345-07:00
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None


def human_duration(seconds):
    if seconds is None:
        return "-"
    minutes = int(seconds) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return "%dd %dh" % (days, hours)
    return "%dh %02dm" % (hours, minutes)


def run_limit(instance, status, started, now):
    """The VM's run-time cap and, while it runs, when GCE applies it; and how long a stopped VM
    has been stopped (lastStopTimestamp)."""
    scheduling = instance.get("scheduling") or {}
    seconds = run_limit_seconds(scheduling)
    action = scheduling.get("instanceTerminationAction") or "STOP"
    ends = None
    if status in RUNNING_STATES:
        if scheduling.get("terminationTime"):
            ends = parse_timestamp(scheduling["terminationTime"].replace("Z", "+00:00"))
        elif seconds and started is not None:
            ends = started + datetime.timedelta(seconds=seconds)
    text = ""
    if ends is not None:
        at = ends.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
        text = "GCE %s it at %s UTC (in %s)%s" % (
            "deletes" if action == "DELETE" else "stops", at,
            human_duration(max(0, (ends - now).total_seconds())),
            ", %s after each start" % human_duration(seconds) if seconds else "")
    stopped = parse_timestamp(instance.get("lastStopTimestamp"))
    stopped_seconds = None
    if status in ("TERMINATED", "STOPPED") and stopped is not None:
        stopped_seconds = max(0, int((now - stopped).total_seconds()))
    return dict(max_run_seconds=seconds, termination_action=action if (seconds or ends) else None,
                run_limit_ends=ends.isoformat() if ends else None, run_limit_text=text,
                last_stop=instance.get("lastStopTimestamp"), stopped_seconds=stopped_seconds,
                stopped_for=human_duration(stopped_seconds) if stopped_seconds is not None else None)


def describe(instance, disks_by_link, project, shape, prices, now, tunnel_port, iap):
    """One VM as a flat dict (pure: everything it needs is passed in)."""
    name = instance["name"]
    zone = resource_name(instance.get("zone"))
    machine_type = resource_name(instance.get("machineType"))
    gpus = {}
    for acc in instance.get("guestAccelerators") or []:
        gpus[resource_name(acc["acceleratorType"])] = gpus.get(resource_name(acc["acceleratorType"]), 0) + \
            int(acc.get("acceleratorCount") or 0)
    builtin = None
    if shape and shape[2] and not gpus:
        builtin = {shape[2]: shape[3]}
    all_gpus = gpus or builtin or {}
    disks = []
    for attached in instance.get("disks") or []:
        disk = disks_by_link.get(attached.get("source")) or {}
        disks.append(dict(
            name=resource_name(attached.get("source")), device_name=attached.get("deviceName"),
            boot=bool(attached.get("boot")), auto_delete=bool(attached.get("autoDelete")),
            size_gb=int(disk.get("sizeGb") or attached.get("diskSizeGb") or 0),
            type=resource_name(disk.get("type")) or "pd-standard"))
    scheduling = instance.get("scheduling") or {}
    spot = scheduling.get("provisioningModel") == "SPOT" or bool(scheduling.get("preemptible"))
    status = instance.get("status")
    started = parse_timestamp(instance.get("lastStartTimestamp"))
    uptime = None
    if status in RUNNING_STATES and started is not None:
        uptime = max(0, int((now - started).total_seconds()))
    nics = instance.get("networkInterfaces") or []
    external_ip = bool(nics and nics[0].get("accessConfigs"))
    interfaces = [dict(internal_ip=n.get("networkIP"),
                       external_ip=((n.get("accessConfigs") or [{}])[0]).get("natIP")) for n in nics]
    cost = None
    cost_error = None
    if prices is not None and shape is not None and HAS_PRICING:
        gpu_type, gpu_count = (sorted(gpus.items())[0] if gpus else (None, 0))
        if builtin:
            gpu_type, gpu_count = shape[2], shape[3]
        try:
            est = gce_pricing.estimate(
                prices, zone, machine_type, shape[0], shape[1], gpu_type=gpu_type, gpu_count=gpu_count,
                disks=[{"type": d["type"], "size_gb": d["size_gb"]} for d in disks], spot=spot,
                external_ip=external_ip)
        except gce_pricing.PricingError as exc:
            cost_error = str(exc)
        else:
            hours = est["hours_per_month"]
            running = status in RUNNING_STATES
            cost = dict(
                hourly_now=est["hourly"] if running else round(est["stopped_monthly"] / hours, 4),
                monthly_running=est["monthly"], monthly_stopped=est["stopped_monthly"],
                hourly_running=est["hourly"], currency=est["currency"], price_date=est["price_date"],
                provisioning_model=est["provisioning_model"], text=est["text"])
    tunnel = "gcloud compute ssh %s --zone %s --project %s%s -- -N -L %d:localhost:%d" % (
        name, zone, project, " --tunnel-through-iap" if iap else "", tunnel_port, tunnel_port)
    return dict(
        run_limit(instance, status, started, now),
        name=name, zone=zone, status=status, machine_type=machine_type,
        vcpus=shape[0] if shape else None, memory_gib=shape[1] if shape else None,
        gpus=all_gpus, gpu_text=", ".join("%d x %s" % (c, t) for t, c in sorted(all_gpus.items())) or "none",
        disks=disks, labels=instance.get("labels") or {}, network_interfaces=interfaces,
        provisioning_model="SPOT" if spot else (scheduling.get("provisioningModel") or "STANDARD"),
        last_start=instance.get("lastStartTimestamp"), uptime_seconds=uptime, uptime=human_duration(uptime),
        cost=cost, cost_error=cost_error, tunnel_command=tunnel, self_link=instance.get("selfLink"),
        service_accounts=[sa.get("email") for sa in instance.get("serviceAccounts") or []])


def money(value, digits):
    return "-" if value is None else ("$%." + str(digits) + "f") % value


def table(vms):
    header = ["NAME", "ZONE", "STATE", "MACHINE TYPE", "GPUS", "UPTIME", "$/HOUR NOW", "$/MONTH RUNNING",
              "$/MONTH STOPPED"]
    rows = []
    for vm in vms:
        cost = vm["cost"] or {}
        rows.append([vm["name"], vm["zone"], vm["status"], vm["machine_type"], vm["gpu_text"], vm["uptime"],
                     money(cost.get("hourly_now"), 4), money(cost.get("monthly_running"), 2),
                     money(cost.get("monthly_stopped"), 2)])
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in [header] + rows]
    if not vms:
        lines.append("(no VMs)")
    for vm in vms:
        lines.append("%s tunnel: %s" % (vm["name"], vm["tunnel_command"]))
        if vm["cost_error"]:
            lines.append("%s cost: %s" % (vm["name"], vm["cost_error"]))
        if vm.get("stopped_for"):
            lines.append("%s stopped for %s (since %s); its disks bill %s/month while it stays stopped"
                         % (vm["name"], vm["stopped_for"], vm["last_stop"],
                            money((vm["cost"] or {}).get("monthly_stopped"), 2)))
        if vm.get("run_limit_text"):
            lines.append("%s run-time cap: %s" % (vm["name"], vm["run_limit_text"]))
    dates = sorted(set((vm["cost"] or {}).get("price_date") for vm in vms if vm["cost"]))
    if dates:
        lines.append("Prices of %s (list prices, no discounts; a month is 730 h). A stopped VM bills its disks only."
                     % ", ".join(dates))
    return lines


class Lister(object):
    def __init__(self, client, params, now=None):
        self.client = client
        self.params = params
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        self._shapes = {}

    def instances(self):
        p = self.params
        if p.get("name") and p.get("zone"):
            inst = self.client.get_or_none(self.client.zone_path(p["zone"], "instances", p["name"]))
            return [inst] if inst else []
        return self.client.aggregated_list("instances", filter=label_filter(p["labels"], p.get("name")))

    def host_keys(self, instance):
        if instance.get("status") != "RUNNING":
            return []
        path = self.client.zone_path(resource_name(instance.get("zone")), "instances", instance["name"],
                                     "getGuestAttributes")
        found = self.client.get_or_none(path, params={"queryPath": "hostkeys/"}) or {}
        items = (found.get("queryValue") or {}).get("items") or []
        return sorted("%s %s" % (i["key"], i["value"]) for i in items if i.get("key") and i.get("value"))

    def shape(self, instance):
        machine_type = resource_name(instance.get("machineType"))
        key = (resource_name(instance.get("zone")), machine_type)
        if key not in self._shapes:
            shape = gce_pricing.machine_shape(machine_type) if HAS_PRICING else None
            if shape is None:
                # Custom and unusual types: ask the API, once per zone and type.
                mt = self.client.get_or_none(instance["machineType"])
                shape = gce_pricing.shape_from_api(mt) if (mt and HAS_PRICING) else None
            self._shapes[key] = shape
        return self._shapes[key]

    def run(self):
        found = self.instances()
        disks_by_link = {}
        if found:
            # One request for every disk's type and size, instead of one per disk.
            for disk in self.client.aggregated_list("disks"):
                disks_by_link[disk.get("selfLink")] = disk
                disks_by_link[self.client.url(disk.get("selfLink", ""))] = disk
        vms = []
        for inst in found:
            for attached in inst.get("disks") or []:
                src = attached.get("source")
                if src and src not in disks_by_link and self.client.url(src) in disks_by_link:
                    disks_by_link[src] = disks_by_link[self.client.url(src)]
            vm = describe(inst, disks_by_link, self.client.project, self.shape(inst), self.params.get("prices"),
                          self.now, self.params["tunnel_port"], self.params["tunnel_through_iap"])
            if self.params.get("host_keys"):
                vm["host_keys"] = self.host_keys(inst)
            if self.params.get("console_tail"):
                port = self.client.get_or_none(self.client.zone_path(vm["zone"], "instances", vm["name"], "serialPort"),
                                               params={"port": 1}) or {}
                vm["console_tail"] = console_lines(port.get("contents"), self.params["console_tail"])
            vms.append(vm)
        vms.sort(key=lambda v: (v["zone"], v["name"]))
        return vms


def main():
    spec = auth_argument_spec()
    spec.update(
        name=dict(type="str"),
        zone=dict(type="str"),
        labels=dict(type="dict", default={"managed-by": "gpu-jupyter"}),
        prices=dict(type="dict"),
        tunnel_port=dict(type="int", default=8080),
        tunnel_through_iap=dict(type="bool", default=True),
        host_keys=dict(type="bool", default=False),
        console_tail=dict(type="int", default=0),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, required_by={"zone": "name"})
    client = GceClient.from_module(module)
    try:
        vms = Lister(client, module.params).run()
    except GceConnectionError as exc:
        module.fail_json(msg="Lost the connection to the Compute API while listing the VMs (%s, %d attempt%s); GCE "
                             "refused nothing, and this read changes nothing. Run again once the API is reachable "
                             "(check a proxy, VPN or HTTPS_PROXY)." % (exc.cause, exc.attempts,
                                                                       "" if exc.attempts == 1 else "s"),
                         error=exc.to_dict())
    except GceError as exc:
        module.fail_json(msg=str(exc), error=exc.to_dict() if hasattr(exc, "to_dict") else {})
    module.exit_json(changed=False, instances=vms, table=table(vms), requests=client.counters(),
                     builtin_gpu_families=sorted(BUILTIN_GPU_FAMILIES))


if __name__ == "__main__":
    main()
