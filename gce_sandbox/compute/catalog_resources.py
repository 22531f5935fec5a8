"""The read-only catalog: zones, regions, machine/accelerator/disk types, images."""

# ruff: noqa: N802 - handler names are Compute API method names (h_instances__setMachineType)
from __future__ import annotations

import re

from .. import catalog
from ..errors import (
    invalid_field,
    not_found,
)
from .common import parse_ref
from .emulated import UNEMULATED_DISK_TYPES, not_emulated


class CatalogMixin:
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
        if n in UNEMULATED_DISK_TYPES:
            raise not_emulated(f"Disk type '{n}'", "compute.diskTypes.get")
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
