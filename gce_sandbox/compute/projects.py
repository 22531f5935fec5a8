"""The project: projects.get and its common instance metadata."""

# ruff: noqa: N802 - handler names are Compute API method names (h_instances__setMachineType)
from __future__ import annotations

from .. import catalog
from ..errors import (
    ApiError,
    fingerprint_mismatch,
)
from .common import new_fingerprint, public, same_fingerprint
from .emulated import METADATA, check_fields


class ProjectsMixin:
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
        check_fields(body, METADATA, "", "compute.projects.setCommonInstanceMetadata")
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
