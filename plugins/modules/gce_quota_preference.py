#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gce_quota_preference
short_description: File a Compute Engine quota increase as a Cloud Quotas QuotaPreference
description:
  - Creates (or updates) the QuotaPreference asking for C(value) of a Compute Engine quota, e.g. C(NVIDIA_T4_GPUS)
    in a region or C(GPUS_ALL_REGIONS) project-wide, through the Cloud Quotas API
    (cloudquotas.googleapis.com v1).
  - Idempotent - an existing preference with the same preferred value is left alone; nothing is filed when the
    current limit already covers C(value).
  - Google reviews the request; the answer reports C(reconciling) and C(granted_value) as they stand.
options:
  metric:
    description: Compute quota metric (NVIDIA_T4_GPUS, PREEMPTIBLE_NVIDIA_T4_GPUS, GPUS_ALL_REGIONS, CPUS...).
    type: str
    required: true
  region: {description: Region of a regional metric; empty for a project-wide one., type: str, default: ""}
  value: {description: The limit asked for., type: int, required: true}
  justification: {description: Why you need it (reviewers read this)., type: str, default: ""}
  contact_email: {description: Who Google may contact about the request., type: str, default: ""}
  preference_id: {description: QuotaPreference id; derived from metric and region when empty., type: str, default: ""}
# The auth options (project, auth_kind, service_account_file, ... with their GCP_* environment
# fallbacks) are google.cloud's own, taken from gce_client.auth_argument_spec.
extends_documentation_fragment:
  - google.cloud.gcp
author: GPU Jupyter project
"""

EXAMPLES = r"""
- name: Quota | Ask for 2 T4 GPUs in us-central1
  gce_quota_preference:
    project: my-gpu-project
    auth_kind: application
    metric: NVIDIA_T4_GPUS
    region: us-central1
    value: 2
    justification: JupyterLab VM for the data science team
"""

RETURN = r"""
quota_id: {description: The Cloud Quotas quota ID., type: str, returned: always}
current_limit: {description: The limit before this request (null when unknown)., type: float, returned: always}
preference: {description: The QuotaPreference as the API returned it., type: dict, returned: when filed or found}
action: {description: created, updated, unchanged or not_needed., type: str, returned: always}
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gce_client import GceClient, GceApiError, GceError, auth_argument_spec

CLOUDQUOTAS = "https://cloudquotas.googleapis.com/v1"
GLOBAL_METRICS = ("GPUS_ALL_REGIONS", "CPUS_ALL_REGIONS")


def quota_id(metric, region):
    """NVIDIA_T4_GPUS + region -> NVIDIA-T4-GPUS-per-project-region; GPUS_ALL_REGIONS -> ...-per-project."""
    return metric.upper().replace("_", "-") + ("-per-project-region" if region else "-per-project")


def current_limit(info, region):
    for dim in info.get("dimensionsInfos") or []:
        dims = dim.get("dimensions") or {}
        if (region and dims.get("region") == region) or (not region and not dims.get("region")):
            try:
                return float((dim.get("details") or {}).get("value"))
            except (TypeError, ValueError):
                return None
    return None


def main():
    spec = auth_argument_spec()
    spec.update(
        metric=dict(type="str", required=True),
        region=dict(type="str", default=""),
        value=dict(type="int", required=True),
        justification=dict(type="str", default=""),
        contact_email=dict(type="str", default=""),
        preference_id=dict(type="str", default=""),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    metric = p["metric"].upper()
    region = p["region"] or ""
    if metric in GLOBAL_METRICS and region:
        module.fail_json(msg="gce_quota_request_region: %s is project-wide; leave the region empty." % metric)
    if metric not in GLOBAL_METRICS and not region:
        module.fail_json(msg="gce_quota_request_region: %s is a regional quota; set the region (e.g. us-central1)."
                         % metric)
    if p["value"] < 0:
        module.fail_json(msg="gce_quota_request_value: %d is negative." % p["value"])
    if not p["scopes"]:
        p["scopes"] = ["https://www.googleapis.com/auth/cloud-platform"]
    qid = quota_id(metric, region)
    pref_id = p["preference_id"] or re.sub(
        r"[^a-z0-9-]", "-", ("gpu-jupyter-%s-%s" % (metric, region or "global")).lower())
    result = {"changed": False, "quota_id": qid, "current_limit": None, "action": "unchanged"}
    # Cloud Quotas knows no Compute requestId parameter.
    try:
        client = GceClient.from_params(p, use_request_id=False)
    except GceError as exc:
        module.fail_json(msg=str(exc), **result)
    parent = "%s/projects/%s/locations/global" % (CLOUDQUOTAS, p["project"])
    try:
        info = client.get_or_none("%s/services/compute.googleapis.com/quotaInfos/%s" % (parent, qid))
        if info is None:
            module.fail_json(msg="gce_quota_request_metric: Cloud Quotas knows no quota %s (from %s). Use a Compute "
                                 "metric such as NVIDIA_T4_GPUS, PREEMPTIBLE_NVIDIA_T4_GPUS or GPUS_ALL_REGIONS."
                                 % (qid, metric), **result)
        limit = current_limit(info, region)
        result["current_limit"] = limit
        pref_path = "%s/quotaPreferences/%s" % (parent, pref_id)
        existing = client.get_or_none(pref_path)
        if existing is not None:
            result["preference"] = existing
            if str((existing.get("quotaConfig") or {}).get("preferredValue")) == str(p["value"]):
                module.exit_json(**result)
        elif limit is not None and limit >= p["value"]:
            result["action"] = "not_needed"
            module.exit_json(**result)
        result["changed"] = True
        result["action"] = "updated" if existing is not None else "created"
        if module.check_mode:
            module.exit_json(**result)
        body = {"service": "compute.googleapis.com", "quotaId": qid,
                "quotaConfig": {"preferredValue": str(p["value"])}}
        if region:
            body["dimensions"] = {"region": region}
        if p["justification"]:
            body["justification"] = p["justification"]
        if p["contact_email"]:
            body["contactEmail"] = p["contact_email"]
        if existing is None:
            pref = client.post("%s/quotaPreferences" % parent, body=body, params={"quotaPreferenceId": pref_id})
        else:
            pref = client.request("PATCH", pref_path, body={"quotaConfig": body["quotaConfig"]},
                                  params={"updateMask": "quotaConfig.preferredValue"})
        result["preference"] = pref
    except (GceApiError, GceError) as exc:
        module.fail_json(msg="Cloud Quotas refused the request: %s" % exc, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
