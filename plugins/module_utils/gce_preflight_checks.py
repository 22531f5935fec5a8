# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight checks of a GPU VM request: local validation, then read-only Compute API checks.

Every refusal names the variable to change and how to fix it. Local checks (names, types,
enums, CIDRs, GPU/machine-family rules) run first and need no API call; the API checks
(zone, machine type, GPU offered, image family, quotas as limit - usage) only read.
"""

from __future__ import absolute_import, division, print_function

import ipaddress
import re

# How a zone maps to its region lives with the prices, which need it too.
from ansible.module_utils.gce_pricing import region_of  # noqa: F401 (re-exported for the module)

__metaclass__ = type

# Which variable feeds which request field: messages name the variable a user edits.
VARIABLES = {
    "project": "gcp_project",
    "name": "gce_vm_name",
    "zone": "gce_vm_zone",
    "candidate_zones": "gce_vm_candidate_zones",
    "machine_type": "gce_vm_machine_type",
    "gpu_type": "gce_vm_gpu_type",
    "gpu_count": "gce_vm_gpu_count",
    "image_project": "gce_vm_image_project",
    "image_family": "gce_vm_image_family",
    "disk_size_gb": "gce_vm_disk_size_gb",
    "disk_type": "gce_vm_disk_type",
    "labels": "gce_vm_labels",
    "ssh_source_ranges": "gce_vm_ssh_source_ranges",
    "external_ip": "gce_vm_external_ip",
    "allow_public_ingress": "gce_vm_allow_public_ingress",
    "provisioning_model": "gce_vm_provisioning_model",
    "termination_action": "gce_vm_instance_termination_action",
    "max_run_hours": "gce_vm_max_run_hours",
    "max_run_action": "gce_vm_max_run_action",
    "flex_start": "gce_vm_flex_start",
    "flex_start_hours": "gce_vm_flex_start_hours",
    "flex_start_wait_minutes": "gce_vm_flex_start_wait_minutes",
    "access": "gce_vm_access",
    "ssh_public_key": "gce_vm_ssh_public_key",
    "ssh_user": "gce_vm_ssh_user",
    "budget_monthly_usd": "gce_budget_monthly_usd",
    "jupyter_port": "jupyter_port",
    "compact_placement": "gce_cluster_compact_placement",
}

PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
ZONE_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9]+(-[a-z0-9]+)*$")
GPU_TYPE_RE = re.compile(r"^nvidia-[a-z0-9-]+$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/]+={0,3}( \S.*)?$")
SSH_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

DISK_TYPES = ("pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced")
IAP_RANGE = "35.235.240.0/20"
# Sources that are not "the internet": private and shared address space, loopback, link-local,
# IAP's TCP forwarding range and Google's health checkers. Anything else in a firewall rule's
# sourceRanges is someone on the internet.
NON_PUBLIC_SOURCES = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    IAP_RANGE, "35.191.0.0/16", "130.211.0.0/22",
    "fc00::/7", "fe80::/10", "::1/128",
)
# The ports gce_vm's firewall rule opens (roles/gce_vm/tasks/firewall.yml): SSH only.
FIREWALL_PORTS = (22,)

# GPUs that attach to N1 machine types, with the counts Compute Engine accepts.
N1_GPU_COUNTS = {
    "nvidia-tesla-t4": (1, 2, 4),
    "nvidia-tesla-p4": (1, 2, 4),
    "nvidia-tesla-p100": (1, 2, 4),
    "nvidia-tesla-v100": (1, 2, 4, 8),
    "nvidia-tesla-k80": (1, 2, 4, 8),
}
# The most vCPUs an N1 machine may have with that many attached GPUs (Google's "GPU machine
# types" page); GCE refuses more: "At most 48 vCPUs can be used along with 1 accelerator cards in
# an instance."
N1_MAX_VCPUS = {
    "nvidia-tesla-t4": {1: 48, 2: 48, 4: 96},
    "nvidia-tesla-p4": {1: 24, 2: 48, 4: 96},
    "nvidia-tesla-p100": {1: 16, 2: 32, 4: 64},
    "nvidia-tesla-v100": {1: 12, 2: 24, 4: 48, 8: 96},
}
N1_VCPUS_RE = re.compile(r"^n1-(?:standard|highmem|highcpu)-(\d+)$")
# Families whose machine types carry their GPUs, and the GPU each family carries.
BUILTIN_GPU_FAMILIES = {
    "a2": ("nvidia-tesla-a100", "nvidia-a100-80gb"),
    "a3": ("nvidia-h100-80gb", "nvidia-h100-mega-80gb", "nvidia-h200-141gb"),
    "a4": ("nvidia-b200",),
    "g2": ("nvidia-l4",),
    "g4": ("nvidia-rtx-pro-6000",),
}
# Where a GPU that is only sold built in lives, for the fix text.
BUILTIN_GPU_HINT = {
    "nvidia-l4": "g2-standard-4 (1 L4)",
    "nvidia-tesla-a100": "a2-highgpu-1g (1 A100 40GB)",
    "nvidia-a100-80gb": "a2-ultragpu-1g (1 A100 80GB)",
    "nvidia-h100-80gb": "a3-highgpu-1g (1 H100)",
}
# Regional quota metric of each GPU type (the PREEMPTIBLE_ twin is used for spot).
GPU_QUOTA_METRICS = {
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-tesla-p4": "NVIDIA_P4_GPUS",
    "nvidia-tesla-p100": "NVIDIA_P100_GPUS",
    "nvidia-tesla-v100": "NVIDIA_V100_GPUS",
    "nvidia-tesla-k80": "NVIDIA_K80_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
}


class Refusal(object):
    """One reason not to create the VM: the check, the variable, the message."""

    def __init__(self, check, variable, message, details=None):
        self.check = check
        self.variable = variable
        self.message = message
        self.details = details or {}

    def to_dict(self):
        out = {"check": self.check, "variable": self.variable, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self):
        return self.message


def family_of(machine_type):
    return (machine_type or "").split("-", 1)[0]


def has_builtin_gpus(machine_type):
    """The machine type carries its GPUs (A2, A3, A4, G2, G4...): the one list is BUILTIN_GPU_FAMILIES."""
    return family_of(machine_type) in BUILTIN_GPU_FAMILIES


def resolve_access(access, ssh_source_ranges):
    """gce_vm_access when set; otherwise iap when SSH is open to IAP's range (gce_vm's default),
    else ssh with the user's key."""
    if access:
        return access
    return "iap" if IAP_RANGE in (ssh_source_ranges or []) else "ssh"


