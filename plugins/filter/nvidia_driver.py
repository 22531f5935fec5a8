"""Filters the nvidia_driver role uses to read what the host says about its GPUs and driver.

Each one turns the raw output of a probe (sysfs, lspci, nvidia-smi, apt-cache) into plain data,
so the role's tasks stay declarative and the parsing is unit-tested on its own
(tests/unit/test_nvidia_filters.py).
"""

from __future__ import annotations

import os
import re

import ansible.module_utils

# Controller-side plugins do not see the project's module_utils (only modules get them, packed
# in by Ansible): put that folder on ansible.module_utils' path, as the unit tests do.
_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
if _UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_UTILS)

from ansible.module_utils.gce_preflight_checks import has_builtin_gpus  # noqa: E402

NVIDIA_PCI_VENDOR = "10de"
# PCI base class 0x03 is "display controller" (VGA 0x0300, 3D 0x0302). NVIDIA's other functions
# (HDMI audio 0x0403, NVSwitch bridges 0x0680 on HGX boards) are not GPUs.
DISPLAY_CLASS_PREFIX = "03"

# nvidia-smi exit statuses (nvidia-smi(1), "RETURN VALUE") that mean something to a person.
NVIDIA_SMI_EXIT = {
    0: "ok",
    2: "invalid_argument",
    3: "not_supported",
    4: "no_permission",
    6: "not_found",
    8: "power_cables",
    9: "no_driver",
    10: "interrupt",
    12: "no_nvml",
    14: "inforom_corrupted",
    15: "gpu_lost",
}

