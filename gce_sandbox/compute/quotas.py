"""Quotas (limits and live usage) and the capacity faults an insert or start can meet."""

from __future__ import annotations

from .. import catalog
from ..errors import (
    operation_error,
)


class QuotasMixin:
    # ---- quotas --------------------------------------------------------------------
    def quota_limits(self, region: str | None) -> dict[str, float]:
        overrides = self.state.setdefault("quota_limits", {})
        if region is None:
            base = dict(catalog.DEFAULT_PROJECT_QUOTAS)
            base.update(overrides.get("global", {}))
        else:
            base = dict(catalog.DEFAULT_REGION_QUOTAS)
            base.update(overrides.get("regions", {}).get(region, {}))
        return base

    def quota_usage(self, region: str | None) -> dict[str, float]:
        usage: dict[str, float] = {}

        def add(metric: str, amount: float) -> None:
            usage[metric] = usage.get(metric, 0) + amount

        for zone, table in self.state.get("instances", {}).items():
            r = catalog.region_of(zone)
            if region is not None and r != region:
                continue
            for inst in table.values():
                need = self.instance_needs(inst, include_static=True)
                if inst["status"] in ("TERMINATED", "STOPPING", "SUSPENDED"):
                    need = {m: v for m, v in need.items() if m in ("INSTANCES",)}
                    # (STOPPING releases at the stop operation's end in GCE; counted released
                    # here as soon as the stop is accepted.)
                for metric, amount in need.items():
                    add(metric, amount)
        for zone, table in self.state.get("disks", {}).items():
            r = catalog.region_of(zone)
            if region is not None and r != region:
                continue
            for disk in table.values():
                dtype = disk["type"].rsplit("/", 1)[-1]
                metric = "SSD_TOTAL_GB" if catalog.DISK_TYPES[dtype]["ssd"] else "DISKS_TOTAL_GB"
                add(metric, int(disk["sizeGb"]))
        if region is None:
            project_usage = {
                "CPUS_ALL_REGIONS": usage.get("CPUS", 0),
                "GPUS_ALL_REGIONS": sum(v for m, v in usage.items() if m.endswith("_GPUS")),
                "FIREWALLS": len(self.firewalls()),
                "NETWORKS": 1,
            }
            return project_usage
        return usage

    def instance_needs(self, inst: dict, include_static: bool) -> dict[str, float]:
        """Quota metrics one running instance consumes in its region."""
        mt = inst["machineType"].rsplit("/", 1)[-1]
        info = catalog.MACHINE_TYPES[mt]
        sched = inst.get("scheduling", {})
        # Flex-start VMs draw preemptible quota too (GCE's flex-start announcement).
        preemptible = sched.get("preemptible") or sched.get("provisioningModel") in ("SPOT", "FLEX_START")
        need: dict[str, float] = {"CPUS": info["cpus"]}
        gpus = list(inst.get("guestAccelerators") or [])
        for g in gpus:
            metric = catalog.ACCELERATORS[g["acceleratorType"].rsplit("/", 1)[-1]]["metric"]
            if preemptible:
                metric = "PREEMPTIBLE_" + metric
            need[metric] = need.get(metric, 0) + int(g["acceleratorCount"])
        if any(ac.get("natIP") or ac.get("_wants_ip") for nic in inst.get("networkInterfaces", [])
               for ac in nic.get("accessConfigs", [])):
            need["IN_USE_ADDRESSES"] = 1
        if include_static:
            need["INSTANCES"] = 1
        return need

    def quota_errors(self, region: str, need: dict[str, float]) -> list[dict]:
        """QUOTA_EXCEEDED operation errors for what does not fit.

        Wording from GCE as quoted in SkyPilot's failover handler (sky/backends/
        cloud_vm_ray_backend.py): "Quota 'CPUS' exceeded.  Limit: 24.0 in region us-west1."
        and "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 1.0 globally." (two spaces). GCE
        reports these as errors of the insert operation (Terraform: "Error waiting for
        instance to create: Quota ... exceeded"), one entry per exceeded metric.
        """
        errors = []
        limits, usage = self.quota_limits(region), self.quota_usage(region)
        for metric, amount in need.items():
            if amount <= 0 or metric not in limits:
                continue
            if usage.get(metric, 0) + amount > limits[metric]:
                errors.append(self._quota_error(metric, limits[metric], region))
        glimits, gusage = self.quota_limits(None), self.quota_usage(None)
        gneed = {"CPUS_ALL_REGIONS": need.get("CPUS", 0),
                 "GPUS_ALL_REGIONS": sum(v for m, v in need.items() if m.endswith("_GPUS"))}
        for metric, amount in gneed.items():
            if amount > 0 and gusage.get(metric, 0) + amount > glimits[metric]:
                errors.append(self._quota_error(metric, glimits[metric], None))
        return errors

    def _quota_error(self, metric: str, limit: float, region: str | None) -> dict:
        where = f"in region {region}" if region else "globally"
        detail = {"quotaInfo": {
            "metricName": f"compute.googleapis.com/{metric.lower()}",
            "limitName": catalog.QUOTA_IDS.get(metric, metric),
            "dimensions": {"region": region} if region else {"global": "global"},
            "limit": limit,
        }}
        return operation_error("QUOTA_EXCEEDED", f"Quota '{metric}' exceeded.  Limit: {float(limit)} {where}.",
                               [detail])

    def quotas_list(self, region: str | None) -> list[dict]:
        limits, usage = self.quota_limits(region), self.quota_usage(region)
        return [{"metric": m, "limit": float(limits[m]), "usage": float(usage.get(m, 0))} for m in sorted(limits)]

    # ---- capacity faults ---------------------------------------------------------
    def capacity_errors(self, zone: str, inst: dict) -> list[dict]:
        fault = self.faults.take("zone_exhausted", zone=zone)
        if fault is None:
            region = catalog.region_of(zone)
            qf = self.faults.take("quota_exceeded", region=region)
            if qf is None:
                return []
            metric = qf.get("metric") or "CPUS"
            limit = self.quota_limits(None if metric.endswith("ALL_REGIONS") else region).get(metric, 0)
            return [self._quota_error(metric, limit, None if metric.endswith("ALL_REGIONS") else region)]
        return self.zone_exhausted_errors(zone, inst, fault)

    def zone_exhausted_errors(self, zone: str, inst: dict, fault: dict) -> list[dict]:
        res = f"projects/{self.project}/zones/{zone}"
        if not fault.get("with_details"):
            # Text of ZONE_RESOURCE_POOL_EXHAUSTED as gcloud prints it (public bug reports).
            return [operation_error("ZONE_RESOURCE_POOL_EXHAUSTED",
                                    f"The zone '{res}' does not have enough resources available to fulfill "
                                    "the request.  Try a different zone, or try again later.")]
        mt = inst["machineType"].rsplit("/", 1)[-1]
        available = [z for z in (fault.get("zones_available") or []) if z != zone]
        meta = {"vmType": mt, "zone": zone}
        accel = inst.get("guestAccelerators") or []
        if accel:
            meta["attachment"] = ",".join(
                f"{a['acceleratorType'].rsplit('/', 1)[-1]}:{a['acceleratorCount']}" for a in accel)
        if available:
            meta["zonesAvailable"] = ",".join(available)
        # Shape of ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS as captured from the real API in
        # cockroachdb's roachprod GCE provider tests: errorDetails holds a localizedMessage and
        # an errorInfo (reason resource_availability) whose metadatas carry zonesAvailable.
        hint = (f" Consider trying your request in the {','.join(available)} zone(s), which currently "
                "has capacity to accommodate your request." if available else
                " Try a different VM hardware configuration or consider trying your request in a different zone.")
        details = [
            {"localizedMessage": {"locale": "en-US",
                                  "message": f"A {mt} VM instance is currently unavailable in the {zone} zone."
                                             + hint}},
            {"errorInfo": {"domain": "compute.googleapis.com", "reason": "resource_availability",
                           "metadatas": meta}},
            {"help": {"links": [{"description": "Troubleshooting documentation",
                                 "url": "https://cloud.google.com/compute/docs/resource-error"}]}},
        ]
        return [operation_error("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                                f"The zone '{res}' does not have enough resources available to fulfill the "
                                "request.  '(resource type:compute)'.", details)]