def var(key):
    return VARIABLES[key]


def _refuse(out, check, key, text):
    out.append(Refusal(check, var(key), "%s: %s" % (var(key), text)))


def local_refusals(p):
    """Every problem found without calling any API. `p` holds the request (module params)."""
    out = []
    project = p.get("project") or ""
    if not PROJECT_RE.match(project):
        _refuse(out, "project_id", "project",
                "%r is not a Google Cloud project ID (6-30 characters: lowercase letters, digits, "
                "hyphens; starts with a letter, does not end with a hyphen). Set it to the project ID "
                "shown by the console's project picker, not the project name or number." % project)
    name = p.get("name") or ""
    if not NAME_RE.match(name):
        _refuse(out, "vm_name", "name",
                "%r is not a valid instance name (1-63 characters: lowercase letters, digits, hyphens; "
                "starts with a letter, does not end with a hyphen), e.g. jupyter-gpu." % name)
    zone = p.get("zone") or ""
    if not ZONE_RE.match(zone):
        _refuse(out, "zone_format", "zone",
                "%r is not a zone name (region + letter, e.g. us-central1-a)." % zone)
    for candidate in p.get("candidate_zones") or []:
        if not ZONE_RE.match(candidate or ""):
            _refuse(out, "zone_format", "candidate_zones",
                    "%r is not a zone name (e.g. us-central1-b); list zones only, or leave the list "
                    "empty to try every zone of the region that offers the GPU." % candidate)
    machine_type = p.get("machine_type") or ""
    if not MACHINE_TYPE_RE.match(machine_type):
        _refuse(out, "machine_type_format", "machine_type",
                "%r is not a machine type name (e.g. n1-standard-8 or g2-standard-8)." % machine_type)
    _gpu_rules(p, out)
    _disk_rules(p, out)
    _label_rules(p, out)
    _access_rules(p, out)
    model = p.get("provisioning_model")
    if model not in ("STANDARD", "SPOT"):
        _refuse(out, "provisioning_model", "provisioning_model",
                "%r is not a provisioning model; use STANDARD (on-demand) or SPOT." % (model,))
    action = p.get("termination_action")
    if action not in ("STOP", "DELETE"):
        _refuse(out, "termination_action", "termination_action",
                "%r is not a termination action; use STOP (keeps the disk, the next run starts the VM "
                "again) or DELETE." % (action,))
    _run_limit_rules(p, out)
    _flex_start_rules(p, out)
    _compact_placement_rules(p, out)
    budget = p.get("budget_monthly_usd")
    if budget is not None and budget != "":
        try:
            ok = float(budget) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            _refuse(out, "budget", "budget_monthly_usd",
                    "%r is not a positive amount of US dollars per month; set a number such as 300, "
                    "or leave it unset for no budget." % (budget,))
    return out