_VERSION_RE = re.compile(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?")
_SMI_L_GPU_RE = re.compile(r"^GPU (\d+): (.*?)(?: \(UUID: ([^)]+)\))?\s*$")
_SMI_L_MIG_RE = re.compile(r"^\s+MIG (.*?)\s+Device\s+(\d+): \(UUID: ([^)]+)\)\s*$")
_SYSFS_RE = re.compile(r"^sysfs\s+(\S+)\s+0x([0-9a-fA-F]{4})\s+0x([0-9a-fA-F]{4})\s+0x([0-9a-fA-F]{6})\s*$")
# `lspci -Dnmm`: 0000:00:04.0 "0302" "10de" "1eb8" -ra1 "10de" "12a2"
_LSPCI_RE = re.compile(r'^lspci\s+(\S+)\s+"([0-9a-fA-F]{4})"\s+"([0-9a-fA-F]{4})"\s+"([0-9a-fA-F]{4})"')


def nvidia_driver_branch(version):
    """Driver branch of a version string: "535.247.01" -> "535", "580" -> "580".

    Returns None for anything that does not start with a number (an empty probe, "N/A").
    """
    if version is None:
        return None
    match = _VERSION_RE.match(str(version))
    if not match:
        return None
    return str(int(match.group(1)))


def nvidia_smi_csv(stdout, fields):
    """Rows of `nvidia-smi --query-gpu=<fields> --format=csv,noheader` as dicts.

    Values are stripped; "[N/A]"/"N/A" become None. A row with the wrong number of cells is
    an error, not something to guess about (names never contain commas in nvidia-smi's CSV).
    """
    if isinstance(fields, str):
        fields = [f.strip() for f in fields.split(",") if f.strip()]
    rows = []
    for line in (stdout or "").splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(fields):
            raise ValueError(f"nvidia-smi CSV row has {len(cells)} cells, expected {len(fields)}: {line!r}")
        rows.append({f: (None if c in ("N/A", "[N/A]", "") else c) for f, c in zip(fields, cells, strict=True)})
    return rows


def nvidia_smi_list(stdout):
    """GPUs of `nvidia-smi -L`: [{index, name, uuid, mig: [{profile, index, uuid}]}].

    MIG devices are listed indented under their GPU and are kept with it, not counted as GPUs.
    Lines that are neither (warnings nvidia-smi prints on stdout) are ignored.
    """
    gpus = []
    for line in (stdout or "").splitlines():
        gpu = _SMI_L_GPU_RE.match(line)
        if gpu:
            gpus.append({"index": int(gpu.group(1)), "name": gpu.group(2).strip(), "uuid": gpu.group(3), "mig": []})
            continue
        mig = _SMI_L_MIG_RE.match(line)
        if mig and gpus:
            gpus[-1]["mig"].append({"profile": mig.group(1), "index": int(mig.group(2)), "uuid": mig.group(3)})
    return gpus


def nvidia_smi_state(result):
    """Classify a registered nvidia-smi result: {state, rc, detail}.

    `state` is "ok", "not_installed" (no nvidia-smi binary), one of NVIDIA_SMI_EXIT's names
    ("no_driver" is exit 9: "couldn't communicate with the NVIDIA driver", what a container or a
    VM without the kernel module answers) or "error". `detail` is nvidia-smi's own first line.
    """
    result = result or {}
    rc = result.get("rc")
    text = "\n".join(str(result.get(k) or "") for k in ("stderr", "stdout", "msg")).strip()
    detail = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    output = (str(result.get("stdout") or "") + str(result.get("stderr") or "")).strip()
    # ansible.builtin.command reports a missing executable as rc 2, "Error executing command."
    # (ansible-core >= 2.19) or "[Errno 2] No such file or directory" (older), with no output;
    # nvidia-smi's own exit 2 (bad argument) always says something.
    missing = rc == 2 and not output and (
        "Error executing command" in str(result.get("msg") or "") or "No such file or directory" in text
    )
    if rc is None or missing or rc == 127:
        state = "not_installed"
    elif rc == 9 or "couldn't communicate with the NVIDIA driver" in text:
        state = "no_driver"
    else:
        state = NVIDIA_SMI_EXIT.get(rc, "error")
    return {"state": state, "rc": rc, "detail": detail}


def nvidia_pci_gpus(stdout):
    """NVIDIA display-class devices from the role's PCI probe.

    The probe prints `sysfs <slot> <vendor> <device> <class>` per device from
    /sys/bus/pci/devices, or, where sysfs shows nothing, `lspci <lspci -Dnmm line>`.
    """
    gpus = []
    for line in (stdout or "").splitlines():
        m = _SYSFS_RE.match(line)
        if m:
            slot, vendor, device, pci_class = m.group(1), m.group(2), m.group(3), m.group(4)
            source = "sysfs"
        else:
            m = _LSPCI_RE.match(line)
            if not m:
                continue
            slot, pci_class, vendor, device = m.group(1), m.group(2), m.group(3), m.group(4)
            source = "lspci"
        vendor, device, pci_class = vendor.lower(), device.lower(), pci_class.lower()
        if vendor == NVIDIA_PCI_VENDOR and pci_class.startswith(DISPLAY_CLASS_PREFIX):
            gpus.append({"slot": slot, "vendor": vendor, "device": device, "class": pci_class[:4], "source": source})
    return sorted(gpus, key=lambda g: g["slot"])


def nvidia_apt_policy(stdout):
    """`apt-cache policy PKG...` as {pkg: {installed, candidate}}; "(none)" becomes None.

    apt-cache prints nothing for a name it has never heard of, so a missing key means "unknown
    to apt" (not in any configured source, or the lists are stale).
    """
    packages = {}
    current = None
    for line in (stdout or "").splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1]
            packages[current] = {"installed": None, "candidate": None}
            continue
        if current is None:
            continue
        stripped = line.strip()
        for key in ("installed", "candidate"):
            prefix = key.capitalize() + ":"
            if stripped.startswith(prefix):
                value = stripped[len(prefix):].strip()
                packages[current][key] = None if value in ("(none)", "") else value
    return packages


def nvidia_gpus_requested(machine_type, gpu_count=0):
    """Whether a VM of this machine type with `gpu_count` attached GPUs was asked for GPUs: any
    attached, or a machine type that carries its own (the one list: BUILTIN_GPU_FAMILIES), whose
    gce_vm_gpu_count is 0. Such a VM whose driver sees no GPU is broken."""
    try:
        attached = int(gpu_count or 0)
    except (TypeError, ValueError):
        attached = 0
    return attached > 0 or has_builtin_gpus(str(machine_type or ""))


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {
            "nvidia_driver_branch": nvidia_driver_branch,
            "nvidia_gpus_requested": nvidia_gpus_requested,
            "nvidia_smi_csv": nvidia_smi_csv,
            "nvidia_smi_list": nvidia_smi_list,
            "nvidia_smi_state": nvidia_smi_state,
            "nvidia_pci_gpus": nvidia_pci_gpus,
            "nvidia_apt_policy": nvidia_apt_policy,
        }
