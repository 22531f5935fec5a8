"""The static world the sandbox emulates: zones, regions, GPUs, machine types, images.

Sources (public Compute Engine documentation, "GPU regions and zones", "GPU machine types",
"Deep Learning VM images: choosing an image"); the offering is a realistic subset, chosen so
that not every zone offers every GPU (us-east1-b has no T4, for example).
"""

from __future__ import annotations

import hashlib

ZONES: dict[str, list[str]] = {
    # zone -> accelerator types offered there
    "us-central1-a": ["nvidia-tesla-t4", "nvidia-tesla-p4", "nvidia-tesla-v100", "nvidia-tesla-a100", "nvidia-l4"],
    "us-central1-b": ["nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-a100", "nvidia-l4"],
    "us-central1-c": ["nvidia-tesla-t4", "nvidia-tesla-p4", "nvidia-tesla-v100", "nvidia-tesla-p100",
                      "nvidia-tesla-a100", "nvidia-l4"],
    "us-central1-f": ["nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-tesla-a100"],
    "us-east1-b": ["nvidia-tesla-p100"],
    "us-east1-c": ["nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100"],
    "us-east1-d": ["nvidia-tesla-t4", "nvidia-l4"],
    "us-west1-a": ["nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-l4"],
    "us-west1-b": ["nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-tesla-a100", "nvidia-l4"],
    "europe-west4-a": ["nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-l4"],
    "europe-west4-b": ["nvidia-tesla-t4", "nvidia-tesla-p4", "nvidia-tesla-v100", "nvidia-tesla-a100", "nvidia-l4"],
    "europe-west4-c": ["nvidia-tesla-t4", "nvidia-tesla-p4", "nvidia-tesla-v100", "nvidia-l4"],
    "asia-east1-a": ["nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-l4"],
    "asia-east1-c": ["nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-l4"],
}

REGION_DESCRIPTIONS = {
    "us-central1": "Iowa", "us-east1": "South Carolina", "us-west1": "Oregon",
    "europe-west4": "Netherlands", "asia-east1": "Taiwan",
}

# Auto-mode VPC subnet ranges of the `default` network (real values for these regions).
SUBNET_RANGES = {
    "us-central1": "10.128.0.0/20", "us-east1": "10.142.0.0/20", "us-west1": "10.138.0.0/20",
    "europe-west4": "10.164.0.0/20", "asia-east1": "10.140.0.0/20",
}


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


REGIONS = sorted({region_of(z) for z in ZONES})


def zones_of(region: str) -> list[str]:
    return [z for z in ZONES if region_of(z) == region]


# accelerator type -> (description, maximumCardsPerInstance, valid attached counts, quota metric)
# Attached counts from "GPU machine types" (N1 + T4/P4/P100: 1, 2, 4; V100: 1, 2, 4, 8).
# A100 and L4 are only available built into A2 / G2 machine types (attached count: none).
ACCELERATORS: dict[str, dict] = {
    "nvidia-tesla-t4": {"description": "NVIDIA T4", "max": 4, "counts": [1, 2, 4], "metric": "NVIDIA_T4_GPUS"},
    "nvidia-tesla-p4": {"description": "NVIDIA Tesla P4", "max": 4, "counts": [1, 2, 4], "metric": "NVIDIA_P4_GPUS"},
    "nvidia-tesla-p100": {"description": "NVIDIA Tesla P100", "max": 4, "counts": [1, 2, 4],
                          "metric": "NVIDIA_P100_GPUS"},
    "nvidia-tesla-v100": {"description": "NVIDIA V100", "max": 8, "counts": [1, 2, 4, 8],
                          "metric": "NVIDIA_V100_GPUS"},
    "nvidia-tesla-a100": {"description": "NVIDIA A100 40GB", "max": 16, "counts": [], "metric": "NVIDIA_A100_GPUS"},
    "nvidia-l4": {"description": "NVIDIA L4", "max": 8, "counts": [], "metric": "NVIDIA_L4_GPUS"},
}

# N1 vCPUs allowed per number of attached GPUs (GPU machine types page, "N1 machine types with
# attached GPUs": T4 1-2 GPUs up to 48 vCPUs, 4 up to 96; P4 24/48/96; P100 16/32/64; V100
# 12/24/48/96). Larger N1 machines with fewer GPUs are refused with "At most N vCPUs can be used
# along with M accelerator cards in an instance."
N1_MAX_VCPUS: dict[str, dict[int, int]] = {
    "nvidia-tesla-t4": {1: 48, 2: 48, 4: 96},
    "nvidia-tesla-p4": {1: 24, 2: 48, 4: 96},
    "nvidia-tesla-p100": {1: 16, 2: 32, 4: 64},
    "nvidia-tesla-v100": {1: 12, 2: 24, 4: 48, 8: 96},
}