# GCE's bounds for scheduling.maxRunDuration ("Limit the run time of a VM").
MAX_RUN_MIN_SECONDS = 30
MAX_RUN_MAX_SECONDS = 120 * 86400


def max_run_seconds(hours):
    """gce_vm_max_run_hours as whole seconds (0: no cap); None when it is not a number."""
    try:
        return int(round(float(hours or 0) * 3600))
    except (TypeError, ValueError):
        return None


def _run_limit_rules(p, out):
    seconds = max_run_seconds(p.get("max_run_hours"))
    if seconds is None or seconds < 0 or (seconds and not MAX_RUN_MIN_SECONDS <= seconds <= MAX_RUN_MAX_SECONDS):
        _refuse(out, "max_run_hours", "max_run_hours",
                "%r is not a run-time cap GCE takes: set hours between 0.0084 (30 seconds) and 2880 (120 days), "
                "or 0 for no cap." % (p.get("max_run_hours"),))
        return
    action = p.get("max_run_action") or "STOP"
    if action not in ("STOP", "DELETE"):
        _refuse(out, "max_run_action", "max_run_action",
                "%r is not a termination action; use STOP (keeps the disk: the next run starts the VM again) or "
                "DELETE (the VM and its boot disk are gone)." % (action,))
    elif seconds and p.get("provisioning_model") == "SPOT" and action != (p.get("termination_action") or "STOP"):
        _refuse(out, "max_run_action", "max_run_action",
                "%s, but gce_vm_instance_termination_action is %s: a spot VM has one termination action for both "
                "preemption and the run-time cap. Set both to the same value." % (action, p.get("termination_action")))


# Flex-start ("About Flex-start VMs"): accelerator-optimized machine types only, a run of at most
# seven days, a request that waits for capacity up to two hours.
FLEX_START_FAMILIES = ("a2", "a3", "a4", "g2")
FLEX_START_MAX_HOURS = 168
FLEX_START_MAX_WAIT_MINUTES = 120


def _flex_start_rules(p, out):
    if not p.get("flex_start"):
        return
    machine_type = p.get("machine_type") or ""
    if family_of(machine_type) not in FLEX_START_FAMILIES:
        _refuse(out, "flex_start", "flex_start",
                "flex-start serves accelerator-optimized machine types only (A2, A3, A4, G2), not %s: set "
                "gce_vm_machine_type to one (g2-standard-8: one L4, with gce_vm_gpu_count 0), or set "
                "gce_vm_flex_start: false." % machine_type)
    seconds = max_run_seconds(p.get("flex_start_hours"))
    if seconds is None or not MAX_RUN_MIN_SECONDS <= seconds <= FLEX_START_MAX_HOURS * 3600:
        _refuse(out, "flex_start_hours", "flex_start_hours",
                "%r is not a flex-start run GCE takes: hours between 0.0084 (30 seconds) and %d (7 days)."
                % (p.get("flex_start_hours"), FLEX_START_MAX_HOURS))
    try:
        wait = int(p.get("flex_start_wait_minutes"))
    except (TypeError, ValueError):
        wait = None
    if wait is None or not 1 <= wait <= FLEX_START_MAX_WAIT_MINUTES:
        _refuse(out, "flex_start_wait_minutes", "flex_start_wait_minutes",
                "%r: wait 1 to %d minutes for flex-start capacity (GCE keeps a request queued up to two hours)."
                % (p.get("flex_start_wait_minutes"), FLEX_START_MAX_WAIT_MINUTES))


