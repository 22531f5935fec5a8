# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cost estimate of a Compute Engine GPU VM from a dated price table.

The table (roles/gce_preflight/files/prices.yml) gives per-region prices of a vCPU hour, a GiB of
memory hour, a GPU hour (on-demand and spot), a GiB month of persistent disk and an hour of an
external IPv4 address. Google bills a month as 730 hours; a stopped (TERMINATED) VM bills no vCPU,
memory or GPU but still bills its disks and a reserved static address.
"""

from __future__ import absolute_import, division, print_function

import re

__metaclass__ = type

HOURS_PER_MONTH = 730

# Memory (GiB per vCPU) of the predefined N1/N2/E2 shapes.
_GIB_PER_VCPU = {"standard": 3.75, "highmem": 6.5, "highcpu": 0.9}
_GIB_PER_VCPU_N2 = {"standard": 4.0, "highmem": 8.0, "highcpu": 1.0}

# Accelerator-optimized shapes: vCPUs, memory GiB, built-in GPU type and count.
_BUILTIN_SHAPES = {
    "g2-standard-4": (4, 16, "nvidia-l4", 1),
    "g2-standard-8": (8, 32, "nvidia-l4", 1),
    "g2-standard-12": (12, 48, "nvidia-l4", 1),
    "g2-standard-16": (16, 64, "nvidia-l4", 1),
    "g2-standard-24": (24, 96, "nvidia-l4", 2),
    "g2-standard-32": (32, 128, "nvidia-l4", 1),
    "g2-standard-48": (48, 192, "nvidia-l4", 4),
    "g2-standard-96": (96, 384, "nvidia-l4", 8),
    "a2-highgpu-1g": (12, 85, "nvidia-tesla-a100", 1),
    "a2-highgpu-2g": (24, 170, "nvidia-tesla-a100", 2),
    "a2-highgpu-4g": (48, 340, "nvidia-tesla-a100", 4),
    "a2-highgpu-8g": (96, 680, "nvidia-tesla-a100", 8),
    "a2-megagpu-16g": (96, 1360, "nvidia-tesla-a100", 16),
    "a2-ultragpu-1g": (12, 170, "nvidia-a100-80gb", 1),
    "a2-ultragpu-2g": (24, 340, "nvidia-a100-80gb", 2),
    "a2-ultragpu-4g": (48, 680, "nvidia-a100-80gb", 4),
    "a2-ultragpu-8g": (96, 1360, "nvidia-a100-80gb", 8),
    "a3-highgpu-1g": (26, 234, "nvidia-h100-80gb", 1),
    "a3-highgpu-2g": (52, 468, "nvidia-h100-80gb", 2),
    "a3-highgpu-4g": (104, 936, "nvidia-h100-80gb", 4),
    "a3-highgpu-8g": (208, 1872, "nvidia-h100-80gb", 8),
    "a3-megagpu-8g": (208, 1872, "nvidia-h100-mega-80gb", 8),
    "a3-ultragpu-8g": (224, 2952, "nvidia-h200-141gb", 8),
    "a4-highgpu-8g": (224, 3968, "nvidia-b200", 8),
    "g4-standard-48": (48, 180, "nvidia-rtx-pro-6000", 1),
    "g4-standard-96": (96, 360, "nvidia-rtx-pro-6000", 2),
    "g4-standard-192": (192, 720, "nvidia-rtx-pro-6000", 4),
    "g4-standard-384": (384, 1440, "nvidia-rtx-pro-6000", 8),
}


class PricingError(Exception):
    """The table lacks a price the estimate needs."""


def machine_family(machine_type):
    """`n1-standard-4` -> `n1`."""
    return machine_type.split("-", 1)[0]


def machine_shape(machine_type):
    """vCPUs, memory GiB, built-in GPU type and count of a predefined machine type, or None.

    Used when no API answer is at hand (the rerun fast path); the API's machineTypes.get
    (guestCpus, memoryMb, accelerators) is preferred when preflight has it.
    """
    if machine_type in _BUILTIN_SHAPES:
        return _BUILTIN_SHAPES[machine_type]
    match = re.match(r"^(n1|n2|n2d|e2)-(standard|highmem|highcpu)-(\d+)$", machine_type)
    if match:
        family, kind, vcpus = match.group(1), match.group(2), int(match.group(3))
        per_vcpu = _GIB_PER_VCPU if family == "n1" else _GIB_PER_VCPU_N2
        return (vcpus, vcpus * per_vcpu[kind], None, 0)
    return None


def shape_from_api(machine_type_resource):
    """The same tuple as machine_shape() from a machineTypes.get answer."""
    accelerators = machine_type_resource.get("accelerators") or []
    gpu_type = accelerators[0]["guestAcceleratorType"] if accelerators else None
    gpu_count = sum(int(a.get("guestAcceleratorCount", 0)) for a in accelerators)
    return (
        int(machine_type_resource["guestCpus"]),
        int(machine_type_resource["memoryMb"]) / 1024.0,
        gpu_type,
        gpu_count,
    )


def region_of(zone):
    """`us-central1-a` -> `us-central1`."""
    return zone.rsplit("-", 1)[0]


def _region_prices(prices, region):
    regions = prices.get("regions") or {}
    if region in regions:
        return region, regions[region]
    fallback = prices.get("fallback_region")
    if fallback in regions:
        return fallback, regions[fallback]
    raise PricingError(
        "the price table (dated %s) has no prices for region %s and no fallback_region; "
        "add the region to gce_preflight_price_overrides" % (prices.get("date"), region)
    )


# What the user changes when the table has no price for a key: the variable that chose it.
_CHOSEN_BY = {"GPU": "gce_vm_gpu_type", "machine family": "gce_vm_machine_type", "disk": "gce_vm_disk_type"}


def _lookup(table, key, what, region, built_into=None):
    if key not in table:
        if built_into:
            # The GPU comes with the machine type: that is the variable the user set.
            raise PricingError(
                "gce_vm_machine_type: the price table has no GPU price for %s, built into %s, in %s. "
                "Pick a machine type whose GPU it prices (%s), or add the price of %s to "
                "gce_preflight_price_overrides."
                % (key, built_into, region, ", ".join(sorted(table)) or "none", key)
            )
        raise PricingError(
            "%s: the price table has no %s price for %s in %s. Pick one it prices (%s), or add the "
            "price of %s to gce_preflight_price_overrides."
            % (_CHOSEN_BY[what], what, key, region, ", ".join(sorted(table)) or "none", key)
        )
    return table[key]


def estimate(
    prices,
    zone,
    machine_type,
    vcpus,
    memory_gib,
    gpu_type=None,
    gpu_count=0,
    disks=None,
    spot=False,
    external_ip=True,
    static_ip=False,
):
    """Estimate hourly, monthly (730 h) and stopped-monthly cost of one VM.

    disks: list of {"type": "pd-balanced", "size_gb": 100}.
    Returns a dict with the chosen model's figures, both models' figures, the line items and a
    one-line text. Money is rounded to 4 decimals (hourly) and 2 decimals (monthly).
    """
    hours = float(prices.get("hours_per_month", HOURS_PER_MONTH))
    region = region_of(zone)
    priced_region, table = _region_prices(prices, region)
    family = machine_family(machine_type)
    fam = _lookup(table.get("machine_families") or {}, family, "machine family", priced_region)
    disks = disks or []

    def model_figures(use_spot):
        items = []
        vcpu_price = fam["spot_vcpu" if use_spot else "vcpu"]
        mem_price = fam["spot_memory_gib" if use_spot else "memory_gib"]
        items.append(_item("vcpu", vcpus, "vCPU", vcpu_price * vcpus, hours))
        items.append(_item("memory", memory_gib, "GiB", mem_price * memory_gib, hours))
        if gpu_type and gpu_count:
            builtin = (_BUILTIN_SHAPES.get(machine_type) or (None, None, None))[2] == gpu_type
            gpu = _lookup(table.get("gpus") or {}, gpu_type, "GPU", priced_region,
                          built_into=machine_type if builtin else None)
            price = gpu["spot" if use_spot else "on_demand"]
            items.append(_item("gpu", gpu_count, gpu_type, price * gpu_count, hours))
        if external_ip:
            ip = table.get("external_ip") or {}
            price = ip.get("in_use_spot" if use_spot else "in_use", 0.0)
            items.append(_item("external_ip", 1, "address", price, hours))
        running_hourly = sum(i["hourly"] for i in items)
        disk_monthly = 0.0
        for disk in disks:
            per_gib = _lookup(table.get("disks_gib_month") or {}, disk["type"], "disk", priced_region)
            monthly = per_gib * float(disk["size_gb"])
            disk_monthly += monthly
            items.append(
                {
                    "item": "disk",
                    "quantity": float(disk["size_gb"]),
                    "unit": "GiB %s" % disk["type"],
                    "hourly": round(monthly / hours, 6),
                    "monthly": round(monthly, 4),
                }
            )
        static_monthly = 0.0
        if static_ip:
            static_monthly = (table.get("external_ip") or {}).get("static_unused", 0.0) * hours
        return {
            "hourly": round(running_hourly + disk_monthly / hours, 4),
            "monthly": round(running_hourly * hours + disk_monthly, 2),
            "stopped_monthly": round(disk_monthly + static_monthly, 2),
            "items": items,
        }

    on_demand = model_figures(False)
    spot_figures = model_figures(True)
    chosen = spot_figures if spot else on_demand
    model = "SPOT" if spot else "STANDARD"
    gpu_text = " + %d x %s" % (gpu_count, gpu_type) if gpu_type and gpu_count else ""
    note = ""
    if priced_region != region:
        note = " (no prices for %s in the table: %s prices used)" % (region, priced_region)
    text = (
        "%s%s in %s, %s: ~$%.2f/hour, ~$%.2f/month if left running (%d h), "
        "~$%.2f/month while stopped (disks%s); prices of %s%s"
        % (
            machine_type,
            gpu_text,
            zone,
            "spot" if spot else "on-demand",
            chosen["hourly"],
            chosen["monthly"],
            int(hours),
            chosen["stopped_monthly"],
            ", static IP" if static_ip else "",
            prices.get("date"),
            note,
        )
    )
    return {
        "currency": prices.get("currency", "USD"),
        "price_date": prices.get("date"),
        "priced_region": priced_region,
        "region": region,
        "zone": zone,
        "machine_type": machine_type,
        "provisioning_model": model,
        "hours_per_month": hours,
        "hourly": chosen["hourly"],
        "monthly": chosen["monthly"],
        "stopped_monthly": chosen["stopped_monthly"],
        "items": chosen["items"],
        "on_demand": {k: on_demand[k] for k in ("hourly", "monthly", "stopped_monthly")},
        "spot": {k: spot_figures[k] for k in ("hourly", "monthly", "stopped_monthly")},
        "text": text,
    }


def _item(name, quantity, unit, hourly, hours):
    return {
        "item": name,
        "quantity": quantity,
        "unit": unit,
        "hourly": round(hourly, 6),
        "monthly": round(hourly * hours, 4),
    }


def budget_refusal(cost, budget_monthly, variable="gce_budget_monthly_usd"):
    """A refusal message when the monthly estimate exceeds the budget, else None."""
    if budget_monthly is None or budget_monthly == "":
        return None
    budget = float(budget_monthly)
    if cost["monthly"] <= budget:
        return None
    cheaper = ""
    if cost["provisioning_model"] == "STANDARD" and cost["spot"]["monthly"] <= budget:
        cheaper = " A spot VM (gce_vm_provisioning_model: SPOT) would fit: ~$%.2f/month." % cost["spot"]["monthly"]
    return (
        "Refusing this VM shape: its estimated cost ~$%.2f/month (%s, ~$%.2f/hour x %d h) exceeds "
        "%s = %.2f. Choose a smaller machine type, fewer GPUs or spot, or raise %s.%s"
        % (
            cost["monthly"],
            cost["provisioning_model"].lower().replace("standard", "on-demand"),
            cost["hourly"],
            int(cost["hours_per_month"]),
            variable,
            budget,
            variable,
            cheaper,
        )
    )