GPU_METRICS = sorted({a["metric"] for a in ACCELERATORS.values()})


def _machine_types() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for n in (2, 4, 8, 16, 32):
        out[f"e2-standard-{n}"] = {"cpus": n, "mem": n * 4096, "family": "e2"}
    out["e2-medium"] = {"cpus": 2, "mem": 4096, "family": "e2", "shared": True}
    out["e2-small"] = {"cpus": 2, "mem": 2048, "family": "e2", "shared": True}
    out["e2-micro"] = {"cpus": 2, "mem": 1024, "family": "e2", "shared": True}
    out["n1-standard-1"] = {"cpus": 1, "mem": 3840, "family": "n1"}
    for n in (2, 4, 8, 16, 32, 64, 96):
        out[f"n1-standard-{n}"] = {"cpus": n, "mem": n * 3840, "family": "n1"}
        out[f"n1-highmem-{n}"] = {"cpus": n, "mem": n * 6656, "family": "n1"}
        out[f"n1-highcpu-{n}"] = {"cpus": n, "mem": int(n * 921.6), "family": "n1"}
    for gpus, cpus, mem in ((1, 12, 87040), (2, 24, 174080), (4, 48, 348160), (8, 96, 696320)):
        out[f"a2-highgpu-{gpus}g"] = {"cpus": cpus, "mem": mem, "family": "a2",
                                      "gpu": ("nvidia-tesla-a100", gpus)}
    for cpus, gpus in ((4, 1), (8, 1), (12, 1), (16, 1), (24, 2), (32, 1), (48, 4), (96, 8)):
        out[f"g2-standard-{cpus}"] = {"cpus": cpus, "mem": cpus * 4096, "family": "g2",
                                      "gpu": ("nvidia-l4", gpus)}
    return out


MACHINE_TYPES = _machine_types()


def machine_types_in(zone: str) -> list[str]:
    offered = ZONES[zone]
    names = []
    for name, mt in MACHINE_TYPES.items():
        gpu = mt.get("gpu")
        if gpu and gpu[0] not in offered:
            continue
        names.append(name)
    return names


def machine_type_description(name: str) -> str:
    mt = MACHINE_TYPES[name]
    mem_gb = mt["mem"] / 1024
    mem = f"{mem_gb:g}"
    if mt.get("gpu"):
        return f"Accelerator Optimized: {mt['gpu'][1]} {ACCELERATORS[mt['gpu'][0]]['description']} GPU, " \
               f"{mt['cpus']} vCPUs, {mem} GB RAM"
    if mt.get("shared"):
        return f"{mt['cpus']} vCPU (shared core), {mem} GB RAM"
    return f"{mt['cpus']} vCPU{'s' if mt['cpus'] > 1 else ''}, {mem} GB RAM"


DISK_TYPES = {
    "pd-standard": {"description": "Standard Persistent Disk", "default": "500GB", "ssd": False, "min": 10},
    "pd-balanced": {"description": "Balanced Persistent Disk", "default": "100GB", "ssd": True, "min": 10},
    "pd-ssd": {"description": "SSD Persistent Disk", "default": "100GB", "ssd": True, "min": 10},
}