# Compact placement policies ("Placement policies overview"): the machine series GCE places
# compactly. N1 is not one of them, so a T4 or V100 on N1 cannot be placed so; GCE refuses such a
# VM at its insert ("Placement policy is not applicable to machine type n1-standard-8").
COMPACT_PLACEMENT_FAMILIES = ("a2", "a3", "a4", "a4x", "g2", "g4", "c2", "c2d", "h3", "h4d", "c3", "c3d", "c4",
                              "c4d", "n2", "n2d", "m1", "m2", "m3", "m4", "z3")


def _compact_placement_rules(p, out):
    if not p.get("compact_placement"):
        return
    machine_type = p.get("machine_type") or ""
    if family_of(machine_type) not in COMPACT_PLACEMENT_FAMILIES:
        _refuse(out, "compact_placement", "compact_placement",
                "GCE does not place %s (%s series) compactly and would refuse every node. Set gce_vm_machine_type "
                "to a series it does place so: G2 (g2-standard-8: one L4 built in, with gce_vm_gpu_count 0), A2 "
                "(A100), A3 (H100) or A4 (B200); or set gce_cluster_compact_placement: false to keep %s."
                % (machine_type, family_of(machine_type).upper(), machine_type))


def _gpu_rules(p, out):
    machine_type = p.get("machine_type") or ""
    family = family_of(machine_type)
    gpu_type = p.get("gpu_type") or ""
    count = p.get("gpu_count")
    if isinstance(count, bool) or str(count).strip().lower() in ("true", "false", "yes", "no"):
        _refuse(out, "gpu_count", "gpu_count",
                "%r is a yes/no, not a number of GPUs; set a count such as 1 (or 0 for none)." % (count,))
        return
    try:
        count = int(count or 0)
    except (TypeError, ValueError):
        _refuse(out, "gpu_count", "gpu_count", "%r is not a whole number of GPUs." % (count,))
        return
    if count < 0:
        _refuse(out, "gpu_count", "gpu_count", "%d is negative; use 0 or a positive count." % count)
        return
    if gpu_type and not GPU_TYPE_RE.match(gpu_type):
        _refuse(out, "gpu_type_format", "gpu_type",
                "%r is not an accelerator type name (e.g. nvidia-tesla-t4, nvidia-l4)." % gpu_type)
        return
    if family in BUILTIN_GPU_FAMILIES:
        if count > 0:
            _refuse(out, "builtin_gpu", "gpu_count",
                    "%s machine types have their GPUs built in (%s); an extra accelerator is refused. "
                    "Set gce_vm_gpu_count: 0 (and gce_vm_gpu_type: '') - the GPU count comes from "
                    "the machine type." % (family.upper(), machine_type))
        elif gpu_type and gpu_type not in BUILTIN_GPU_FAMILIES[family]:
            _refuse(out, "builtin_gpu", "gpu_type",
                    "%s comes with %s built in, not %s. Leave gce_vm_gpu_type empty, or pick an N1 "
                    "machine type to attach %s." % (machine_type, " / ".join(BUILTIN_GPU_FAMILIES[family]),
                                                     gpu_type, gpu_type))
        return
    if count == 0 and not gpu_type:
        return
    if count == 0:
        _refuse(out, "gpu_count", "gpu_count",
                "0 GPUs of type %s requested; set gce_vm_gpu_count to %s, or clear gce_vm_gpu_type "
                "for a VM without GPU." % (gpu_type, "/".join(str(c) for c in N1_GPU_COUNTS.get(gpu_type, (1,)))))
        return
    if not gpu_type:
        _refuse(out, "gpu_type", "gpu_type",
                "%d GPU(s) requested but no type; set gce_vm_gpu_type (e.g. nvidia-tesla-t4)." % count)
        return
    if family != "n1":
        _refuse(out, "gpu_machine_family", "machine_type",
                "%s (%s family) cannot take attached GPUs: only N1 machine types do. Use an N1 type "
                "(e.g. n1-standard-8) with %s, or a G2/A2 type with its GPU built in."
                % (machine_type, family.upper(), gpu_type))
        return
    if gpu_type in BUILTIN_GPU_HINT:
        _refuse(out, "gpu_machine_family", "gpu_type",
                "%s cannot be attached to an N1 machine type; it comes built into %s. Set "
                "gce_vm_machine_type: %s and gce_vm_gpu_count: 0."
                % (gpu_type, BUILTIN_GPU_HINT[gpu_type], BUILTIN_GPU_HINT[gpu_type].split(" ")[0]))
        return
    valid = N1_GPU_COUNTS.get(gpu_type)
    if valid and count not in valid:
        _refuse(out, "gpu_count", "gpu_count",
                "%d x %s is not a valid configuration; Compute Engine accepts %s of this GPU per VM."
                % (count, gpu_type, ", ".join(str(c) for c in valid)))
        return
    limits = N1_MAX_VCPUS.get(gpu_type, {})
    vcpus = N1_VCPUS_RE.match(machine_type)
    if vcpus and count in limits and int(vcpus.group(1)) > limits[count]:
        enough = sorted(c for c, most in limits.items() if most >= int(vcpus.group(1)))
        _refuse(out, "gpu_vcpus", "machine_type",
                "%s has %s vCPUs; with %d x %s Compute Engine allows at most %d (\"At most %d vCPUs can be "
                "used along with %d accelerator cards in an instance.\"). Pick a machine type with at most %d "
                "vCPUs in gce_vm_machine_type%s."
                % (machine_type, vcpus.group(1), count, gpu_type, limits[count], limits[count], count,
                   limits[count], (", or set gce_vm_gpu_count to %d" % enough[0]) if enough else ""))


