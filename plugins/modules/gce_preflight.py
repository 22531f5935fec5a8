#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gce_preflight
short_description: Refuse a GPU VM request that would fail or bill by surprise, before anything is created
description:
  - Validates the request locally first (project ID, names, zone format, machine family vs GPU rules,
    GPU counts, disk, labels, SSH source CIDRs, access method, budget); these checks make no API call.
  - Then, with read-only Compute API calls, checks that the zone exists, the machine type and the GPU
    are offered there (listing the zones that do offer them), the image family resolves to a
    non-deprecated image no larger than the boot disk, and that quota (limit - usage) covers the
    regional GPU metric (the PREEMPTIBLE_ one for spot), GPUS_ALL_REGIONS, CPUs and disk.
  - Estimates the cost (hourly, monthly at 730 h, monthly while stopped) from a dated price table
    and refuses when the monthly estimate exceeds the budget.
  - With an external IP, lists the firewall rules of the VM's network and refuses any enabled ingress allow
    rule that applies to the VM (no target, or its tag or service account) and admits internet addresses;
    ranges that together cover the internet (0.0.0.0/1 + 128.0.0.0/1) are the internet.
  - When the VM already exists as wanted, skips the API checks but the exposure check.
  - Never changes anything; every refusal names the variable to change and the fix.
