"""Persistent disks: insert, read, delete, resize, setLabels."""

# ruff: noqa: N802 - handler names are Compute API method names (h_instances__setMachineType)
from __future__ import annotations

import re
import time
from typing import Any

from .. import catalog
from ..errors import (
    ApiError,
    already_exists,
    invalid_field,
)
from .common import check_labels, check_name, new_fingerprint, now_rfc3339, parse_ref, public, same_fingerprint
from .emulated import ANY, DISK, LABELS, check_fields


class DisksMixin:
    def _resolve_disk_type(self, ref: str | None, zone: str, field: str) -> str:
        if not ref:
            return "pd-standard"
        project, rest = parse_ref(ref)
        m = re.match(r"^(?:zones/([^/]+)/diskTypes/)?([^/]+)$", rest)
        if not m or (m.group(1) and m.group(1) != zone) or m.group(2) not in catalog.DISK_TYPES:
            raise invalid_field(field, ref, "The referenced diskType resource cannot be found.")
        return m.group(2)

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

    # ---- disks -------------------------------------------------------------------------
    def h_disks__insert(self, p, q, body):
        check_fields(body, DISK, "resource", "compute.disks.insert")
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
        if body.get("description"):
            disk["description"] = body["description"]
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
        check_fields(body, {"sizeGb": ANY}, "", "compute.disks.resize")
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
        check_fields(body, LABELS, "", "compute.disks.setLabels")
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