def _disk_rules(p, out):
    size = p.get("disk_size_gb")
    try:
        size_ok = int(size) >= 10 and int(size) <= 65536
    except (TypeError, ValueError):
        size_ok = False
    if not size_ok:
        _refuse(out, "disk_size", "disk_size_gb",
                "%r is not a boot disk size in GB between 10 and 65536 (Deep Learning VM images need "
                "at least 50)." % (size,))
    disk_type = p.get("disk_type")
    if disk_type not in DISK_TYPES:
        _refuse(out, "disk_type", "disk_type",
                "%r is not a persistent disk type; use one of %s." % (disk_type, ", ".join(DISK_TYPES)))
    for key in ("image_project", "image_family"):
        value = p.get(key) or ""
        if not NAME_RE.match(value):
            _refuse(out, key, key, "%r is not a valid %s name." % (value, key.replace("_", " ")))


def _label_rules(p, out):
    labels = p.get("labels") or {}
    if not isinstance(labels, dict):
        _refuse(out, "labels", "labels", "must be a mapping of label keys to values.")
        return
    if len(labels) > 64:
        _refuse(out, "labels", "labels", "%d labels; a VM takes at most 64." % len(labels))
    for key, value in sorted(labels.items(), key=lambda kv: str(kv[0])):
        if not LABEL_KEY_RE.match(str(key)):
            _refuse(out, "labels", "labels",
                    "label key %r is invalid (lowercase letters, digits, _ and -, starting with a "
                    "letter, at most 63 characters)." % (key,))
        if not LABEL_VALUE_RE.match(str(value if value is not None else "")):
            _refuse(out, "labels", "labels",
                    "label %s=%r: values take lowercase letters, digits, _ and - only (at most 63); "
                    "e.g. %s." % (key, value, re.sub(r"[^a-z0-9_-]", "-", str(value).lower())[:63]))