# project -> family -> image description; images named <family>-vYYYYMMDD like the real ones.
IMAGES: dict[str, dict[str, dict]] = {
    "deeplearning-platform-release": {
        "pytorch-2-9-cu129-ubuntu-2404-nvidia-580": {"size": 50, "date": "20251119"},
        "pytorch-2-7-cu128-ubuntu-2204-nvidia-570": {"size": 50, "date": "20251002"},
        "common-cu129-ubuntu-2404-nvidia-580": {"size": 50, "date": "20251119"},
        "common-cu128-ubuntu-2204-nvidia-570": {"size": 50, "date": "20251002"},
        "tf-2-17-cu124-ubuntu-2204": {"size": 50, "date": "20250801"},
        "common-cpu-ubuntu-2404": {"size": 50, "date": "20251119"},
        # Debian-based DLVM families are deprecated (DLVM release notes).
        "pytorch-latest-gpu-debian-11-py310": {"size": 50, "date": "20240708", "deprecated": True,
                                               "replacement": "pytorch-2-9-cu129-ubuntu-2404-nvidia-580"},
        "common-cu121-debian-11-py310": {"size": 50, "date": "20240708", "deprecated": True,
                                         "replacement": "common-cu129-ubuntu-2404-nvidia-580"},
        "common-cu113-debian-11-py310": {"size": 50, "date": "20231201", "deprecated": True,
                                         "replacement": "common-cu129-ubuntu-2404-nvidia-580"},
    },
    "debian-cloud": {
        "debian-12": {"size": 10, "date": "20251111", "image_base": "debian-12-bookworm"},
        "debian-13": {"size": 10, "date": "20251111", "image_base": "debian-13-trixie"},
    },
    "ubuntu-os-cloud": {
        "ubuntu-2404-lts-amd64": {"size": 10, "date": "20251120", "image_base": "ubuntu-2404-noble-amd64"},
        "ubuntu-2204-lts": {"size": 10, "date": "20251120", "image_base": "ubuntu-2204-jammy"},
    },
}


def image_name(family: str, info: dict) -> str:
    return f"{info.get('image_base', family)}-v{info['date']}"


def find_image(project: str, name: str) -> tuple[str, dict] | None:
    """Image by name in a public image project -> (family, info)."""
    for family, info in IMAGES.get(project, {}).items():
        if image_name(family, info) == name:
            return family, info
    return None


def stable_id(*parts: str) -> str:
    """A 19-digit numeric id, stable for a given name (like GCE's uint64 ids)."""
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return str(1000000000000000000 + int(digest[:15], 16) % 8000000000000000000)


def project_number(project: str) -> str:
    digest = hashlib.sha256(project.encode()).hexdigest()
    return str(100000000000 + int(digest[:10], 16) % 899999999999)


# ---- quotas ------------------------------------------------------------------------
# Defaults sized so that one VM with 1-4 T4 GPUs (and its disks) fits, as a user with an
# approved small GPU quota would have; A100 is 0 like on most new projects. All settable.
DEFAULT_REGION_QUOTAS: dict[str, float] = {
    "CPUS": 24, "INSTANCES": 24, "IN_USE_ADDRESSES": 8, "DISKS_TOTAL_GB": 4096, "SSD_TOTAL_GB": 500,
    "NVIDIA_T4_GPUS": 4, "PREEMPTIBLE_NVIDIA_T4_GPUS": 4,
    "NVIDIA_L4_GPUS": 1, "PREEMPTIBLE_NVIDIA_L4_GPUS": 1,
    "NVIDIA_V100_GPUS": 1, "PREEMPTIBLE_NVIDIA_V100_GPUS": 1,
    "NVIDIA_P100_GPUS": 1, "PREEMPTIBLE_NVIDIA_P100_GPUS": 1,
    "NVIDIA_P4_GPUS": 1, "PREEMPTIBLE_NVIDIA_P4_GPUS": 1,
    "NVIDIA_A100_GPUS": 0, "PREEMPTIBLE_NVIDIA_A100_GPUS": 0,
}
DEFAULT_PROJECT_QUOTAS: dict[str, float] = {
    "CPUS_ALL_REGIONS": 32, "GPUS_ALL_REGIONS": 4, "FIREWALLS": 200, "NETWORKS": 15,
    "IMAGES": 2000, "SNAPSHOTS": 5000, "STATIC_ADDRESSES": 8,
}

# Cloud Quotas ids (quotaId) for the Compute metrics, for the cloudquotas API.
QUOTA_IDS = {
    "CPUS": "CPUS-per-project-region",
    "CPUS_ALL_REGIONS": "CPUS-ALL-REGIONS-per-project",
    "GPUS_ALL_REGIONS": "GPUS-ALL-REGIONS-per-project",
    "INSTANCES": "INSTANCES-per-project-region",
    "IN_USE_ADDRESSES": "IN-USE-ADDRESSES-per-project-region",
    "DISKS_TOTAL_GB": "DISKS-TOTAL-GB-per-project-region",
    "SSD_TOTAL_GB": "SSD-TOTAL-GB-per-project-region",
}
for _m in GPU_METRICS:
    QUOTA_IDS[_m] = _m.replace("_", "-") + "-per-project-region"
    QUOTA_IDS["PREEMPTIBLE_" + _m] = "PREEMPTIBLE-" + _m.replace("_", "-") + "-per-project-region"
