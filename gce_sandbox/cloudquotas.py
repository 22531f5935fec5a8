"""Cloud Quotas v1 (cloudquotas.googleapis.com): quotaPreferences create / get / list /
patch and quotaInfos get / list for the Compute Engine quotas the sandbox tracks.

A QuotaPreference is how a quota increase is filed today. The sandbox records it like the
real service does right after filing: `reconciling: true`, grantedValue = the current limit,
stateDetail saying it is pending review. Nothing grants it by itself: `quota set` (or the
admin endpoint) plays the reviewer. No discovery document for this API ships with
google-api-python-client, so fields are checked against the v1 REST reference by hand.
"""

from __future__ import annotations

import os
import re
from typing import Any

from . import catalog
from .compute import now_rfc3339
from .errors import ApiError

PREF_FIELDS = {"name", "dimensions", "quotaConfig", "etag", "createTime", "updateTime", "service", "quotaId",
               "reconciling", "justification", "contactEmail"}
CONFIG_FIELDS = {"preferredValue", "stateDetail", "grantedValue", "traceId", "annotations", "requestOrigin"}
METRIC_BY_ID = {v: k for k, v in catalog.QUOTA_IDS.items()}


class CloudQuotas:
    def __init__(self, state: dict, compute):
        self.state = state
        self.compute = compute

    def prefs(self) -> dict:
        return self.state.setdefault("quota_preferences", {})

    def _parent(self, project: str) -> str:
        if project not in (self.compute.project, self.compute.number):
            raise ApiError(403, "Permission denied on resource project " + project, "forbidden")
        return f"projects/{self.compute.number}/locations/global"

    def _granted(self, metric: str | None, dims: dict) -> float | None:
        if metric is None:
            return None
        region = dims.get("region")
        limits = self.compute.quota_limits(region if region in catalog.REGIONS else None)
        return limits.get(metric)

    def _validate(self, body: dict) -> None:
        for key in body:
            if key not in PREF_FIELDS:
                raise ApiError(400, f"Invalid JSON payload received. Unknown name \"{key}\" at 'quota_preference': "
                                    "Cannot find field.", "invalid")
        for key in (body.get("quotaConfig") or {}):
            if key not in CONFIG_FIELDS:
                raise ApiError(400, f"Invalid JSON payload received. Unknown name \"{key}\" at "
                                    "'quota_preference.quota_config': Cannot find field.", "invalid")

    def handle(self, method: str, rel: str, query: dict, body: Any) -> tuple[str, tuple[int, dict]]:
        m = re.match(r"^v1/projects/([^/]+)/locations/global/quotaPreferences(?:/([^/]+))?$", rel)
        if m:
            parent = self._parent(m.group(1))
            pid = m.group(2)
            if method == "POST" and pid is None:
                return "cloudquotas.projects.locations.quotaPreferences.create", self._create(parent, query, body or {})
            if method == "GET" and pid is None:
                prefs = [p for p in self.prefs().values() if p["name"].startswith(parent)]
                return "cloudquotas.projects.locations.quotaPreferences.list", (200, {"quotaPreferences": prefs})
            if method == "GET":
                pref = self.prefs().get(f"{parent}/quotaPreferences/{pid}")
                if pref is None:
                    raise ApiError(404, f"QuotaPreference {parent}/quotaPreferences/{pid} not found.", "notFound")
                return "cloudquotas.projects.locations.quotaPreferences.get", (200, pref)
            if method == "PATCH":
                patched = self._patch(parent, pid, query, body or {})
                return "cloudquotas.projects.locations.quotaPreferences.patch", patched
        m = re.match(r"^v1/projects/([^/]+)/locations/global/services/([^/]+)/quotaInfos(?:/([^/]+))?$", rel)
        if m and method == "GET":
            parent = self._parent(m.group(1))
            if m.group(2) != "compute.googleapis.com":
                return "cloudquotas.projects.locations.services.quotaInfos.list", (200, {"quotaInfos": []})
            infos = [self._info(parent, qid) for qid in sorted(METRIC_BY_ID)]
            if m.group(3):
                for info in infos:
                    if info["quotaId"] == m.group(3):
                        return "cloudquotas.projects.locations.services.quotaInfos.get", (200, info)
                raise ApiError(404, f"QuotaInfo {m.group(3)} not found.", "notFound")
            return "cloudquotas.projects.locations.services.quotaInfos.list", (200, {"quotaInfos": infos})
        raise ApiError(404, f"The requested URL /{rel} was not found on this server.", "notFound")

    def _info(self, parent: str, qid: str) -> dict:
        metric = METRIC_BY_ID[qid]
        regional = qid.endswith("-per-project-region")
        info = {
            "name": f"{parent}/services/compute.googleapis.com/quotaInfos/{qid}",
            "quotaId": qid, "metric": f"compute.googleapis.com/{metric.lower()}",
            "service": "compute.googleapis.com", "isPrecise": True, "containerType": "PROJECT",
            "dimensions": ["region"] if regional else [], "isConcurrent": False,
            "quotaIncreaseEligibility": {"isEligible": True},
            "dimensionsInfos": [],
        }
        if regional:
            for region in catalog.REGIONS:
                info["dimensionsInfos"].append({"dimensions": {"region": region}, "applicableLocations": [region],
                                                "details": {"value": str(int(self.compute.quota_limits(region)
                                                                             .get(metric, 0)))}})
        else:
            info["dimensionsInfos"].append({"dimensions": {}, "applicableLocations": ["global"],
                                            "details": {"value": str(int(self.compute.quota_limits(None)
                                                                         .get(metric, 0)))}})
        return info

    def _create(self, parent: str, query: dict, body: dict) -> tuple[int, dict]:
        self._validate(body)
        pid = query.get("quotaPreferenceId") or os.urandom(8).hex()
        name = f"{parent}/quotaPreferences/{pid}"
        if name in self.prefs():
            raise ApiError(409, f"QuotaPreference {name} already exists.", "alreadyExists")
        for key in ("service", "quotaId"):
            if not body.get(key):
                raise ApiError(400, f"Field '{key}' is required.", "invalid")
        preferred = (body.get("quotaConfig") or {}).get("preferredValue")
        if preferred is None or not re.fullmatch(r"\d+", str(preferred)):
            raise ApiError(400, "quotaConfig.preferredValue must be a non-negative integer.", "invalid")
        dims = body.get("dimensions") or {}
        metric = METRIC_BY_ID.get(body["quotaId"]) if body["service"] == "compute.googleapis.com" else None
        if body["service"] == "compute.googleapis.com" and metric is None and "GPU-FAMILY" not in body["quotaId"]:
            raise ApiError(400, f"Quota id {body['quotaId']} is not found for service {body['service']}.", "invalid")
        if metric and metric in catalog.DEFAULT_REGION_QUOTAS and dims.get("region") not in catalog.REGIONS:
            raise ApiError(400, f"Dimension 'region' is required for quota {body['quotaId']}.", "invalid")
        granted = self._granted(metric, dims)
        now = now_rfc3339()
        pref = {
            "name": name, "service": body["service"], "quotaId": body["quotaId"], "dimensions": dims,
            "quotaConfig": {"preferredValue": str(preferred),
                            "grantedValue": str(int(granted)) if granted is not None else "0",
                            "traceId": os.urandom(8).hex(), "requestOrigin": "ORIGIN_UNSPECIFIED",
                            "stateDetail": "The quota preference is pending review (sandbox: nothing grants it "
                                           "until `python -m gce_sandbox quota set`)."},
            "etag": os.urandom(6).hex(), "createTime": now, "updateTime": now, "reconciling": True,
        }
        for key in ("justification", "contactEmail"):
            if body.get(key):
                pref[key] = body[key]
        self.prefs()[name] = pref
        return 200, pref

    def _patch(self, parent: str, pid: str, query: dict, body: dict) -> tuple[int, dict]:
        self._validate(body)
        name = f"{parent}/quotaPreferences/{pid}"
        pref = self.prefs().get(name)
        if pref is None:
            if str(query.get("allowMissing", "false")).lower() == "true":
                return self._create(parent, {"quotaPreferenceId": pid}, body)
            raise ApiError(404, f"QuotaPreference {name} not found.", "notFound")
        if body.get("etag") and body["etag"] != pref["etag"]:
            raise ApiError(409, "The etag does not match the current etag of the quota preference.", "aborted")
        preferred = (body.get("quotaConfig") or {}).get("preferredValue")
        if preferred is not None:
            pref["quotaConfig"]["preferredValue"] = str(preferred)
            pref["reconciling"] = True
        pref["etag"] = os.urandom(6).hex()
        pref["updateTime"] = now_rfc3339()
        return 200, pref