def _access_rules(p, out):
    access = p.get("access")
    if access not in ("ssh", "oslogin", "iap"):
        _refuse(out, "access", "access",
                "%r is not an access method; use ssh (your key in instance metadata), oslogin, or iap "
                "(SSH through Identity-Aware Proxy, no public SSH)." % (access,))
    ranges = p.get("ssh_source_ranges") or []
    if access != "iap":
        if not ranges:
            _refuse(out, "ssh_source", "ssh_source_ranges",
                    "is empty: nobody could reach SSH. Set it to your own address, e.g. "
                    "['203.0.113.7/32'], or use gce_vm_access: iap.")
        for cidr in ranges:
            try:
                net = ipaddress.ip_network(str(cidr), strict=True)
            except ValueError as exc:
                hint = ""
                try:
                    hint = " Did you mean %s?" % ipaddress.ip_network(str(cidr), strict=False)
                except ValueError:
                    pass
                _refuse(out, "ssh_source", "ssh_source_ranges",
                        "%r is not a CIDR range (%s).%s" % (cidr, exc, hint))
                continue
            if net.prefixlen == 0 and not p.get("allow_public_ssh"):
                _refuse(out, "ssh_source", "ssh_source_ranges",
                        "%s opens SSH to the whole Internet. Use your own address (e.g. "
                        "203.0.113.7/32) or gce_vm_access: iap; set gce_vm_allow_public_ssh: true "
                        "only if you really mean it." % cidr)
        whole = covers_internet(ranges)
        # A /0 was refused above already; this is the union of smaller ranges.
        has_slash_zero = any(_is_cidr(c) and ipaddress.ip_network(str(c), strict=False).prefixlen == 0 for c in ranges)
        if whole and not has_slash_zero and not p.get("allow_public_ssh"):
            _refuse(out, "ssh_source", "ssh_source_ranges",
                    "%s together cover the whole %s Internet: that opens SSH to everyone, like 0.0.0.0/0. "
                    "Use your own address (e.g. 203.0.113.7/32) or gce_vm_access: iap; set "
                    "gce_vm_allow_public_ssh: true only if you really mean it."
                    % (", ".join(str(c) for c in ranges), " and ".join(whole)))
    if not p.get("external_ip", True) and access in ("ssh", "oslogin") and not p.get("direct_without_external_ip"):
        _refuse(out, "access_address", "external_ip",
                "false leaves the VM no address on the internet, but gce_vm_access: %s connects to it "
                "directly. Use gce_vm_access: iap (SSH through Identity-Aware Proxy, needs no external "
                "address), or set gce_vm_external_ip: true (then no firewall rule of the network may open "
                "a port to the internet, see the exposure check)." % access)
    opened = [int(x) for x in (p.get("firewall_ports") or FIREWALL_PORTS) if str(x).isdigit()]
    port = p.get("jupyter_port")
    if port is not None and str(port).isdigit() and int(port) in opened:
        _refuse(out, "jupyter_port", "jupyter_port",
                "%s is a port the VM's firewall opens to the SSH source ranges (tcp %s): Jupyter "
                "would answer from outside there. It is reached through the SSH tunnel "
                "(ssh -L %s:localhost:%s) instead; set jupyter_port to a port of 1024 or more, e.g. 8080."
                % (port, ", ".join(str(x) for x in opened), port, port))
    key = (p.get("ssh_public_key") or "").strip()
    if access == "ssh":
        if not key:
            _refuse(out, "ssh_key", "ssh_public_key",
                    "is empty: gce_vm_access: ssh puts your public key into the VM's metadata. Set it, "
                    "e.g. \"{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}\".")
        elif not SSH_KEY_RE.match(key):
            _refuse(out, "ssh_key", "ssh_public_key",
                    "does not look like an OpenSSH public key (\"ssh-ed25519 AAAA... comment\"); "
                    "give the .pub file's content, never the private key.")
        user = p.get("ssh_user") or ""
        if not SSH_USER_RE.match(user):
            _refuse(out, "ssh_user", "ssh_user",
                    "%r is not a valid Linux user name for the ssh-keys metadata entry." % user)


# ---- API checks -------------------------------------------------------------------------


def quota_metrics(p, vcpus, gpu_type, gpu_count):
    """(metric, amount, scope) the request consumes; scope is 'region' or 'project'."""
    spot = p.get("provisioning_model") == "SPOT"
    wanted = []
    if gpu_type and gpu_count:
        metric = GPU_QUOTA_METRICS.get(
            gpu_type, gpu_type.upper().replace("-", "_").replace("NVIDIA_TESLA_", "NVIDIA_") + "_GPUS")
        wanted.append((("PREEMPTIBLE_" if spot else "") + metric, gpu_count, "region"))
        if p.get("flex_start") and not spot:
            # The flex-start fallback draws preemptible quota.
            wanted.append(("PREEMPTIBLE_" + metric, gpu_count, "region"))
        wanted.append(("GPUS_ALL_REGIONS", gpu_count, "project"))
    wanted.append(("PREEMPTIBLE_CPUS" if spot else "CPUS", vcpus, "region"))
    wanted.append(("CPUS_ALL_REGIONS", vcpus, "project"))
    disk_metric = "DISKS_TOTAL_GB" if p.get("disk_type") == "pd-standard" else "SSD_TOTAL_GB"
    wanted.append((disk_metric, int(p.get("disk_size_gb") or 0), "region"))
    return wanted