version_added: "1.0.0"
options:
  name: {description: Instance name., type: str, required: true}
  zone: {description: Preferred zone., type: str, required: true}
  candidate_zones:
    description: Zones to fall back to, in order, after C(zone). Empty and no C(candidate_regions) means C(zone) only.
    type: list
    elements: str
    default: []
  candidate_regions:
    description: Regions whose every zone offering the machine type and GPU become candidates.
    type: list
    elements: str
    default: []
  machine_type: {description: Machine type name., type: str, required: true}
  gpu_type:
    description: Accelerator type attached to an N1 machine type; empty for none or built-in.
    type: str
    default: ""
  gpu_count:
    description: Attached GPUs; 0 for A2/A3/A4/G2/G4 whose GPUs are built in. Checked here, so true/false is refused.
    type: raw
    default: 0
  fleet:
    description:
      - The names of every VM of this shape in the declaration (gce_vm_count / gce_vm_names); empty for I(name) alone.
      - The budget holds for all of them. Quota is checked only for those that hold none now, the ones not
        created yet or stopped (a running VM's GPUs and vCPUs are already in the usage), so growing a fleet asks
        only for the new VMs.
    type: list
    elements: str
    default: []
  image_project: {description: Image project., type: str, required: true}
  image_family: {description: Image family., type: str, required: true}
  disk_size_gb: {description: Boot disk size., type: int, required: true}
  disk_type: {description: Boot disk type., type: str, default: pd-balanced}
  labels: {description: Instance labels., type: dict, default: {}}
  ssh_source_ranges: {description: CIDRs allowed to reach SSH., type: list, elements: str, default: []}
  allow_public_ssh: {description: Accept 0.0.0.0/0 as SSH source., type: bool, default: false}
  firewall_ports:
    description: TCP ports the VM's firewall rule opens (gce_vm opens SSH only).
    type: list
    elements: raw
    default: [22]
  jupyter_port:
    description: The port Jupyter listens on (the user's C(jupyter_port)); refused when the firewall opens it.
    type: int
    default: 8080
  access:
    description: ssh, oslogin or iap; empty picks iap when C(ssh_source_ranges) holds IAP's range, else ssh.
    type: str
    default: ""
  ssh_public_key: {description: OpenSSH public key for C(access=ssh)., type: str, default: ""}
  ssh_user: {description: User of the ssh-keys metadata entry., type: str, default: jupyter}
  provisioning_model: {description: STANDARD or SPOT., type: str, default: STANDARD}
  termination_action: {description: STOP or DELETE (spot)., type: str, default: STOP}
  max_run_hours:
    description: Hard run-time cap in hours (0 - none); refused outside GCE's 30 s to 120 days.
    type: raw
    default: 0
  max_run_action: {description: STOP or DELETE when the cap is reached., type: str, default: STOP}
  flex_start: {description: The flex-start fallback is on (its quota and run are checked)., type: bool, default: false}
  flex_start_hours: {description: The flex-start VM's run in hours (up to 168)., type: raw, default: 8}
  flex_start_wait_minutes: {description: Minutes to wait for flex-start capacity (1-120)., type: raw, default: 30}
  compact_placement:
    description: The VM is a node of a cluster with a compact placement policy (its machine series is checked).
    type: bool
    default: false
  budget_monthly_usd: {description: Refuse when the monthly estimate exceeds this; unset for no budget., type: raw}
  external_ip: {description: The VM gets an ephemeral external IPv4 address., type: bool, default: false}
  direct_without_external_ip:
    description: Direct SSH (access ssh/oslogin) reaches the VM's internal address (a VPN, the local sandbox).
    type: bool
    default: false
  network: {description: VPC network the VM joins; its firewall rules are checked., type: str, default: default}
  network_tag: {description: Network tag the VM carries (firewall rules that target it apply)., type: str, default: ""}
  firewall_name:
    description: The project's own SSH rule; judged by the C(ssh_source_ranges) check, not the exposure check.
    type: str
    default: ""
  vm_service_account:
    description: Email the VM runs as, or C(default) for the project's Compute Engine default account.
    type: str
    default: default
  allow_public_ingress:
    description:
      - Accept firewall rules that let internet addresses reach the VM's external address.
      - Without it, an external IP together with any such rule of the network (the C(default) network's
        own C(default-allow-ssh), 0.0.0.0/0, for one) is refused.
    type: bool
    default: false
  static_ip: {description: The VM keeps a reserved static address (billed while stopped)., type: bool, default: false}
  prices: {description: The price table (see roles/gce_preflight/files/prices.yml)., type: dict, required: true}
  api_checks:
    description: Run the read-only API checks (false - local validation and cost only).
    type: bool
    default: true
# The auth options (project, auth_kind, service_account_file, ... with their GCP_* environment
# fallbacks) are google.cloud's own, taken from gce_client.auth_argument_spec.
extends_documentation_fragment:
  - google.cloud.gcp
author: GPU Jupyter project
"""

EXAMPLES = r"""
- name: Preflight | Check the request before anything is billed
  gce_preflight:
    project: "{{ gcp_project }}"
    auth_kind: "{{ gcp_auth_kind }}"
    name: jupyter-gpu
    zone: us-central1-a
    machine_type: n1-standard-8
    gpu_type: nvidia-tesla-t4
    gpu_count: 1
    image_project: deeplearning-platform-release
    image_family: pytorch-2-9-cu129-ubuntu-2404-nvidia-580
    disk_size_gb: 100
    ssh_source_ranges: [203.0.113.7/32]
    ssh_public_key: "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"
    budget_monthly_usd: 500
    prices: "{{ gce_preflight_prices }}"
"""

RETURN = r"""
exists: {description: The VM exists already (in any zone)., type: bool, returned: always}
fast_path: {description: The VM exists as wanted and the API checks were skipped., type: bool, returned: always}
instance:
  description: Summary of the existing VM (name, zone, status, machine_type, provisioning_model).
  type: dict
  returned: when exists
candidate_zones:
  description: Zones to try, in order, that offer the machine type and GPU and have quota.
  type: list
  returned: success
dropped_zones: {description: Candidate zones left out, with the reason., type: list, returned: success}
image: {description: The resolved image (name, self_link, disk_size_gb)., type: dict, returned: when the API checks ran}
machine: {description: vcpus, memory_gib, gpu_type, gpu_count of the machine type., type: dict, returned: success}
cost:
  description: Estimate (hourly, monthly, stopped_monthly, on_demand, spot, items, text).
  type: dict
  returned: success
checks: {description: Names of the checks that passed., type: list, returned: always}
refusals: {description: Problems found (check, variable, message, details)., type: list, returned: failure}
api_calls: {description: Compute API requests this module made., type: int, returned: always}
api_disabled:
  description: The Compute API is not enabled in the project; only the local checks ran.
  type: bool
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gce_client import (
    GceClient, GceApiError, GceError, auth_argument_spec, instance_summary, resource_name)
from ansible.module_utils import gce_pricing
from ansible.module_utils import gce_preflight_checks as pc

# States in which a VM holds its vCPU and GPU quota (a stopped or suspended one gives it back).
QUOTA_HOLDING = ("PROVISIONING", "STAGING", "RUNNING", "REPAIRING")


def differences(p, summary):
    diff = []
    if summary["machine_type"] != p["machine_type"]:
        diff.append("machine type %s (wanted %s)" % (summary["machine_type"], p["machine_type"]))
    if pc.family_of(p["machine_type"]) not in pc.BUILTIN_GPU_FAMILIES:
        if (summary["gpu_type"] or "") != (p["gpu_type"] or "") or summary["gpu_count"] != p["gpu_count"]:
            diff.append("GPUs %d x %s (wanted %d x %s)" % (
                summary["gpu_count"], summary["gpu_type"] or "none", p["gpu_count"], p["gpu_type"] or "none"))
    if summary["provisioning_model"] != p["provisioning_model"]:
        diff.append("provisioning model %s (wanted %s)" % (summary["provisioning_model"], p["provisioning_model"]))
    cap = run_limit_difference(p, summary)
    if cap:
        diff.append(cap)
    disk = summary.get("boot_disk_gb")
    if disk and p["disk_size_gb"] and disk != int(p["disk_size_gb"]):
        shrink = "; a disk cannot shrink: set %s to %d" % (pc.var("disk_size_gb"), disk)
        diff.append("boot disk %d GB (wanted %d GB%s)" % (
            disk, int(p["disk_size_gb"]), "" if disk < int(p["disk_size_gb"]) else shrink))
    return diff


def run_limit_difference(p, summary):
    """The run-time cap the VM has against the declared one, with the command that applies it."""
    wanted = pc.max_run_seconds(p.get("max_run_hours")) or 0
    have = summary.get("max_run_seconds") or 0
    action = p.get("max_run_action") or "STOP"
    have_action = summary.get("instance_termination_action") or "STOP"
    if wanted == have and (not wanted or action == have_action):
        return None

    def words(seconds, act):
        return "%s after each start, then %s" % (hours_text(seconds), act) if seconds else "none"
    where = "%s --zone %s" % (summary.get("name"), summary.get("zone"))
    if wanted:
        command = "gcloud compute instances set-scheduling %s --max-run-duration=%ds --instance-termination-action=%s" \
            % (where, wanted, action)
    else:
        command = "gcloud compute instances set-scheduling %s --clear-max-run-duration" % where
    return ("run-time cap %s (wanted %s; %s sets it on the stopped VM, or declare the VM's cap in %s)"
            % (words(have, have_action), words(wanted, action), command, pc.var("max_run_hours")))


def hours_text(seconds):
    hours = seconds / 3600.0
    return ("%g h" % round(hours, 2)) if seconds >= 360 else "%d s" % seconds


def machine_from_table(machine_type):
    shape = gce_pricing.machine_shape(machine_type)
    return shape


def wanted_zones(p, mt_zones):
    """The zone, gce_vm_candidate_zones, then the zones of gce_vm_candidate_regions, in order."""
    primary = p["zone"]
    wanted = [primary] + [z for z in p["candidate_zones"] if z != primary]
    for region in p["candidate_regions"]:
        for zone in sorted(mt_zones):
            if pc.region_of(zone) == region and zone not in wanted:
                wanted.append(zone)
    return wanted


def candidate_list(p, wanted, mt_zones, gpu_zones, known_zones=None):
    """Zones to try in order, and the ones dropped with why. known_zones: every zone of the
    project (read only when a wanted zone offers nothing), to tell a typo from a zone without
    the machine type."""
    keep, dropped = [], []
    for zone in wanted:
        if known_zones is not None and zone not in known_zones:
            dropped.append({"zone": zone, "reason": "zone %s does not exist" % zone})
        elif zone not in mt_zones:
            dropped.append({"zone": zone, "reason": "machine type %s not offered there" % p["machine_type"]})
        elif gpu_zones is not None and zone not in gpu_zones:
            dropped.append({"zone": zone, "reason": "%s not offered there" % p["gpu_type"]})
        else:
            keep.append(zone)
    return keep, dropped


def candidate_refusals_and_warnings(p, dropped, result):
    """A candidate zone that does not exist is a typo: refused. One that lacks the machine type
    or the GPU is left out, and said so."""
    refusals = []
    named = set(p["candidate_zones"])
    for entry in dropped:
        if entry["zone"] not in named or entry["zone"] == p["zone"]:
            continue
        if entry["reason"].endswith("does not exist"):
            refusals.append(pc.Refusal(
                "zone_exists", pc.var("candidate_zones"),
                "%s: zone %s does not exist. Zones of %s: %s." % (
                    pc.var("candidate_zones"), entry["zone"], pc.region_of(entry["zone"]),
                    ", ".join(entry.get("region_zones") or []) or "none")))
        else:
            result.setdefault("warnings", []).append(
                "%s: %s left out: %s." % (pc.var("candidate_zones"), entry["zone"], entry["reason"]))
    return refusals


def zone_listing(zones, near_region=None, limit=12):
    ordered = sorted(zones, key=lambda z: (pc.region_of(z) != near_region, z))
    text = ", ".join(ordered[:limit])
    if len(ordered) > limit:
        text += ", ... (%d in all)" % len(ordered)
    return text or "none"


def api_checks(client, p, result):
    refusals = []
    checks = result["checks"]
    zone = p["zone"]
    region = pc.region_of(zone)
    family = pc.family_of(p["machine_type"])

    # Machine type, in every zone at once: tells whether the zone offers it and where else it is.
    mt_items = client.aggregated_list("machineTypes", filter='name = "%s"' % p["machine_type"])
    mt_by_zone = dict((item.get("zone") and resource_name(item["zone"]), item) for item in mt_items)
    if zone not in mt_by_zone:
        zone_resource = client.get_or_none(client.zone_path(zone))
        if zone_resource is not None and not mt_by_zone:
            refusals.append(pc.Refusal(
                "machine_type_exists", pc.var("machine_type"),
                "%s: no such machine type %s: no zone offers it. Predefined types look like n1-standard-8 "
                "(N1: 1, 2, 4, 8, 16, 32, 64 or 96 vCPUs), g2-standard-8 or a2-highgpu-1g; list them with "
                "gcloud compute machine-types list --zones %s." % (pc.var("machine_type"), p["machine_type"], zone)))
            return refusals
        if zone_resource is None:
            zones = [z["name"] for z in client.list(client.project_path("zones"))]
            in_region = [z for z in zones if pc.region_of(z) == region]
            refusals.append(pc.Refusal(
                "zone_exists", pc.var("zone"),
                "%s: zone %s does not exist. %s" % (
                    pc.var("zone"), zone,
                    ("Zones of %s: %s." % (region, ", ".join(sorted(in_region)))) if in_region else
                    ("Region %s has no zones here; zones: %s." % (region, zone_listing(zones))))))
            return refusals
        refusals.append(pc.Refusal(
            "machine_type_offered", pc.var("machine_type"),
            "%s: %s is not offered in %s. Zones that offer it: %s. Change gce_vm_machine_type or gce_vm_zone."
            % (pc.var("machine_type"), p["machine_type"], zone, zone_listing(mt_by_zone, region))))
        return refusals
    checks.extend(["zone_exists", "machine_type_offered"])
    vcpus, memory_gib, builtin_gpu, builtin_count = gce_pricing.shape_from_api(mt_by_zone[zone])
    gpu_type, gpu_count = (builtin_gpu, builtin_count) if builtin_count else (p["gpu_type"], p["gpu_count"])
    result["machine"] = {"vcpus": vcpus, "memory_gib": memory_gib, "gpu_type": gpu_type or "",
                         "gpu_count": gpu_count, "builtin_gpus": bool(builtin_count)}

    gpu_zones = None
    if p["gpu_type"] and p["gpu_count"] and family not in pc.BUILTIN_GPU_FAMILIES:
        acc_items = client.aggregated_list("acceleratorTypes", filter='name = "%s"' % p["gpu_type"])
        acc_by_zone = dict((resource_name(item.get("zone")), item) for item in acc_items)
        gpu_zones = set(acc_by_zone)
        if zone not in acc_by_zone:
            refusals.append(pc.Refusal(
                "gpu_offered", pc.var("gpu_type"),
                "%s: %s is not offered in %s. Zones that offer it: %s. Change gce_vm_zone (or gce_vm_gpu_type)."
                % (pc.var("gpu_type"), p["gpu_type"], zone, zone_listing(acc_by_zone, region)),
                {"zones_offering": sorted(acc_by_zone)}))
        else:
            maximum = int(acc_by_zone[zone].get("maximumCardsPerInstance") or 0)
            if maximum and p["gpu_count"] > maximum:
                refusals.append(pc.Refusal(
                    "gpu_count_max", pc.var("gpu_count"),
                    "%s: %d x %s exceeds the %d a VM can take in %s; set gce_vm_gpu_count to at most %d."
                    % (pc.var("gpu_count"), p["gpu_count"], p["gpu_type"], maximum, zone, maximum)))
            else:
                checks.extend(["gpu_offered", "gpu_count_max"])

    # Image family -> the image the boot disk is made from.
    image = client.get_or_none("projects/%s/global/images/family/%s" % (p["image_project"], p["image_family"]))
    if image is None:
        refusals.append(pc.Refusal(
            "image_family", pc.var("image_family"),
            "%s: no image family %s in project %s. Deep Learning VM families look like "
            "pytorch-2-9-cu129-ubuntu-2404-nvidia-580 (list them: gcloud compute images list "
            "--project %s --no-standard-images)." % (pc.var("image_family"), p["image_family"],
                                                     p["image_project"], p["image_project"])))
    else:
        deprecated = image.get("deprecated") or {}
        state = deprecated.get("state")
        size = int(image.get("diskSizeGb") or 0)
        result["image"] = {"name": image.get("name"), "self_link": image.get("selfLink"), "disk_size_gb": size}
        if state in ("DEPRECATED", "OBSOLETE", "DELETED"):
            replacement = deprecated.get("replacement")
            refusals.append(pc.Refusal(
                "image_deprecated", pc.var("image_family"),
                "%s: image family %s resolves to %s, which is %s%s. Pick a current family."
                % (pc.var("image_family"), p["image_family"], image.get("name"), state,
                   (" (replacement: %s)" % resource_name(replacement)) if replacement else "")))
        else:
            checks.append("image_family")
        if size > p["disk_size_gb"]:
            refusals.append(pc.Refusal(
                "disk_vs_image", pc.var("disk_size_gb"),
                "%s: %d GB is smaller than image %s (%d GB). Set gce_vm_disk_size_gb to at least %d "
                "(leave room for data: 100 or more)." % (pc.var("disk_size_gb"), p["disk_size_gb"],
                                                         image.get("name"), size, size)))
        else:
            checks.append("disk_vs_image")

    zones_wanted = wanted_zones(p, set(mt_by_zone))
    known_zones = None
    if any(z not in mt_by_zone for z in zones_wanted):
        # One read, only when a wanted zone offers nothing: a typo or a zone without the type?
        known_zones = set(z["name"] for z in client.list(client.project_path("zones")))
    candidates, dropped = candidate_list(p, zones_wanted, set(mt_by_zone), gpu_zones, known_zones)
    for entry in dropped:
        if known_zones is not None and entry["zone"] not in known_zones:
            entry["region_zones"] = sorted(z for z in known_zones if pc.region_of(z) == pc.region_of(entry["zone"]))
    result["dropped_zones"] = dropped
    refusals.extend(candidate_refusals_and_warnings(p, dropped, result))

    # Quota: limit - usage, per candidate region and project-wide.
    # A disk holds its quota whether its VM runs or not; vCPUs and GPUs only while it runs.
    wanted = [(metric, amount * (p["new_vms"] if metric.endswith("_GB") else p["quota_vms"]), scope)
              for metric, amount, scope in pc.quota_metrics(p, vcpus, gpu_type, gpu_count)]
    wanted = [w for w in wanted if w[1] > 0]
    project_res = client.get(client.project_path())
    project_quotas = pc.quotas_map(project_res)
    project_short = pc.quota_shortfalls(p, {"project": project_quotas},
                                        [w for w in wanted if w[2] == "project"])
    refusals.extend(project_short)
    regional = [w for w in wanted if w[2] == "region"]
    region_short = {}
    for cand_region in sorted(set(pc.region_of(z) for z in candidates), key=lambda r: r != region):
        region_res = client.get(client.region_path(cand_region))
        short = pc.quota_shortfalls(p, {"region": pc.quotas_map(region_res), "region_name": cand_region}, regional)
        if short:
            region_short[cand_region] = short
    usable = [z for z in candidates if pc.region_of(z) not in region_short]
    for z in candidates:
        if pc.region_of(z) in region_short:
            dropped.append({"zone": z, "reason": "quota: " + "; ".join(
                "%s limit %g usage %g" % (s.details["metric"], s.details["limit"], s.details["usage"])
                for s in region_short[pc.region_of(z)])})
    if candidates and not usable:
        # Report the preferred region's numbers (the first candidate's region).
        refusals.extend(region_short[pc.region_of(candidates[0])])
    elif not project_short:
        checks.append("quota")
    result["candidate_zones"] = usable
    result["quota"] = {"project": dict((m, project_quotas.get(m)) for m, _a, s in wanted if s == "project"),
                       "short_regions": sorted(region_short)}
    return refusals


def exposure_check(client, p, result):
    """Refusals for the network's firewall rules that let the internet reach the VM (read-only)."""
    if not p["external_ip"] or p["allow_public_ingress"]:
        return []
    account = p["vm_service_account"]
    if account == "default":
        account = client.get(client.project_path()).get("defaultServiceAccount") or ""
    rules = client.list(client.global_path("firewalls"))
    refusals = pc.exposure_refusals(p, rules, account)
    if not refusals:
        result["checks"].append("exposure")
    return refusals


def main():
    spec = auth_argument_spec()
    spec.update(
        name=dict(type="str", required=True),
        zone=dict(type="str", required=True),
        candidate_zones=dict(type="list", elements="str", default=[]),
        candidate_regions=dict(type="list", elements="str", default=[]),
        machine_type=dict(type="str", required=True),
        gpu_type=dict(type="str", default=""),
        gpu_count=dict(type="raw", default=0),
        fleet=dict(type="list", elements="str", default=[]),
        image_project=dict(type="str", required=True),
        image_family=dict(type="str", required=True),
        disk_size_gb=dict(type="int", required=True),
        disk_type=dict(type="str", default="pd-balanced"),
        labels=dict(type="dict", default={}),
        ssh_source_ranges=dict(type="list", elements="str", default=[]),
        allow_public_ssh=dict(type="bool", default=False),
        firewall_ports=dict(type="list", elements="raw", default=[22]),
        jupyter_port=dict(type="int", default=8080),
        access=dict(type="str", default=""),
        ssh_public_key=dict(type="str", default="", no_log=False),
        ssh_user=dict(type="str", default="jupyter"),
        provisioning_model=dict(type="str", default="STANDARD"),
        termination_action=dict(type="str", default="STOP"),
        max_run_hours=dict(type="raw", default=0),
        max_run_action=dict(type="str", default="STOP"),
        flex_start=dict(type="bool", default=False),
        flex_start_hours=dict(type="raw", default=8),
        flex_start_wait_minutes=dict(type="raw", default=30),
        compact_placement=dict(type="bool", default=False),
        budget_monthly_usd=dict(type="raw"),
        external_ip=dict(type="bool", default=False),
        direct_without_external_ip=dict(type="bool", default=False),
        network=dict(type="str", default="default"),
        network_tag=dict(type="str", default=""),
        firewall_name=dict(type="str", default=""),
        vm_service_account=dict(type="str", default="default"),
        allow_public_ingress=dict(type="bool", default=False),
        static_ip=dict(type="bool", default=False),
        prices=dict(type="dict", required=True),
        api_checks=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = dict(module.params)
    p["gpu_type"] = p["gpu_type"] or ""
    p["access"] = pc.resolve_access(p["access"], p["ssh_source_ranges"])
    result = {"changed": False, "exists": False, "fast_path": False, "api_disabled": False, "checks": [],
              "api_calls": 0, "candidate_zones": [], "dropped_zones": []}

    p["fleet"] = p["fleet"] or [p["name"]]
    if p["name"] not in p["fleet"]:
        p["fleet"] = [p["name"]] + p["fleet"]
    p["fleet_size"] = len(p["fleet"])
    p["quota_vms"] = p["new_vms"] = p["fleet_size"]
    refusals = pc.local_refusals(p)
    if refusals:
        fail(module, result, refusals, "local")
    result["checks"].append("local_validation")
    p["gpu_count"] = int(p["gpu_count"] or 0)

    client = None
    existing = None
    if p["api_checks"]:
        client = GceClient.from_module(module)
        try:
            # One read for the whole fleet: which of its VMs exist, and which already hold quota.
            found = client.aggregated_list("instances", filter=" OR ".join(
                '(name = "%s")' % n for n in p["fleet"]))
            holding = set(i["name"] for i in found if i.get("status") in QUOTA_HOLDING)
            p["quota_vms"] = len([n for n in p["fleet"] if n not in holding])
            p["new_vms"] = len(set(p["fleet"]) - set(i["name"] for i in found))
            found = [i for i in found if i["name"] == p["name"]]
            if found:
                existing = instance_summary(found[0])
                result["exists"] = True
                result["instance"] = existing
                diff = differences(p, existing)
                result["differences"] = diff
                if not diff:
                    result["fast_path"] = True
                    result["candidate_zones"] = [existing["zone"]]
            if not result["fast_path"]:
                refusals = api_checks(client, p, result)
            refusals = refusals + exposure_check(client, p, result)
        except GceApiError as exc:
            result["api_calls"] = client.request_count
            if exc.status == 403 and exc.reason in ("accessNotConfigured", "SERVICE_DISABLED") and not existing:
                # A fresh project: the caller enables the Compute API (free) and runs preflight again.
                result["api_disabled"] = True
                result["api_message"] = exc.message
            else:
                module.fail_json(msg="Preflight could not read the project through the Compute API: %s. "
                                     "Check gcp_project, gcp_auth_kind and the credentials." % exc, **result)
        except GceError as exc:
            result["api_calls"] = client.request_count
            module.fail_json(msg="Preflight could not read the project through the Compute API: %s. "
                                 "Check gcp_project, gcp_auth_kind and the credentials." % exc, **result)
        result["api_calls"] = client.request_count
        if refusals:
            fail(module, result, refusals, "api")

    # Cost: from the API's machine type when preflight has it, else from the built-in shapes.
    machine = result.get("machine")
    if not machine:
        shape = gce_pricing.machine_shape(p["machine_type"])
        if shape is None:
            module.fail_json(msg="%s: no built-in shape for %s to estimate its cost; run with API checks."
                             % (pc.var("machine_type"), p["machine_type"]), **result)
        vcpus, memory_gib, builtin_gpu, builtin_count = shape
        machine = {"vcpus": vcpus, "memory_gib": memory_gib,
                   "gpu_type": builtin_gpu or p["gpu_type"], "gpu_count": builtin_count or p["gpu_count"],
                   "builtin_gpus": bool(builtin_count)}
        result["machine"] = machine
    zone = existing["zone"] if existing else p["zone"]
    try:
        cost = gce_pricing.estimate(
            p["prices"], zone, p["machine_type"], machine["vcpus"], machine["memory_gib"],
            machine["gpu_type"], machine["gpu_count"],
            disks=[{"type": p["disk_type"], "size_gb": p["disk_size_gb"]}],
            spot=p["provisioning_model"] == "SPOT", external_ip=p["external_ip"], static_ip=p["static_ip"])
    except gce_pricing.PricingError as exc:
        module.fail_json(msg="No cost estimate: %s" % exc, **result)
    result["cost"] = cost
    refusal = gce_pricing.budget_refusal(fleet_cost(cost, p["fleet_size"]), p["budget_monthly_usd"])
    if p["flex_start"] and not refusal:
        refusal = flex_start_cost(result, cost, p)
    if refusal and p["fleet_size"] > 1:
        refusal = "For the fleet of %d VMs (gce_vm_count): %s" % (p["fleet_size"], refusal)
    if refusal and not result["fast_path"]:
        fail(module, result, [pc.Refusal("budget", pc.var("budget_monthly_usd"), refusal)], "budget")
    if refusal:
        module.warn("The existing VM's estimate is over budget: " + refusal)
    result["checks"].append("budget")
    module.exit_json(**result)


def flex_start_cost(result, cost, p):
    """The flex-start fallback's run: on-demand list price x its hours (flex-start's own prices are
    lower, and the table has none: this is the most it costs). A refusal when it exceeds the budget."""
    hours = (pc.max_run_seconds(p["flex_start_hours"]) or 0) / 3600.0
    run_usd = round(cost["hourly"] * hours * p["fleet_size"], 2)
    result["cost"]["flex_start"] = {
        "hours": hours, "run_usd": run_usd,
        "text": "flex-start fallback: at most $%.2f for its %g h run (on-demand list price; flex-start's is lower), "
                "then GCE %s it" % (run_usd, hours, "deletes" if p["max_run_action"] == "DELETE" else "stops")}
    budget = p["budget_monthly_usd"]
    if budget not in (None, "") and run_usd > float(budget):
        return ("the flex-start fallback's %g h run costs up to $%.2f, over gce_budget_monthly_usd ($%s): lower %s "
                "or raise the budget." % (hours, run_usd, budget, pc.var("flex_start_hours")))
    return None


def fleet_cost(cost, size):
    """The cost of `size` VMs like this one, in the shape budget_refusal reads."""
    if size <= 1:
        return cost
    scaled = dict(cost, monthly=cost["monthly"] * size, hourly=cost["hourly"] * size)
    scaled["spot"] = dict(cost["spot"], monthly=cost["spot"]["monthly"] * size)
    return scaled


def fail(module, result, refusals, stage):
    result["refusals"] = [r.to_dict() for r in refusals]
    result["stage"] = stage
    lines = ["Preflight refused the VM before anything was created or changed (%d problem%s):"
             % (len(refusals), "" if len(refusals) == 1 else "s")]
    lines.extend("- " + r.message for r in refusals)
    module.fail_json(msg="\n".join(lines), **result)


if __name__ == "__main__":
    main()
