"""Compute Engine v1: the resources, rules and operations the sandbox emulates.

Every handler gets the path parameters (from the discovery document's route), the query
string and the (already schema-validated) body, and returns (http_status, json_body) or
raises ApiError. State lives in a plain dict (persisted by the server after each mutating
call); private bookkeeping keys start with "_" and never leave the sandbox.

Wording of refusals: where GCE's exact text is known from public reports it is used and the
source is noted next to it; other texts follow GCE's "Invalid value for field" pattern.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from . import catalog
from .backend import FakeAddressBackend, VmBackend
from .errors import (ApiError, already_exists, bad_request, fingerprint_mismatch, invalid_field,
                     not_found, operation_error)
from .filters import compile_filter

BASE = "https://www.googleapis.com/compute/v1/"
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[\w\-]{0,63}$", re.UNICODE)
LABEL_VALUE_RE = re.compile(r"^[\w\-]{0,63}$", re.UNICODE)
PACIFIC = timezone(timedelta(hours=-8))  # GCE timestamps carry the -08:00 / -07:00 offset


def now_rfc3339() -> str:
    return datetime.now(PACIFIC).isoformat(timespec="milliseconds")


def new_fingerprint() -> str:
    return base64.b64encode(os.urandom(8)).decode()


def same_fingerprint(given: Any, current: str) -> bool:
    """Fingerprints are proto `bytes`: JSON clients may send standard or URL-safe base64
    (gcloud's apitools sends URL-safe); compare the decoded bytes as GCE does."""
    if not isinstance(given, str) or not given:
        return False
    try:
        def decode(v: str) -> bytes:
            return base64.urlsafe_b64decode(v.replace("+", "-").replace("/", "_") + "=" * (-len(v) % 4))
        return decode(given) == decode(current)
    except (ValueError, TypeError):
        return False


def public(resource: Any) -> Any:
    """Deep copy without the sandbox's private "_" keys."""
    if isinstance(resource, dict):
        return {k: public(v) for k, v in resource.items() if not k.startswith("_")}
    if isinstance(resource, list):
        return [public(v) for v in resource]
    return resource


class RetryAfter(Exception):
    """Raised by a handler that wants the server to sleep (lock released) and call again."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


def check_name(name: Any, field: str = "resource.name") -> None:
    # GCE: "Invalid value for field 'resource.name': 'Foo'. Must be a match of regex
    # '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19})'" (gcloud/Terraform reports).
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise invalid_field(field, name,
                            "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19})'")


def check_labels(labels: Any, field: str = "labels") -> None:
    if labels is None:
        return
    if len(labels) > 64:
        raise invalid_field(field, "", "Too many labels: at most 64 labels are allowed.")
    for key, value in labels.items():
        # Wording as GCE answers a bad label key/value (googleapis and Terraform issues).
        if not key or not LABEL_KEY_RE.match(key) or not (key[0].isalpha() and key[0].islower()) \
                or key.lower() != key:
            raise invalid_field(field, "", f"Label key '{key}' violates format constraints. The key must "
                                "start with a lowercase character, can only contain lowercase letters, "
                                "numeric characters, underscores and dashes. The key can be at most 63 "
                                "characters long. International characters are allowed.")
        if not isinstance(value, str) or not LABEL_VALUE_RE.match(value) or value.lower() != value:
            raise invalid_field(field, "", f"Label value '{value}' violates format constraints. The value "
                                "can only contain lowercase letters, numeric characters, underscores and "
                                "dashes. The value can be at most 63 characters long. International "
                                "characters are allowed.")


_REF = re.compile(r"^(?:https?://[^/]+/compute/(?:v1|beta|alpha)/)?(?:projects/(?P<project>[^/]+)/)?(?P<rest>.*)$")


def metadata_value(inst: dict, key: str) -> str:
    return next((str(i.get("value", "")) for i in inst.get("metadata", {}).get("items", []) if i.get("key") == key), "")


def parse_ref(value: str) -> tuple[str | None, str]:
    """'https://compute.googleapis.com/compute/v1/projects/p/zones/z/x/y' -> ('p', 'zones/z/x/y')."""
    m = _REF.match(value or "")
    assert m
    return m.group("project"), m.group("rest")


class Compute:
    def __init__(self, state: dict, backend: VmBackend | None = None,
                 faults: "Faults | None" = None):
        self.state = state
        self.backend = backend or FakeAddressBackend(state)
        self.faults = faults or Faults(state)
        self.project = state["project"]
        self.number = catalog.project_number(self.project)

    # ---- links -------------------------------------------------------------------
    def link(self, path: str, project: str | None = None) -> str:
        return f"{BASE}projects/{project or self.project}/{path}"

    def res_path(self, path: str) -> str:
        return f"projects/{self.project}/{path}"

    def check_project(self, project: str) -> None:
        if project != self.project and project not in catalog.IMAGES:
            # GCE answers 404 for a project that does not exist / you cannot see.
            raise ApiError(404, f"The resource 'projects/{project}' was not found", "notFound")

    def check_zone(self, zone: str, resource: bool = False) -> None:
        """An unknown zone: zones.get and the zonal catalog answer 404; a request on instances or
        disks in it answers GCE's 400 "Invalid value for field 'zone': 'us-east1'. Unknown zone."
        (the wording users report from `gcloud compute instances create --zone us-east1`)."""
        if zone not in catalog.ZONES:
            if resource:
                raise invalid_field("zone", zone, "Unknown zone.")
            raise not_found(f"projects/{self.project}/zones/{zone}")

    def check_region(self, region: str) -> None:
        if region not in catalog.REGIONS:
            raise not_found(f"projects/{self.project}/regions/{region}")

    # ---- tables ------------------------------------------------------------------
    def instances(self, zone: str) -> dict:
        return self.state.setdefault("instances", {}).setdefault(zone, {})

    def disks(self, zone: str) -> dict:
        return self.state.setdefault("disks", {}).setdefault(zone, {})

    def firewalls(self) -> dict:
        return self.state.setdefault("firewalls", {})

    def operations(self) -> dict:
        return self.state.setdefault("operations", {})

    def get_instance(self, zone: str, name: str) -> dict:
        self.check_zone(zone, resource=True)
        inst = self.instances(zone).get(name)
        if inst is None:
            raise not_found(self.res_path(f"zones/{zone}/instances/{name}"))
        return inst

    def get_disk(self, zone: str, name: str) -> dict:
        self.check_zone(zone, resource=True)
        disk = self.disks(zone).get(name)
        if disk is None:
            raise not_found(self.res_path(f"zones/{zone}/disks/{name}"))
        return disk

    # ---- operations --------------------------------------------------------------
    def new_operation(self, op_type: str, target_link: str, target_id: str | None = None, *,
                      zone: str | None = None, region: str | None = None,
                      on_done: dict | None = None, error: list[dict] | None = None,
                      http_error: tuple[int, str] | None = None, user: str | None = None,
                      done: bool = False, status_message: str | None = None) -> dict:
        now = now_rfc3339()
        op_id = catalog.stable_id("op", str(time.time_ns()), os.urandom(4).hex())
        name = f"operation-{int(time.time() * 1000)}-{os.urandom(7).hex()[:13]}-{os.urandom(4).hex()[:8]}-" \
               f"{os.urandom(4).hex()[:8]}"
        if zone:
            scope = f"zones/{zone}"
        elif region:
            scope = f"regions/{region}"
        else:
            scope = "global"
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": op_id,
            "name": name,
            "operationType": op_type,
            "targetLink": target_link,
            "targetId": target_id or catalog.stable_id(target_link),
            "status": "RUNNING",
            "user": user or self.state.get("user", f"ansible@{self.project}.iam.gserviceaccount.com"),
            "progress": 0,
            "insertTime": now,
            "startTime": now,
            "selfLink": self.link(f"{scope}/operations/{name}"),
        }
        if zone:
            op["zone"] = self.link(f"zones/{zone}")
        if region:
            op["region"] = self.link(f"regions/{region}")
        if status_message:
            op["statusMessage"] = status_message
        delay = self.faults.operation_delay()
        op["_ready_at"] = time.time() + delay
        op["_on_done"] = on_done
        op["_error"] = error
        op["_http_error"] = list(http_error) if http_error else None
        self.operations()[name] = op
        if done:
            self._finish(op)
        return op

    def advance(self) -> bool:
        """Finish every operation whose time has come (called before each API request).
        Returns whether anything changed."""
        now = time.time()
        changed = False
        for op in list(self.operations().values()):
            if op["status"] != "DONE" and op["_ready_at"] <= now:
                self._finish(op)
                changed = True
        # Keep the operation table bounded.
        ops = self.operations()
        if len(ops) > 2000:
            for name in sorted(ops, key=lambda n: ops[n]["insertTime"])[:500]:
                if ops[name]["status"] == "DONE":
                    del ops[name]
        return changed

    def _finish(self, op: dict) -> None:
        if op.get("_error"):
            op["error"] = {"errors": op["_error"]}
            code, msg = op.get("_http_error") or (400, "BAD REQUEST")
            op["httpErrorStatusCode"] = code
            op["httpErrorMessage"] = msg
        else:
            action = op.get("_on_done")
            if action:
                self._apply(action)
        op["status"] = "DONE"
        op["progress"] = 100
        op["endTime"] = now_rfc3339()

    def _apply(self, action: dict) -> None:
        kind = action["action"]
        if kind == "instance_status":
            inst = self.instances(action["zone"]).get(action["name"])
            if inst is not None:
                inst["status"] = action["status"]
                if action["status"] == "RUNNING":
                    inst["lastStartTimestamp"] = now_rfc3339()
                elif action["status"] == "TERMINATED":
                    inst["lastStopTimestamp"] = now_rfc3339()
                    self.backend.on_stop(inst)
        elif kind == "delete_instance":
            self._delete_instance_now(action["zone"], action["name"])
        elif kind == "delete_disk":
            self.disks(action["zone"]).pop(action["name"], None)
        elif kind == "delete_firewall":
            self.firewalls().pop(action["name"], None)

    def op_response(self, op: dict) -> tuple[int, dict]:
        return 200, public(op)

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
        preemptible = sched.get("preemptible") or sched.get("provisioningModel") == "SPOT"
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

    # ================================================================================
    # Catalog resources
    # ================================================================================
    def zone_resource(self, zone: str) -> dict:
        region = catalog.region_of(zone)
        return {
            "kind": "compute#zone", "id": catalog.stable_id("zone", zone),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": zone, "description": zone,
            "status": "UP", "region": self.link(f"regions/{region}"), "selfLink": self.link(f"zones/{zone}"),
            "availableCpuPlatforms": ["Intel Cascade Lake", "Intel Ice Lake", "Intel Skylake", "Intel Broadwell",
                                      "Intel Haswell", "AMD Milan", "AMD Rome"],
            "supportsPzs": False,
        }

    def region_resource(self, region: str) -> dict:
        return {
            "kind": "compute#region", "id": catalog.stable_id("region", region),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": region,
            "description": region, "status": "UP",
            "zones": [self.link(f"zones/{z}") for z in catalog.zones_of(region)],
            "quotas": self.quotas_list(region),
            "selfLink": self.link(f"regions/{region}"), "supportsPzs": False,
        }

    def machine_type_resource(self, zone: str, name: str) -> dict:
        mt = catalog.MACHINE_TYPES[name]
        res = {
            "kind": "compute#machineType", "id": catalog.stable_id("mt", name),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": name,
            "description": catalog.machine_type_description(name),
            "guestCpus": mt["cpus"], "memoryMb": mt["mem"], "imageSpaceGb": 0,
            "maximumPersistentDisks": 128, "maximumPersistentDisksSizeGb": "263168",
            "zone": zone, "selfLink": self.link(f"zones/{zone}/machineTypes/{name}"),
            "isSharedCpu": bool(mt.get("shared")), "architecture": "X86_64",
        }
        if mt.get("gpu"):
            res["accelerators"] = [{"guestAcceleratorType": mt["gpu"][0], "guestAcceleratorCount": mt["gpu"][1]}]
        return res

    def accelerator_resource(self, zone: str, name: str) -> dict:
        acc = catalog.ACCELERATORS[name]
        return {
            "kind": "compute#acceleratorType", "id": catalog.stable_id("acc", name),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": name,
            "description": acc["description"], "zone": self.link(f"zones/{zone}"),
            "selfLink": self.link(f"zones/{zone}/acceleratorTypes/{name}"),
            "maximumCardsPerInstance": acc["max"],
        }

    def disk_type_resource(self, zone: str, name: str) -> dict:
        dt = catalog.DISK_TYPES[name]
        return {
            "kind": "compute#diskType", "id": catalog.stable_id("dt", name),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": name,
            "description": dt["description"], "validDiskSize": "10GB-65536GB",
            "zone": self.link(f"zones/{zone}"), "selfLink": self.link(f"zones/{zone}/diskTypes/{name}"),
            "defaultDiskSizeGb": dt["default"].rstrip("GB"),
        }

    def image_resource(self, project: str, family: str, info: dict) -> dict:
        name = catalog.image_name(family, info)
        res = {
            "kind": "compute#image", "id": catalog.stable_id("image", project, name),
            "creationTimestamp": f"{info['date'][:4]}-{info['date'][4:6]}-{info['date'][6:]}T10:00:00.000-08:00",
            "name": name, "description": f"{family} image built on {info['date']}",
            "sourceType": "RAW", "status": "READY", "archiveSizeBytes": str(info["size"] * 180000000),
            "diskSizeGb": str(info["size"]), "family": family,
            "selfLink": self.link(f"global/images/{name}", project),
            "labels": {}, "labelFingerprint": "42WmSpB8rSM=",
            "guestOsFeatures": [{"type": "UEFI_COMPATIBLE"}, {"type": "VIRTIO_SCSI_MULTIQUEUE"},
                                {"type": "GVNIC"}, {"type": "SEV_CAPABLE"}],
            "licenses": [self.link(f"global/licenses/{family}", project)],
            "storageLocations": ["eu", "asia", "us"], "architecture": "X86_64",
        }
        if info.get("deprecated"):
            repl = info.get("replacement")
            res["deprecated"] = {"state": "DEPRECATED"}
            if repl:
                rinfo = catalog.IMAGES[project][repl]
                res["deprecated"]["replacement"] = self.link(
                    f"global/images/{catalog.image_name(repl, rinfo)}", project)
        return res

    def resolve_image(self, ref: str, field: str) -> dict:
        project, rest = parse_ref(ref)
        # gcloud's default image flags send the family view itself: zones/-/imageFamilyViews/F.
        rest = re.sub(r"^zones/[^/]+/imageFamilyViews/", "global/images/family/", rest)
        m = re.match(r"^global/images/(family/)?([^/]+)$", rest)
        if not project or not m:
            raise invalid_field(field, ref, "The referenced image resource cannot be found.")
        if project in catalog.IMAGES:
            if m.group(1):
                info = catalog.IMAGES[project].get(m.group(2))
                if info:
                    return self.image_resource(project, m.group(2), info)
            else:
                found = catalog.find_image(project, m.group(2))
                if found:
                    return self.image_resource(project, found[0], found[1])
        what = f"projects/{project}/global/images/{'family/' if m.group(1) else ''}{m.group(2)}"
        # GCE: "The resource 'projects/debian-cloud/global/images/family/debian-99' was not found"
        raise not_found(what)

    def _list(self, items: list[dict], query: dict, kind: str, self_link: str) -> dict:
        pred = compile_filter(query.get("filter"))
        items = [i for i in items if pred(i)]
        page, token = _paginate(items, query)
        out: dict[str, Any] = {"kind": kind, "id": self_link.split("/compute/v1/", 1)[1],
                               "items": page, "selfLink": self_link}
        if token:
            out["nextPageToken"] = token
        if not page:
            del out["items"]
        return out

    def _aggregated(self, scoped: dict[str, list[dict]], query: dict, kind: str, key: str,
                    self_link: str) -> dict:
        pred = compile_filter(query.get("filter"))
        flat = [(scope, item) for scope in sorted(scoped) for item in scoped[scope] if pred(item)]
        page, token = _paginate(flat, query)
        items: dict[str, Any] = {}
        for scope in sorted(scoped):
            entries = [i for s, i in page if s == scope]
            if entries:
                items[scope] = {key: entries}
            else:
                items[scope] = {"warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": f"There are no results for scope '{scope}' on this page.",
                    "data": [{"key": "scope", "value": scope}]}}
        out: dict[str, Any] = {"kind": kind, "id": self_link.split("/compute/v1/", 1)[1],
                               "items": items, "selfLink": self_link}
        if token:
            out["nextPageToken"] = token
        return out

    # ================================================================================
    # Handlers (method id -> function)
    # ================================================================================
    def handlers(self) -> dict[str, Callable[..., tuple[int, dict]]]:
        h = {}
        for name in dir(self):
            if name.startswith("h_"):
                h["compute." + name[2:].replace("__", ".")] = getattr(self, name)
        return h

    # ---- projects ------------------------------------------------------------------
    def project_resource(self) -> dict:
        meta = self.state.setdefault("common_metadata", {"kind": "compute#metadata",
                                                         "fingerprint": new_fingerprint(), "items": []})
        return {
            "kind": "compute#project", "id": self.number, "creationTimestamp": self.state["created"],
            "name": self.project, "commonInstanceMetadata": public(meta),
            "quotas": self.quotas_list(None), "selfLink": self.link("")[:-1],
            "defaultServiceAccount": f"{self.number}-compute@developer.gserviceaccount.com",
            "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS", "defaultNetworkTier": "PREMIUM",
            "vmDnsSetting": "ZONAL_ONLY",
        }

    def h_projects__get(self, p, q, body):
        self.check_project(p["project"])
        if p["project"] != self.project:
            raise ApiError(403, f"Required 'compute.projects.get' permission for 'projects/{p['project']}'",
                           "forbidden")
        return 200, self.project_resource()

    def h_projects__setCommonInstanceMetadata(self, p, q, body):
        meta = self.state.setdefault("common_metadata", {"kind": "compute#metadata",
                                                         "fingerprint": new_fingerprint(), "items": []})
        if not same_fingerprint(body.get("fingerprint"), meta["fingerprint"]):
            raise fingerprint_mismatch()
        meta["items"] = body.get("items", [])
        meta["fingerprint"] = new_fingerprint()
        for zone in catalog.ZONES:
            for inst in self.instances(zone).values():
                self._metadata_changed(inst)
        op = self.new_operation("compute.projects.setCommonInstanceMetadata", self.link("")[:-1], self.number)
        return self.op_response(op)

    # ---- zones / regions -------------------------------------------------------------
    def h_zones__list(self, p, q, body):
        return 200, self._list([self.zone_resource(z) for z in catalog.ZONES], q, "compute#zoneList",
                               self.link("zones"))

    def h_zones__get(self, p, q, body):
        self.check_zone(p["zone"])
        return 200, self.zone_resource(p["zone"])

    def h_regions__list(self, p, q, body):
        return 200, self._list([self.region_resource(r) for r in catalog.REGIONS], q, "compute#regionList",
                               self.link("regions"))

    def h_regions__get(self, p, q, body):
        self.check_region(p["region"])
        return 200, self.region_resource(p["region"])

    # ---- machine / accelerator / disk types ----------------------------------------------
    def h_machineTypes__list(self, p, q, body):
        z = p["zone"]
        self.check_zone(z)
        return 200, self._list([self.machine_type_resource(z, n) for n in catalog.machine_types_in(z)], q,
                               "compute#machineTypeList", self.link(f"zones/{z}/machineTypes"))

    def h_machineTypes__get(self, p, q, body):
        z, n = p["zone"], p["machineType"]
        self.check_zone(z)
        if n not in catalog.machine_types_in(z):
            raise not_found(self.res_path(f"zones/{z}/machineTypes/{n}"))
        return 200, self.machine_type_resource(z, n)

    def h_machineTypes__aggregatedList(self, p, q, body):
        scoped = {f"zones/{z}": [self.machine_type_resource(z, n) for n in catalog.machine_types_in(z)]
                  for z in catalog.ZONES}
        return 200, self._aggregated(scoped, q, "compute#machineTypeAggregatedList", "machineTypes",
                                     self.link("aggregated/machineTypes"))

    def h_acceleratorTypes__list(self, p, q, body):
        z = p["zone"]
        self.check_zone(z)
        return 200, self._list([self.accelerator_resource(z, n) for n in catalog.ZONES[z]], q,
                               "compute#acceleratorTypeList", self.link(f"zones/{z}/acceleratorTypes"))

    def h_acceleratorTypes__get(self, p, q, body):
        z, n = p["zone"], p["acceleratorType"]
        self.check_zone(z)
        if n not in catalog.ZONES[z]:
            raise not_found(self.res_path(f"zones/{z}/acceleratorTypes/{n}"))
        return 200, self.accelerator_resource(z, n)

    def h_acceleratorTypes__aggregatedList(self, p, q, body):
        scoped = {f"zones/{z}": [self.accelerator_resource(z, n) for n in catalog.ZONES[z]] for z in catalog.ZONES}
        return 200, self._aggregated(scoped, q, "compute#acceleratorTypeAggregatedList", "acceleratorTypes",
                                     self.link("aggregated/acceleratorTypes"))

    def h_diskTypes__list(self, p, q, body):
        z = p["zone"]
        self.check_zone(z)
        return 200, self._list([self.disk_type_resource(z, n) for n in catalog.DISK_TYPES], q,
                               "compute#diskTypeList", self.link(f"zones/{z}/diskTypes"))

    def h_diskTypes__get(self, p, q, body):
        z, n = p["zone"], p["diskType"]
        self.check_zone(z)
        if n not in catalog.DISK_TYPES:
            raise not_found(self.res_path(f"zones/{z}/diskTypes/{n}"))
        return 200, self.disk_type_resource(z, n)

    # ---- images ----------------------------------------------------------------------
    def h_images__get(self, p, q, body):
        found = catalog.find_image(p["project"], p["image"])
        if not found:
            raise not_found(f"projects/{p['project']}/global/images/{p['image']}")
        return 200, self.image_resource(p["project"], *found)

    def h_images__getFromFamily(self, p, q, body):
        info = catalog.IMAGES.get(p["project"], {}).get(p["family"])
        if not info:
            raise not_found(f"projects/{p['project']}/global/images/family/{p['family']}")
        return 200, self.image_resource(p["project"], p["family"], info)

    def h_imageFamilyViews__get(self, p, q, body):
        """What gcloud asks for its default image flags (`--image-project debian-cloud
        --image-family debian-12`, or none): projects/P/zones/-/imageFamilyViews/F."""
        if p["zone"] != "-":
            self.check_zone(p["zone"])
        info = catalog.IMAGES.get(p["project"], {}).get(p["family"])
        if not info:
            raise not_found(f"projects/{p['project']}/zones/{p['zone']}/imageFamilyViews/{p['family']}")
        return 200, {"image": self.image_resource(p["project"], p["family"], info)}

    def h_images__list(self, p, q, body):
        items = [self.image_resource(p["project"], f, i) for f, i in catalog.IMAGES.get(p["project"], {}).items()]
        return 200, self._list(items, q, "compute#imageList", self.link("global/images", p["project"]))

    # ---- networks --------------------------------------------------------------------
    def network_resource(self) -> dict:
        return {
            "kind": "compute#network", "id": catalog.stable_id("net", self.project, "default"),
            "creationTimestamp": self.state["created"], "name": "default",
            "description": "Default network for the project", "selfLink": self.link("global/networks/default"),
            "selfLinkWithId": self.link(f"global/networks/{catalog.stable_id('net', self.project, 'default')}"),
            "autoCreateSubnetworks": True,
            "subnetworks": [self.link(f"regions/{r}/subnetworks/default") for r in catalog.REGIONS],
            "routingConfig": {"routingMode": "REGIONAL"},
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL",
        }

    def subnetwork_resource(self, region: str) -> dict:
        cidr = catalog.SUBNET_RANGES[region]
        gw = cidr.split("/")[0].rsplit(".", 1)[0] + ".1"
        return {
            "kind": "compute#subnetwork", "id": catalog.stable_id("subnet", self.project, region),
            "creationTimestamp": self.state["created"], "name": "default",
            "network": self.link("global/networks/default"), "ipCidrRange": cidr, "gatewayAddress": gw,
            "region": self.link(f"regions/{region}"), "selfLink": self.link(f"regions/{region}/subnetworks/default"),
            "privateIpGoogleAccess": False, "fingerprint": "ExAmPlE1234=", "stackType": "IPV4_ONLY",
            "purpose": "PRIVATE",
        }

    def h_networks__get(self, p, q, body):
        if p["network"] != "default":
            raise not_found(self.res_path(f"global/networks/{p['network']}"))
        return 200, self.network_resource()

    def h_networks__list(self, p, q, body):
        return 200, self._list([self.network_resource()], q, "compute#networkList", self.link("global/networks"))

    def h_subnetworks__get(self, p, q, body):
        self.check_region(p["region"])
        if p["subnetwork"] != "default":
            raise not_found(self.res_path(f"regions/{p['region']}/subnetworks/{p['subnetwork']}"))
        return 200, self.subnetwork_resource(p["region"])

    def h_subnetworks__list(self, p, q, body):
        self.check_region(p["region"])
        return 200, self._list([self.subnetwork_resource(p["region"])], q, "compute#subnetworkList",
                               self.link(f"regions/{p['region']}/subnetworks"))

    def resolve_network(self, ref: str, field: str) -> str:
        project, rest = parse_ref(ref)
        m = re.match(r"^global/networks/([^/]+)$", rest)
        if not m or (project and project != self.project):
            raise invalid_field(field, ref, "The referenced network resource cannot be found.")
        if m.group(1) != "default":
            raise not_found(self.res_path(f"global/networks/{m.group(1)}"))
        return self.link("global/networks/default")

    # ---- operations ------------------------------------------------------------------
    def _get_op(self, scope: str, name: str) -> dict:
        op = self.operations().get(name)
        if op is None or not op["selfLink"].endswith(f"{scope}/operations/{name}"):
            raise not_found(self.res_path(f"{scope}/operations/{name}"))
        return op

    def _wait_op(self, scope: str, name: str, q: dict) -> tuple[int, dict]:
        op = self._get_op(scope, name)
        if op["status"] != "DONE":
            remaining = op["_ready_at"] - time.time()
            waited = float(q.get("_waited", 0))
            if remaining > 0 and waited < 120:   # real wait returns after at most ~2 minutes
                raise RetryAfter(min(remaining, 120 - waited))
            if remaining <= 0:
                self._finish(op)
        return self.op_response(op)

    def h_zoneOperations__get(self, p, q, body):
        return self.op_response(self._get_op(f"zones/{p['zone']}", p["operation"]))

    def h_zoneOperations__wait(self, p, q, body):
        return self._wait_op(f"zones/{p['zone']}", p["operation"], q)

    def h_zoneOperations__list(self, p, q, body):
        scope = f"zones/{p['zone']}"
        items = [public(o) for o in self.operations().values() if f"/{scope}/operations/" in o["selfLink"]]
        return 200, self._list(items, q, "compute#operationList", self.link(f"{scope}/operations"))

    def h_zoneOperations__delete(self, p, q, body):
        op = self._get_op(f"zones/{p['zone']}", p["operation"])
        del self.operations()[op["name"]]
        return 204, {}

    def h_regionOperations__get(self, p, q, body):
        return self.op_response(self._get_op(f"regions/{p['region']}", p["operation"]))

    def h_regionOperations__wait(self, p, q, body):
        return self._wait_op(f"regions/{p['region']}", p["operation"], q)

    def h_globalOperations__get(self, p, q, body):
        return self.op_response(self._get_op("global", p["operation"]))

    def h_globalOperations__wait(self, p, q, body):
        return self._wait_op("global", p["operation"], q)

    def h_globalOperations__list(self, p, q, body):
        items = [public(o) for o in self.operations().values() if "/global/operations/" in o["selfLink"]]
        return 200, self._list(items, q, "compute#operationList", self.link("global/operations"))

    # ---- instances: create ------------------------------------------------------------
    def _resolve_machine_type(self, ref: Any, zone: str, field: str = "resource.machineType") -> str:
        if not isinstance(ref, str) or not ref:
            raise invalid_field(field, ref or "", "Machine type must be specified.")
        project, rest = parse_ref(ref)
        m = re.match(r"^(?:zones/([^/]+)/machineTypes/)?([^/]+)$", rest)
        if not m:
            raise invalid_field(field, ref, "Invalid machine type URL.")
        mzone, name = m.group(1) or zone, m.group(2)
        if mzone != zone:
            raise invalid_field(field, ref, f"Machine type must be in zone '{zone}'.")
        if name not in catalog.machine_types_in(zone):
            # GCE wording: "Machine type with name 'x' does not exist in zone 'z'."
            raise invalid_field(field, ref, f"Machine type with name '{name}' does not exist in zone '{zone}'.")
        return name

    def _resolve_accelerators(self, accels: list, zone: str, machine: str, field: str) -> list[dict]:
        mt = catalog.MACHINE_TYPES[machine]
        out = []
        family = mt["family"]
        if accels and family != "n1":
            # GCE refuses GPUs on machine families that do not take attached GPUs; for A2/G2 the
            # GPUs are part of the machine type ("[a2-highgpu-1g, nvidia-tesla-t4] features are not
            # compatible for creating instance." is the text users report).
            names = ", ".join(parse_ref(a.get("acceleratorType", ""))[1].rsplit("/", 1)[-1] for a in accels)
            if mt.get("gpu"):
                raise invalid_field(f"{field}[0].acceleratorType", accels[0].get("acceleratorType", ""),
                                    f"[{machine}, {names}] features are not compatible for creating instance. "
                                    f"Machine type {machine} has built-in accelerators "
                                    f"({mt['gpu'][1]} x {mt['gpu'][0]}); guestAccelerators must not be set.")
            raise invalid_field(f"{field}[0].acceleratorType", accels[0].get("acceleratorType", ""),
                                f"[{machine}, {names}] features are not compatible for creating instance. "
                                f"Accelerators can only be attached to N1 machine types.")
        for i, acc in enumerate(accels):
            ref = acc.get("acceleratorType", "")
            project, rest = parse_ref(ref)
            m = re.match(r"^(?:zones/([^/]+)/acceleratorTypes/)?([^/]+)$", rest)
            if not m:
                raise invalid_field(f"{field}[{i}].acceleratorType", ref, "Invalid accelerator type URL.")
            azone, name = m.group(1) or zone, m.group(2)
            if azone != zone or name not in catalog.ZONES.get(zone, []):
                raise invalid_field(f"{field}[{i}].acceleratorType", ref,
                                    f"Accelerator type '{name}' is not available in zone '{zone}'.")
            info = catalog.ACCELERATORS[name]
            count = int(acc.get("acceleratorCount", 0))
            if not info["counts"]:
                raise invalid_field(f"{field}[{i}].acceleratorType", ref,
                                    f"Accelerator type '{name}' is only available built into its accelerator-"
                                    f"optimized machine types (A2/G2) and cannot be attached.")
            if count not in info["counts"] or count > info["max"]:
                raise invalid_field(f"{field}[{i}].acceleratorCount", count,
                                    f"Accelerator count {count} is not valid for accelerator type '{name}'. "
                                    f"Valid values: {info['counts']}.")
            limit = catalog.N1_MAX_VCPUS.get(name, {}).get(count)
            if limit is not None and mt["cpus"] > limit:
                # GCE's wording (public issue threads quote it verbatim).
                raise bad_request(f"At most {limit} vCPUs can be used along with {count} accelerator cards in an "
                                  "instance.", "invalid")
            out.append({"acceleratorType": self.link(f"zones/{zone}/acceleratorTypes/{name}"),
                        "acceleratorCount": count})
        if mt.get("gpu"):
            out = [{"acceleratorType": self.link(f"zones/{zone}/acceleratorTypes/{mt['gpu'][0]}"),
                    "acceleratorCount": mt["gpu"][1]}]
        return out

    def _resolve_disk_type(self, ref: str | None, zone: str, field: str) -> str:
        if not ref:
            return "pd-standard"
        project, rest = parse_ref(ref)
        m = re.match(r"^(?:zones/([^/]+)/diskTypes/)?([^/]+)$", rest)
        if not m or (m.group(1) and m.group(1) != zone) or m.group(2) not in catalog.DISK_TYPES:
            raise invalid_field(field, ref, "The referenced diskType resource cannot be found.")
        return m.group(2)

    def _scheduling(self, sched: dict, has_gpu: bool) -> dict:
        out = dict(sched)
        spot = out.get("provisioningModel") == "SPOT"
        preemptible = bool(out.get("preemptible")) or spot
        out.setdefault("provisioningModel", "SPOT" if spot else "STANDARD")
        out.setdefault("preemptible", False)
        if preemptible:
            if out.get("automaticRestart") is True:
                # GCE: "Invalid value for field 'resource.scheduling.automaticRestart': 'true'.
                # Preemptible instances cannot be automatically restarted."
                raise invalid_field("resource.scheduling.automaticRestart", True,
                                    "Preemptible instances cannot be automatically restarted.")
            if out.get("onHostMaintenance") == "MIGRATE":
                raise invalid_field("resource.scheduling.onHostMaintenance", "MIGRATE",
                                    "Scheduling must have preemptible be false when OnHostMaintenance isn't TERMINATE.")
            out.setdefault("automaticRestart", False)
            out.setdefault("onHostMaintenance", "TERMINATE")
            if spot:
                out.setdefault("instanceTerminationAction", "STOP")
        else:
            if out.get("instanceTerminationAction"):
                raise invalid_field("resource.scheduling.instanceTerminationAction",
                                    out["instanceTerminationAction"],
                                    "instanceTerminationAction is only supported for SPOT VMs "
                                    "(or VMs with maxRunDuration/terminationTime).")
            out.setdefault("automaticRestart", True)
            out.setdefault("onHostMaintenance", "MIGRATE")
        if has_gpu and out["onHostMaintenance"] != "TERMINATE":
            # GCE (400): "Instances with guest accelerators do not support live migration."
            raise bad_request("Instances with guest accelerators do not support live migration.")
        return out

    def h_instances__insert(self, p, q, body):
        zone = p["zone"]
        self.check_project(p["project"])
        self.check_zone(zone, resource=True)
        name = body.get("name")
        check_name(name)
        if name in self.instances(zone):
            raise already_exists(self.res_path(f"zones/{zone}/instances/{name}"))
        machine = self._resolve_machine_type(body.get("machineType"), zone)
        check_labels(body.get("labels"), "resource.labels")
        for i, tag in enumerate((body.get("tags") or {}).get("items") or []):
            if not NAME_RE.match(tag):
                raise invalid_field(f"resource.tags.items[{i}]", tag, "Must be a match of regex '[a-z]([-a-z0-9]*[a-z0-9])?'")
        accels = self._resolve_accelerators(body.get("guestAccelerators") or [], zone, machine,
                                            "resource.guestAccelerators")
        scheduling = self._scheduling(body.get("scheduling") or {}, bool(accels))

        # --- disks
        disks_in = body.get("disks") or []
        if not disks_in or not any(d.get("boot") for d in disks_in):
            if disks_in and len(disks_in) >= 1 and not any(d.get("boot") for d in disks_in):
                disks_in = [dict(disks_in[0], boot=True)] + disks_in[1:]
            else:
                raise invalid_field("resource.disks", "", "At least one boot disk must be specified.")
        new_disks: list[dict] = []
        attached: list[dict] = []
        now = now_rfc3339()
        inst_link = self.link(f"zones/{zone}/instances/{name}")
        for i, d in enumerate(disks_in):
            field = f"resource.disks[{i}]"
            boot = bool(d.get("boot"))
            if d.get("source"):
                sproject, rest = parse_ref(d["source"])
                m = re.match(r"^zones/([^/]+)/disks/([^/]+)$", rest)
                if not m or m.group(1) != zone:
                    raise invalid_field(f"{field}.source", d["source"], "The referenced disk resource cannot be found.")
                disk = self.disks(zone).get(m.group(2))
                if disk is None:
                    raise not_found(self.res_path(f"zones/{zone}/disks/{m.group(2)}"))
                if disk.get("users") and d.get("mode", "READ_WRITE") == "READ_WRITE":
                    res = self.res_path(f"zones/{zone}/disks/{m.group(2)}")
                    user = self.res_path(parse_ref(disk["users"][0])[1])
                    raise ApiError(400, f"The disk resource '{res}' is already being used by '{user}'",
                                   "resourceInUseByAnotherResource")
                new = False
            elif d.get("initializeParams") is not None:
                ip = d["initializeParams"]
                dname = ip.get("diskName") or (name if boot else f"{name}-{i}")
                check_name(dname, f"{field}.initializeParams.diskName")
                if dname in self.disks(zone) or any(nd["name"] == dname for nd in new_disks):
                    raise already_exists(self.res_path(f"zones/{zone}/disks/{dname}"))
                image = None
                if ip.get("sourceImage"):
                    image = self.resolve_image(ip["sourceImage"], f"{field}.initializeParams.sourceImage")
                elif boot:
                    raise invalid_field(f"{field}.initializeParams.sourceImage", "",
                                        "Boot disk must be created from an image or snapshot.")
                dtype = self._resolve_disk_type(ip.get("diskType"), zone, f"{field}.initializeParams.diskType")
                size = int(ip.get("diskSizeGb") or (image["diskSizeGb"] if image else 10))
                if image and size < int(image["diskSizeGb"]):
                    # SkyPilot matches GCE's text "Requested disk size cannot be smaller than the image size".
                    raise invalid_field(f"{field}.initializeParams.diskSizeGb", size,
                                        f"Requested disk size cannot be smaller than the image size "
                                        f"({image['diskSizeGb']} GB)")
                if size < catalog.DISK_TYPES[dtype]["min"] or size > 65536:
                    raise invalid_field(f"{field}.initializeParams.diskSizeGb", size,
                                        "Disk size must be between 10 GB and 65536 GB.")
                check_labels(ip.get("labels"), f"{field}.initializeParams.labels")
                disk = self._disk_record(zone, dname, size, dtype, image, ip.get("labels") or {})
                new_disks.append(disk)
                new = True
            else:
                raise invalid_field(field, "", "Either source or initializeParams must be specified.")
            attached.append({
                "kind": "compute#attachedDisk", "type": d.get("type", "PERSISTENT"),
                "mode": d.get("mode", "READ_WRITE"), "source": disk["selfLink"],
                "deviceName": d.get("deviceName") or (f"persistent-disk-{i}" if new else disk["name"]),
                "index": i, "boot": boot,
                "autoDelete": bool(d.get("autoDelete", new)) if "autoDelete" in d else new,
                "interface": d.get("interface", "SCSI"), "diskSizeGb": disk["sizeGb"],
                "architecture": "X86_64",
                **({"licenses": disk["licenses"]} if disk.get("licenses") else {}),
                **({"guestOsFeatures": disk["guestOsFeatures"]} if disk.get("guestOsFeatures") else {}),
            })

        # --- network interfaces
        nics_in = body.get("networkInterfaces") or []
        if not nics_in:
            raise invalid_field("resource.networkInterfaces", "", "At least one network interface is required.")
        nics = []
        region = catalog.region_of(zone)
        for i, nic in enumerate(nics_in):
            field = f"resource.networkInterfaces[{i}]"
            if nic.get("subnetwork") and not nic.get("network"):
                network = self.link("global/networks/default")
            else:
                network = self.resolve_network(nic.get("network") or "global/networks/default", f"{field}.network")
            subnet = self.link(f"regions/{region}/subnetworks/default")
            if nic.get("subnetwork"):
                sp, srest = parse_ref(nic["subnetwork"])
                if not re.match(rf"^(regions/{region}/subnetworks/)?default$", srest):
                    raise invalid_field(f"{field}.subnetwork", nic["subnetwork"],
                                        "The referenced subnetwork resource cannot be found.")
            acs = []
            for j, ac in enumerate(nic.get("accessConfigs") or []):
                if ac.get("type", "ONE_TO_ONE_NAT") != "ONE_TO_ONE_NAT":
                    raise invalid_field(f"{field}.accessConfigs[{j}].type", ac["type"], "Unsupported access config type.")
                acs.append({"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT",
                            "name": ac.get("name", "External NAT"),
                            "networkTier": ac.get("networkTier", "PREMIUM"), "_wants_ip": True,
                            **({"natIP": ac["natIP"], "_static": True} if ac.get("natIP") else {})})
            nics.append({"kind": "compute#networkInterface", "network": network, "subnetwork": subnet,
                         "name": f"nic{i}", "fingerprint": new_fingerprint(), "stackType": "IPV4_ONLY",
                         "accessConfigs": acs, **({"nicType": nic["nicType"]} if nic.get("nicType") else {}),
                         **({"_networkIP": nic["networkIP"]} if nic.get("networkIP") else {})})

        sas = []
        for sa in body.get("serviceAccounts") or []:
            email = sa.get("email", "default")
            if email == "default":
                email = f"{self.number}-compute@developer.gserviceaccount.com"
            sas.append({"email": email, "scopes": list(sa.get("scopes") or [])})

        metadata = body.get("metadata") or {}
        inst_id = catalog.stable_id("instance", zone, name, str(time.time_ns()))
        inst: dict[str, Any] = {
            "kind": "compute#instance", "id": inst_id, "creationTimestamp": now, "name": name,
            "description": body.get("description", ""),
            "tags": {"items": list((body.get("tags") or {}).get("items") or []), "fingerprint": new_fingerprint()},
            "machineType": self.link(f"zones/{zone}/machineTypes/{machine}"),
            "status": "PROVISIONING", "zone": self.link(f"zones/{zone}"),
            "canIpForward": bool(body.get("canIpForward", False)),
            "networkInterfaces": nics, "disks": attached,
            "metadata": {"kind": "compute#metadata", "fingerprint": new_fingerprint(),
                         "items": list(metadata.get("items") or [])},
            "serviceAccounts": sas,
            "selfLink": inst_link, "scheduling": scheduling,
            "cpuPlatform": "Unknown CPU Platform",
            "labels": dict(body.get("labels") or {}), "labelFingerprint": new_fingerprint(),
            "startRestricted": False, "deletionProtection": bool(body.get("deletionProtection", False)),
            "shieldedInstanceConfig": body.get("shieldedInstanceConfig") or {
                "enableSecureBoot": False, "enableVtpm": True, "enableIntegrityMonitoring": True},
            "shieldedInstanceIntegrityPolicy": {"updateAutoLearnPolicy": True},
            "fingerprint": new_fingerprint(), "lastStartTimestamp": now,
            "satisfiesPzi": True,
        }
        if accels:
            inst["guestAccelerators"] = accels
        if not inst["tags"]["items"]:
            del inst["tags"]["items"]
        if not inst["metadata"]["items"]:
            del inst["metadata"]["items"]
        if not inst["labels"]:
            del inst["labels"]
        for key in ("hostname", "minCpuPlatform", "confidentialInstanceConfig", "advancedMachineFeatures",
                    "reservationAffinity", "displayDevice", "resourcePolicies", "params"):
            if body.get(key) is not None:
                inst[key] = body[key]

        # --- capacity and quota: refused as errors of the insert operation, like GCE
        errors = self.capacity_errors(zone, inst)
        if not errors:
            need = self.instance_needs(inst, include_static=True)
            for disk in new_disks:
                metric = "SSD_TOTAL_GB" if catalog.DISK_TYPES[disk["type"].rsplit("/", 1)[-1]]["ssd"] \
                    else "DISKS_TOTAL_GB"
                need[metric] = need.get(metric, 0) + int(disk["sizeGb"])
            errors = self.quota_errors(region, need)
        if errors:
            http = (403, "FORBIDDEN") if errors[0]["code"] == "QUOTA_EXCEEDED" else (503, "SERVICE UNAVAILABLE")
            op = self.new_operation("insert", inst_link, inst_id, zone=zone, error=errors, http_error=http)
            return self.op_response(op)

        addrs = self.backend.on_create(public(inst), external=any(n["accessConfigs"] for n in nics))
        for i, nic in enumerate(nics):
            nic["networkIP"] = nic.pop("_networkIP", None) or (addrs.internal_ip if i == 0 else addrs.internal_ip)
            for ac in nic["accessConfigs"]:
                if not ac.get("natIP") and i == 0 and addrs.external_ip:
                    ac["natIP"] = addrs.external_ip
        for disk in new_disks:
            disk["users"] = [inst_link]
            disk["lastAttachTimestamp"] = now
            self.disks(zone)[disk["name"]] = disk
        for a in attached:
            dname = a["source"].rsplit("/", 1)[-1]
            disk = self.disks(zone)[dname]
            if inst_link not in disk.setdefault("users", []):
                disk["users"].append(inst_link)
        self.instances(zone)[name] = inst
        op = self.new_operation("insert", inst_link, inst_id, zone=zone,
                                on_done={"action": "instance_status", "zone": zone, "name": name,
                                         "status": "RUNNING"})
        inst["status"] = "STAGING" if op["status"] != "DONE" else inst["status"]
        return self.op_response(op)

    def _disk_record(self, zone: str, name: str, size: int, dtype: str, image: dict | None,
                     labels: dict) -> dict:
        disk: dict[str, Any] = {
            "kind": "compute#disk", "id": catalog.stable_id("disk", zone, name, str(time.time_ns())),
            "creationTimestamp": now_rfc3339(), "name": name, "sizeGb": str(size),
            "zone": self.link(f"zones/{zone}"), "status": "READY",
            "selfLink": self.link(f"zones/{zone}/disks/{name}"),
            "type": self.link(f"zones/{zone}/diskTypes/{dtype}"),
            "labelFingerprint": new_fingerprint(), "physicalBlockSizeBytes": "4096",
            "architecture": "X86_64",
        }
        if labels:
            disk["labels"] = dict(labels)
        if image:
            disk["sourceImage"] = image["selfLink"]
            disk["sourceImageId"] = image["id"]
            disk["licenses"] = image.get("licenses", [])
            disk["guestOsFeatures"] = image.get("guestOsFeatures", [])
        return disk

    # ---- instances: read ---------------------------------------------------------------
    def h_instances__get(self, p, q, body):
        return 200, public(self.get_instance(p["zone"], p["instance"]))

    def h_instances__list(self, p, q, body):
        self.check_zone(p["zone"], resource=True)
        items = [public(i) for i in self.instances(p["zone"]).values()]
        return 200, self._list(items, q, "compute#instanceList", self.link(f"zones/{p['zone']}/instances"))

    def h_instances__aggregatedList(self, p, q, body):
        scoped = {f"zones/{z}": [public(i) for i in self.instances(z).values()] for z in catalog.ZONES}
        return 200, self._aggregated(scoped, q, "compute#instanceAggregatedList", "instances",
                                     self.link("aggregated/instances"))

    def h_instances__getSerialPortOutput(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        console = getattr(self.backend, "console", None)
        contents = console(public(inst)) if console else f"{inst['name']} (sandbox): no console\n"
        # `start` is a byte offset into the port's buffer; GCE keeps the last 1 MB.
        data = contents.encode()
        start = max(0, min(int(q.get("start") or 0), len(data)))
        if len(data) - start > 1024 * 1024:
            start = len(data) - 1024 * 1024
        return 200, {"kind": "compute#serialPortOutput", "contents": data[start:].decode(errors="replace"),
                     "start": str(start), "next": str(len(data)), "selfLink": inst["selfLink"] + "/serialPort"}

    def h_instances__getGuestAttributes(self, p, q, body):
        """Only the `hostkeys/` namespace, which the guest agent fills with the SSH host keys when
        the instance's metadata has enable-guest-attributes=TRUE (gcloud reads it to pin them)."""
        inst = self.get_instance(p["zone"], p["instance"])
        query = q.get("queryPath") or ""
        items = metadata_value(inst, "enable-guest-attributes").upper() == "TRUE" and \
            inst["status"] == "RUNNING" and getattr(self.backend, "host_keys", None)
        items = [i for i in (items(public(inst)) if items else []) if f"{i['namespace']}/".startswith(query)
                 or f"{i['namespace']}/{i['key']}" == query]
        if not items:
            # GCE answers an empty or disabled namespace with 404.
            raise not_found(self.res_path(f"zones/{p['zone']}/instances/{inst['name']}/guestAttributes/{query}"))
        return 200, {"kind": "compute#guestAttributes", "queryPath": query, "queryValue": {"items": items},
                     "selfLink": inst["selfLink"] + "/guestAttributes/" + query}

    # ---- instances: lifecycle -------------------------------------------------------------
    def h_instances__delete(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        if inst.get("deletionProtection"):
            # GCE: "Invalid resource usage: 'Resource cannot be deleted if it's protected against deletion.'."
            raise ApiError(400, "Invalid resource usage: 'Resource cannot be deleted if it's protected against "
                                "deletion.'.", "invalidResourceUsage")
        inst["status"] = "STOPPING"
        op = self.new_operation("delete", inst["selfLink"], inst["id"], zone=p["zone"],
                                on_done={"action": "delete_instance", "zone": p["zone"], "name": p["instance"]})
        return self.op_response(op)

    def _delete_instance_now(self, zone: str, name: str) -> None:
        inst = self.instances(zone).pop(name, None)
        if inst is None:
            return
        self.backend.on_delete(public(inst))
        for a in inst.get("disks", []):
            dname = a["source"].rsplit("/", 1)[-1]
            disk = self.disks(zone).get(dname)
            if disk is None:
                continue
            if a.get("autoDelete"):
                del self.disks(zone)[dname]
            else:
                disk["users"] = [u for u in disk.get("users", []) if u != inst["selfLink"]]
                if not disk["users"]:
                    del disk["users"]
                disk["lastDetachTimestamp"] = now_rfc3339()

    def h_instances__start(self, p, q, body):
        zone = p["zone"]
        inst = self.get_instance(zone, p["instance"])
        if inst["status"] in ("RUNNING", "PROVISIONING", "STAGING"):
            op = self.new_operation("start", inst["selfLink"], inst["id"], zone=zone, done=True)
            return self.op_response(op)
        if inst["status"] == "STOPPING":
            # SkyPilot notes GCE answers RESOURCE_NOT_READY while a VM is still STOPPING.
            res = self.res_path(f"zones/{zone}/instances/{inst['name']}")
            op = self.new_operation("start", inst["selfLink"], inst["id"], zone=zone, http_error=(400, "BAD REQUEST"),
                                    error=[operation_error("RESOURCE_NOT_READY",
                                                           f"The resource '{res}' is not ready")])
            return self.op_response(op)
        errors = self.capacity_errors(zone, inst)
        if not errors:
            errors = self.quota_errors(catalog.region_of(zone), self.instance_needs(inst, include_static=False))
        if errors:
            http = (403, "FORBIDDEN") if errors[0]["code"] == "QUOTA_EXCEEDED" else (503, "SERVICE UNAVAILABLE")
            op = self.new_operation("start", inst["selfLink"], inst["id"], zone=zone, error=errors, http_error=http)
            return self.op_response(op)
        external = any(ac for nic in inst["networkInterfaces"] for ac in nic.get("accessConfigs", []))
        addrs = self.backend.on_start(public(inst), external)
        nic0 = inst["networkInterfaces"][0]
        if addrs.internal_ip:
            nic0["networkIP"] = addrs.internal_ip
        for ac in nic0.get("accessConfigs", []):
            if not ac.get("_static"):
                ac.pop("natIP", None)
                if addrs.external_ip:
                    ac["natIP"] = addrs.external_ip
        inst["status"] = "STAGING"
        op = self.new_operation("start", inst["selfLink"], inst["id"], zone=zone,
                                on_done={"action": "instance_status", "zone": zone, "name": inst["name"],
                                         "status": "RUNNING"})
        return self.op_response(op)

    def h_instances__stop(self, p, q, body):
        zone = p["zone"]
        inst = self.get_instance(zone, p["instance"])
        if inst["status"] in ("TERMINATED",):
            op = self.new_operation("stop", inst["selfLink"], inst["id"], zone=zone, done=True)
            return self.op_response(op)
        self._stop_now(inst)
        op = self.new_operation("stop", inst["selfLink"], inst["id"], zone=zone,
                                on_done={"action": "instance_status", "zone": zone, "name": inst["name"],
                                         "status": "TERMINATED"})
        return self.op_response(op)

    def _stop_now(self, inst: dict) -> None:
        inst["status"] = "STOPPING"
        for nic in inst["networkInterfaces"]:
            for ac in nic.get("accessConfigs", []):
                if not ac.get("_static"):
                    ac.pop("natIP", None)   # ephemeral external IPs are released on stop

    def preempt(self, zone: str, name: str) -> dict:
        """What GCE does to a Spot/preemptible VM it reclaims: a system operation
        `compute.instances.preempted`, then TERMINATED (or deleted for terminationAction DELETE)."""
        inst = self.get_instance(zone, name)
        sched = inst.get("scheduling", {})
        if not (sched.get("preemptible") or sched.get("provisioningModel") == "SPOT"):
            raise bad_request(f"Instance '{name}' is neither Spot nor preemptible: GCE never preempts it.")
        if inst["status"] not in ("RUNNING", "STAGING", "PROVISIONING"):
            raise bad_request(f"Instance '{name}' is {inst['status']}: only a running VM can be preempted.")
        action = sched.get("instanceTerminationAction", "STOP")
        self._stop_now(inst)
        inst["lastStopTimestamp"] = now_rfc3339()
        if action == "DELETE":
            self._delete_instance_now(zone, name)
        else:
            inst["status"] = "TERMINATED"
            self.backend.on_stop(public(inst))
        op = self.new_operation("compute.instances.preempted", inst["selfLink"], inst["id"], zone=zone,
                                user="system", done=True, status_message="Instance was preempted.")
        return public(op)

    # ---- instances: updates -------------------------------------------------------------
    def _simple_op(self, inst: dict, op_type: str, zone: str) -> tuple[int, dict]:
        inst["fingerprint"] = new_fingerprint()
        return self.op_response(self.new_operation(op_type, inst["selfLink"], inst["id"], zone=zone))

    def h_instances__setMachineType(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        if inst["status"] != "TERMINATED":
            # GCE: "Instance 'x' must be stopped before you can change its machine type." with
            # reason resourceNotReady? The documented rule: only on a TERMINATED instance (400).
            raise ApiError(400, f"Invalid resource usage: 'Instance '{inst['name']}' must be stopped before "
                                "its machine type can be changed.'.", "invalidResourceUsage")
        machine = self._resolve_machine_type(body.get("machineType"), p["zone"], "machineType")
        accels = self._resolve_accelerators(
            [] if catalog.MACHINE_TYPES[machine].get("gpu") else
            [{"acceleratorType": a["acceleratorType"], "acceleratorCount": a["acceleratorCount"]}
             for a in inst.get("guestAccelerators") or []
             if not catalog.MACHINE_TYPES[inst["machineType"].rsplit("/", 1)[-1]].get("gpu")],
            p["zone"], machine, "guestAccelerators")
        if accels and inst["scheduling"].get("onHostMaintenance") != "TERMINATE":
            raise bad_request("Instances with guest accelerators do not support live migration.")
        inst["machineType"] = self.link(f"zones/{p['zone']}/machineTypes/{machine}")
        if accels:
            inst["guestAccelerators"] = accels
        else:
            inst.pop("guestAccelerators", None)
        return self._simple_op(inst, "setMachineType", p["zone"])

    def h_instances__setMachineResources(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        if inst["status"] != "TERMINATED":
            raise ApiError(400, f"Invalid resource usage: 'Instance '{inst['name']}' must be stopped before "
                                "its accelerators can be changed.'.", "invalidResourceUsage")
        machine = inst["machineType"].rsplit("/", 1)[-1]
        accels = self._resolve_accelerators(body.get("guestAccelerators") or [], p["zone"], machine,
                                            "guestAccelerators")
        if accels and inst["scheduling"].get("onHostMaintenance") != "TERMINATE":
            raise bad_request("Instances with guest accelerators do not support live migration.")
        if accels:
            inst["guestAccelerators"] = accels
        else:
            inst.pop("guestAccelerators", None)
        return self._simple_op(inst, "setMachineResources", p["zone"])

    def h_instances__setScheduling(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        merged = {k: v for k, v in inst["scheduling"].items()}
        merged.update(body)
        for k in list(merged):
            if k not in body and k in ("automaticRestart", "onHostMaintenance", "instanceTerminationAction"):
                if k == "instanceTerminationAction" and merged.get("provisioningModel") != "SPOT":
                    merged.pop(k)
        sched = self._scheduling(merged, bool(inst.get("guestAccelerators")))
        if sched.get("provisioningModel") != inst["scheduling"].get("provisioningModel") \
                and inst["status"] != "TERMINATED":
            raise ApiError(400, "Invalid resource usage: 'Provisioning model can only be changed on a stopped "
                                "instance.'.", "invalidResourceUsage")
        inst["scheduling"] = sched
        return self._simple_op(inst, "setScheduling", p["zone"])

    def h_instances__setMetadata(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        if not same_fingerprint(body.get("fingerprint"), inst["metadata"]["fingerprint"]):
            raise fingerprint_mismatch("metadata")
        keys = [i.get("key") for i in body.get("items") or []]
        if len(keys) != len(set(keys)):
            raise invalid_field("metadata.items", "", "Duplicate metadata key.")
        inst["metadata"] = {"kind": "compute#metadata", "fingerprint": new_fingerprint()}
        if body.get("items"):
            inst["metadata"]["items"] = body["items"]
        self._metadata_changed(inst)
        return self._simple_op(inst, "setMetadata", p["zone"])

    def _metadata_changed(self, inst: dict) -> None:
        """The guest agent reacts to metadata (ssh-keys): so does a backend that has a guest."""
        hook = getattr(self.backend, "on_metadata", None)
        if hook:
            hook(public(inst))

    def h_instances__setLabels(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        if not same_fingerprint(body.get("labelFingerprint"), inst["labelFingerprint"]):
            # GCE answers 412 conditionNotMet with "Labels fingerprint either invalid or resource labels have changed"
            raise ApiError(412, "Labels fingerprint either invalid or resource labels have changed",
                           "conditionNotMet")
        check_labels(body.get("labels"), "labels")
        if body.get("labels"):
            inst["labels"] = dict(body["labels"])
        else:
            inst.pop("labels", None)
        inst["labelFingerprint"] = new_fingerprint()
        return self._simple_op(inst, "setLabels", p["zone"])

    def h_instances__setTags(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        if not same_fingerprint(body.get("fingerprint"), inst["tags"]["fingerprint"]):
            raise fingerprint_mismatch("tags")
        for i, tag in enumerate(body.get("items") or []):
            if not NAME_RE.match(tag):
                raise invalid_field(f"tags.items[{i}]", tag, "Must be a match of regex '[a-z]([-a-z0-9]*[a-z0-9])?'")
        inst["tags"] = {"fingerprint": new_fingerprint()}
        if body.get("items"):
            inst["tags"]["items"] = list(body["items"])
        return self._simple_op(inst, "setTags", p["zone"])

    def h_instances__setServiceAccount(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        if inst["status"] != "TERMINATED":
            raise ApiError(400, "Invalid resource usage: 'The instance must be stopped before its service account "
                                "can be changed.'.", "invalidResourceUsage")
        email = body.get("email", "default")
        if email == "default":
            email = f"{self.number}-compute@developer.gserviceaccount.com"
        inst["serviceAccounts"] = [{"email": email, "scopes": list(body.get("scopes") or [])}]
        return self._simple_op(inst, "setServiceAccount", p["zone"])

    def h_instances__setDeletionProtection(self, p, q, body):
        inst = self.get_instance(p["zone"], p["resource"])
        # A boolean query parameter is true or false, nothing else: google.cloud's update path sends
        # deletionProtection=None, which must not turn protection on. (GCE's wording for a bad bool
        # parameter is not public; this follows its "Invalid value" pattern.)
        value = str(q.get("deletionProtection", "true")).lower()
        if value not in ("true", "false"):
            raise bad_request(f"Invalid value '{q.get('deletionProtection')}' for query parameter "
                              "'deletionProtection': must be true or false.", "invalid")
        inst["deletionProtection"] = value == "true"
        return self._simple_op(inst, "setDeletionProtection", p["zone"])

    # ---- disks -------------------------------------------------------------------------
    def h_disks__insert(self, p, q, body):
        zone = p["zone"]
        self.check_zone(zone, resource=True)
        name = body.get("name")
        check_name(name)
        if name in self.disks(zone):
            raise already_exists(self.res_path(f"zones/{zone}/disks/{name}"))
        image = self.resolve_image(body["sourceImage"], "resource.sourceImage") if body.get("sourceImage") else \
            (self.resolve_image(q["sourceImage"], "sourceImage") if q.get("sourceImage") else None)
        dtype = self._resolve_disk_type(body.get("type"), zone, "resource.type")
        size = int(body.get("sizeGb") or (image["diskSizeGb"] if image else 500 if dtype == "pd-standard" else 100))
        if image and size < int(image["diskSizeGb"]):
            raise invalid_field("resource.sizeGb", size,
                                f"Requested disk size cannot be smaller than the image size ({image['diskSizeGb']} GB)")
        check_labels(body.get("labels"), "resource.labels")
        disk = self._disk_record(zone, name, size, dtype, image, body.get("labels") or {})
        metric = "SSD_TOTAL_GB" if catalog.DISK_TYPES[dtype]["ssd"] else "DISKS_TOTAL_GB"
        errors = self.quota_errors(catalog.region_of(zone), {metric: size})
        if errors:
            op = self.new_operation("insert", disk["selfLink"], disk["id"], zone=zone, error=errors,
                                    http_error=(403, "FORBIDDEN"))
            return self.op_response(op)
        disk["status"] = "CREATING"
        self.disks(zone)[name] = disk
        op = self.new_operation("insert", disk["selfLink"], disk["id"], zone=zone,
                                on_done={"action": "none"})
        disk["status"] = "READY"
        return self.op_response(op)

    def h_disks__get(self, p, q, body):
        return 200, public(self.get_disk(p["zone"], p["disk"]))

    def h_disks__list(self, p, q, body):
        self.check_zone(p["zone"], resource=True)
        items = [public(d) for d in self.disks(p["zone"]).values()]
        return 200, self._list(items, q, "compute#diskList", self.link(f"zones/{p['zone']}/disks"))

    def h_disks__aggregatedList(self, p, q, body):
        scoped = {f"zones/{z}": [public(d) for d in self.disks(z).values()] for z in catalog.ZONES}
        return 200, self._aggregated(scoped, q, "compute#diskAggregatedList", "disks",
                                     self.link("aggregated/disks"))

    def h_disks__delete(self, p, q, body):
        disk = self.get_disk(p["zone"], p["disk"])
        if disk.get("users"):
            # GCE: "The disk resource 'projects/p/zones/z/disks/d' is already being used by
            # 'projects/p/zones/z/instances/i'" (reason resourceInUseByAnotherResource).
            res = self.res_path(f"zones/{p['zone']}/disks/{p['disk']}")
            user = self.res_path(parse_ref(disk["users"][0])[1])
            raise ApiError(400, f"The disk resource '{res}' is already being used by '{user}'",
                           "resourceInUseByAnotherResource")
        op = self.new_operation("delete", disk["selfLink"], disk["id"], zone=p["zone"],
                                on_done={"action": "delete_disk", "zone": p["zone"], "name": p["disk"]})
        return self.op_response(op)

    def h_disks__resize(self, p, q, body):
        disk = self.get_disk(p["zone"], p["disk"])
        new = int(body.get("sizeGb", 0))
        old = int(disk["sizeGb"])
        if new <= old:
            # Terraform/gcloud reports: "Invalid value for field 'sizeGb': '10'. New disk size '10' GiB
            # must be larger than existing size '50' GiB."
            raise invalid_field("sizeGb", new, f"New disk size '{new}' GiB must be larger than existing size "
                                               f"'{old}' GiB.")
        dtype = disk["type"].rsplit("/", 1)[-1]
        metric = "SSD_TOTAL_GB" if catalog.DISK_TYPES[dtype]["ssd"] else "DISKS_TOTAL_GB"
        errors = self.quota_errors(catalog.region_of(p["zone"]), {metric: new - old})
        if errors:
            return self.op_response(self.new_operation("resize", disk["selfLink"], disk["id"], zone=p["zone"],
                                                       error=errors, http_error=(403, "FORBIDDEN")))
        disk["sizeGb"] = str(new)
        for inst in self.instances(p["zone"]).values():
            for a in inst.get("disks", []):
                if a["source"] == disk["selfLink"]:
                    a["diskSizeGb"] = str(new)
        return self.op_response(self.new_operation("resize", disk["selfLink"], disk["id"], zone=p["zone"]))

    def h_disks__setLabels(self, p, q, body):
        disk = self.get_disk(p["zone"], p["resource"])
        if not same_fingerprint(body.get("labelFingerprint"), disk["labelFingerprint"]):
            raise ApiError(412, "Labels fingerprint either invalid or resource labels have changed",
                           "conditionNotMet")
        check_labels(body.get("labels"), "labels")
        if body.get("labels"):
            disk["labels"] = dict(body["labels"])
        else:
            disk.pop("labels", None)
        disk["labelFingerprint"] = new_fingerprint()
        return self.op_response(self.new_operation("setLabels", disk["selfLink"], disk["id"], zone=p["zone"]))

    # ---- firewalls -----------------------------------------------------------------------
    def _firewall_record(self, body: dict, existing: dict | None, field: str = "resource") -> dict:
        name = body.get("name") or (existing or {}).get("name")
        check_name(name, f"{field}.name")
        allowed, denied = body.get("allowed") or [], body.get("denied") or []
        if bool(allowed) == bool(denied):
            raise invalid_field(f"{field}.allowed" if not allowed else f"{field}.denied", "",
                                "Exactly one of allowed or denied must be specified.")
        for rules, key in ((allowed, "allowed"), (denied, "denied")):
            for i, rule in enumerate(rules):
                proto = str(rule.get("IPProtocol", "")).lower()
                if proto not in ("tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all") and not proto.isdigit():
                    raise invalid_field(f"{field}.{key}[{i}].IPProtocol", rule.get("IPProtocol", ""),
                                        "Invalid IP protocol.")
                for port in rule.get("ports") or []:
                    if not re.fullmatch(r"\d{1,5}(-\d{1,5})?", str(port)):
                        raise invalid_field(f"{field}.{key}[{i}].ports", port, "Invalid port specification.")
        direction = body.get("direction", "INGRESS")
        record = {
            "kind": "compute#firewall",
            "id": (existing or {}).get("id") or catalog.stable_id("fw", name, str(time.time_ns())),
            "creationTimestamp": (existing or {}).get("creationTimestamp") or now_rfc3339(),
            "name": name, "description": body.get("description", ""),
            "network": self.resolve_network(body.get("network") or "global/networks/default", f"{field}.network"),
            "priority": int(body.get("priority", 1000)), "direction": direction,
            "logConfig": body.get("logConfig") or {"enable": False},
            "disabled": bool(body.get("disabled", False)),
            "selfLink": self.link(f"global/firewalls/{name}"),
        }
        if allowed:
            record["allowed"] = allowed
        if denied:
            record["denied"] = denied
        for key in ("sourceRanges", "destinationRanges", "sourceTags", "targetTags", "sourceServiceAccounts",
                    "targetServiceAccounts"):
            if body.get(key):
                record[key] = list(body[key])
        if direction == "INGRESS" and not any(record.get(k) for k in ("sourceRanges", "sourceTags",
                                                                        "sourceServiceAccounts")):
            record["sourceRanges"] = ["0.0.0.0/0"]
        if direction == "EGRESS" and not record.get("destinationRanges"):
            record["destinationRanges"] = ["0.0.0.0/0"]
        return record

    def h_firewalls__insert(self, p, q, body):
        self.check_project(p["project"])
        name = body.get("name")
        check_name(name)
        if name in self.firewalls():
            raise already_exists(self.res_path(f"global/firewalls/{name}"))
        fw = self._firewall_record(body, None)
        self.firewalls()[name] = fw
        return self.op_response(self.new_operation("insert", fw["selfLink"], fw["id"], on_done={"action": "none"}))

    def h_firewalls__get(self, p, q, body):
        fw = self.firewalls().get(p["firewall"])
        if fw is None:
            raise not_found(self.res_path(f"global/firewalls/{p['firewall']}"))
        return 200, public(fw)

    def h_firewalls__list(self, p, q, body):
        return 200, self._list([public(f) for f in self.firewalls().values()], q, "compute#firewallList",
                               self.link("global/firewalls"))

    def h_firewalls__delete(self, p, q, body):
        fw = self.firewalls().get(p["firewall"])
        if fw is None:
            raise not_found(self.res_path(f"global/firewalls/{p['firewall']}"))
        return self.op_response(self.new_operation("delete", fw["selfLink"], fw["id"],
                                                   on_done={"action": "delete_firewall", "name": p["firewall"]}))

    def h_firewalls__patch(self, p, q, body):
        fw = self.firewalls().get(p["firewall"])
        if fw is None:
            raise not_found(self.res_path(f"global/firewalls/{p['firewall']}"))
        if body.get("name") and body["name"] != fw["name"]:
            raise invalid_field("resource.name", body["name"], "Firewall name cannot be changed.")
        merged = dict(public(fw))
        merged.update(body)
        if body.get("allowed"):
            merged.pop("denied", None)
        if body.get("denied"):
            merged.pop("allowed", None)
        self.firewalls()[fw["name"]] = self._firewall_record(merged, fw)
        return self.op_response(self.new_operation("patch", fw["selfLink"], fw["id"]))

    def h_firewalls__update(self, p, q, body):
        fw = self.firewalls().get(p["firewall"])
        if fw is None:
            raise not_found(self.res_path(f"global/firewalls/{p['firewall']}"))
        self.firewalls()[fw["name"]] = self._firewall_record(dict(body, name=fw["name"]), fw)
        return self.op_response(self.new_operation("update", fw["selfLink"], fw["id"]))


def _paginate(items: list, query: dict) -> tuple[list, str | None]:
    try:
        max_results = int(query.get("maxResults", 500))
    except ValueError:
        raise invalid_field("maxResults", query.get("maxResults"), "Must be an integer.")
    max_results = max(1, min(max_results, 500))
    start = 0
    token = query.get("pageToken")
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()).decode())["o"])
        except Exception:  # noqa: BLE001 - any malformed token is the client's error
            raise invalid_field("pageToken", token, "Invalid page token.")
    page = items[start:start + max_results]
    nxt = None
    if start + max_results < len(items):
        nxt = base64.urlsafe_b64encode(json.dumps({"o": start + max_results}).encode()).decode()
    return page, nxt


class Faults:
    """Faults injected on demand; kept in the state so they survive restarts and CLI edits."""

    KINDS = ("zone_exhausted", "quota_exceeded", "http_error", "slow_operations")

    def __init__(self, state: dict):
        self.state = state

    def all(self) -> list[dict]:
        return self.state.setdefault("faults", [])

    def add(self, kind: str, params: dict) -> dict:
        if kind not in self.KINDS:
            raise bad_request(f"Unknown fault kind '{kind}'; known: {', '.join(self.KINDS)}")
        required = {"zone_exhausted": ["zone"], "quota_exceeded": ["region"], "http_error": ["status"],
                    "slow_operations": ["seconds"]}[kind]
        for key in required:
            if params.get(key) in (None, ""):
                raise bad_request(f"Fault '{kind}' needs '{key}'.")
        if kind == "zone_exhausted" and params["zone"] not in catalog.ZONES:
            raise bad_request(f"Unknown zone '{params['zone']}'.")
        if kind == "http_error":
            params["status"] = int(params["status"])
            if params.get("path_regex"):
                re.compile(params["path_regex"])
        fault = {"id": os.urandom(4).hex(), "kind": kind, **params}
        if fault.get("count") is not None:
            fault["count"] = int(fault["count"])
        self.all().append(fault)
        return fault

    def clear(self) -> None:
        self.state["faults"] = []

    def _consume(self, fault: dict) -> None:
        if fault.get("count") is not None:
            fault["count"] -= 1
            if fault["count"] <= 0:
                self.all().remove(fault)

    def take(self, kind: str, **match) -> dict | None:
        for fault in list(self.all()):
            if fault["kind"] != kind:
                continue
            if all(fault.get(k) == v for k, v in match.items()):
                self._consume(fault)
                return fault
        return None

    def http_error(self, method: str, host: str, path: str) -> dict | None:
        for fault in list(self.all()):
            if fault["kind"] != "http_error":
                continue
            if fault.get("method") and fault["method"].upper() != method.upper():
                continue
            if fault.get("path_regex") and not re.search(fault["path_regex"], path):
                continue
            self._consume(fault)
            return fault
        return None

    def operation_delay(self) -> float:
        for fault in self.all():
            if fault["kind"] == "slow_operations":
                return float(fault["seconds"])
        return 0.0