def console_quota_url(project, metric):
    return "https://console.cloud.google.com/iam-admin/quotas?project=%s&metric=%s" % (project, metric)


def quota_shortfalls(p, quotas_by_scope, wanted):
    """Refusals for every metric whose limit - usage is below what the VM needs.

    quotas_by_scope: {"region": {metric: {limit, usage}}, "project": {...}}; a spot metric
    missing from the region's list falls back to the standard metric (GCE does the same when a
    project has no preemptible quota).
    """
    out = []
    project = p.get("project")
    for metric, amount, scope in wanted:
        quotas = quotas_by_scope.get(scope) or {}
        name = metric
        if name not in quotas and name.startswith("PREEMPTIBLE_"):
            name = name[len("PREEMPTIBLE_"):]
        if name not in quotas:
            continue
        limit = float(quotas[name].get("limit", 0))
        usage = float(quotas[name].get("usage", 0))
        available = limit - usage
        if available >= amount:
            continue
        where = quotas_by_scope.get("region_name") if scope == "region" else "project %s" % project
        details = {"metric": name, "scope": scope, "region": where if scope == "region" else None,
                   "limit": limit, "usage": usage, "available": available, "requested": amount}
        message = (
            "Quota %s in %s is short: limit %g, usage %g, available %g < requested %g. "
            "Raise it in the console (%s) or file a request with "
            "`ansible-playbook playbooks/quota_request.yml -e gce_quota_request_metric=%s%s "
            "-e gce_quota_request_value=%g`; or free some by stopping/deleting VMs that use it."
            % (name, where, limit, usage, available, amount, console_quota_url(project, name), name,
               (" -e gce_quota_request_region=%s" % where) if scope == "region" else "",
               usage + amount)
        )
        variable = var("gpu_count") if "GPU" in name else (var("disk_size_gb") if "GB" in name else var("machine_type"))
        standard = _standard_quota_free(quotas, name, amount)
        if metric.startswith("PREEMPTIBLE_") and p.get("flex_start") and p.get("provisioning_model") != "SPOT":
            variable = var("flex_start")
            message += " Flex-start VMs draw this preemptible quota: raise it, or set %s: false." % variable
        elif standard is not None:
            # Spot has its own (often zero) quota; the on-demand one may have room.
            variable = var("provisioning_model")
            message += (" The on-demand quota %s has %g free: %s: STANDARD fits now (at the on-demand price)."
                         % (name[len("PREEMPTIBLE_"):], standard, variable))
        out.append(Refusal("quota", variable, message, details))
    return out


def _standard_quota_free(quotas, name, amount):
    """What the on-demand twin of a short PREEMPTIBLE_ metric has free, when that covers `amount`."""
    if not name.startswith("PREEMPTIBLE_"):
        return None
    twin = quotas.get(name[len("PREEMPTIBLE_"):])
    if not twin:
        return None
    free = float(twin.get("limit", 0)) - float(twin.get("usage", 0))
    return free if free >= amount else None


def quotas_map(resource):
    return {q["metric"]: q for q in (resource or {}).get("quotas") or []}


# ---- Exposure: the network's own firewall rules -----------------------------------------


def _is_cidr(value):
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return True


def _subtract(nets, holes):
    """The parts of `nets` outside every network of `holes` (CIDR blocks nest or are disjoint)."""
    left = list(nets)
    for hole in holes:
        nxt = []
        for net in left:
            if net.version != hole.version or not net.overlaps(hole):
                nxt.append(net)
            elif not net.subnet_of(hole):
                nxt.extend(net.address_exclude(hole))
        left = nxt
    return left


def public_part(ranges):
    """The addresses of `ranges` that are on the internet (outside NON_PUBLIC_SOURCES), collapsed."""
    nets = [ipaddress.ip_network(str(c), strict=False) for c in ranges or [] if _is_cidr(c)]
    holes = [ipaddress.ip_network(h) for h in NON_PUBLIC_SOURCES]
    left = _subtract(nets, holes)
    out = []
    for version in (4, 6):
        out.extend(ipaddress.collapse_addresses(n for n in left if n.version == version))
    return out


def covers_internet(ranges):
    """["IPv4"] / ["IPv6"] / both when the ranges together hold every internet address of that
    family: 0.0.0.0/0, but also 0.0.0.0/1 + 128.0.0.0/1, or everything but the private blocks."""
    mine = public_part(ranges)
    whole = public_part(["0.0.0.0/0", "::/0"])
    out = []
    for version, label in ((4, "IPv4"), (6, "IPv6")):
        need = sum(n.num_addresses for n in whole if n.version == version)
        have = sum(n.num_addresses for n in mine if n.version == version)
        if have == need:
            out.append(label)
    return out


def rule_applies(rule, network, tag, service_account):
    """An enabled INGRESS allow rule of `network` that reaches a VM with that tag and account."""
    if rule.get("disabled") or (rule.get("direction") or "INGRESS") != "INGRESS" or not rule.get("allowed"):
        return False
    if (rule.get("network") or "").rstrip("/").rsplit("/", 1)[-1] != network:
        return False
    tags, accounts = rule.get("targetTags") or [], rule.get("targetServiceAccounts") or []
    if not tags and not accounts:
        return True
    return (tag in tags) or (service_account in accounts)


def describe_allowed(rule):
    parts = []
    for entry in rule.get("allowed") or []:
        proto = str(entry.get("IPProtocol", "")).lower()
        ports = entry.get("ports") or []
        parts.append("%s:%s" % (proto, ",".join(ports)) if ports else ("%s (all ports)" % proto
                                                                        if proto in ("tcp", "udp", "sctp", "all")
                                                                        else proto))
    return ", ".join(parts)


def exposure_refusals(p, rules, service_account):
    """Refusals for every firewall rule that lets the internet reach the VM's external address.

    Only rules that apply (network, target tags / service accounts) and whose sourceRanges hold
    any internet address count; the project's own SSH rule (gce_vm_firewall_name) is judged by
    the ssh_source_ranges check instead. Deny rules are not weighed against them: a rule that
    lets the internet in is refused even if a deny rule might shadow it."""
    if not p.get("external_ip") or p.get("allow_public_ingress"):
        return []
    out = []
    for rule in sorted(rules or [], key=lambda r: (int(r.get("priority", 1000)), r.get("name", ""))):
        if rule.get("name") == p.get("firewall_name"):
            continue
        if not rule_applies(rule, p.get("network") or "default", p.get("network_tag") or "", service_account):
            continue
        public = public_part(rule.get("sourceRanges") or [])
        if not public:
            continue
        name = rule.get("name")
        project = p.get("project")
        whole = covers_internet(rule.get("sourceRanges") or [])
        message = (
            "%s: true gives the VM an internet address, and firewall rule %s of network %s lets %s in "
            "(sources %s, allows %s%s). Fix one of: set gce_vm_external_ip: false (the default: access "
            "goes through IAP, which needs no external address, and egress through Cloud NAT); or delete "
            "the rule (gcloud compute firewall-rules delete %s --project %s) or narrow it (gcloud compute "
            "firewall-rules update %s --source-ranges=%s --project %s); or, to expose the VM deliberately, "
            "set gce_vm_allow_public_ingress: true."
            % (var("external_ip"), name, p.get("network") or "default",
               "the whole internet" if whole else "internet addresses",
               ", ".join(rule.get("sourceRanges") or []), describe_allowed(rule),
               "" if not (rule.get("targetTags") or rule.get("targetServiceAccounts"))
               else "; it targets this VM's %s" % ("tag" if p.get("network_tag") in (rule.get("targetTags") or [])
                                                   else "service account"),
               name, project, name, IAP_RANGE, project))
        out.append(Refusal("exposure", var("external_ip"), message,
                           {"rule": name, "source_ranges": rule.get("sourceRanges") or [],
                            "allowed": rule.get("allowed") or [], "public": [str(n) for n in public]}))
    return out
