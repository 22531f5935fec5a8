# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Zone failover's reading of GCE's answers, in one place for both ways a VM is created: the
project's own gce_instance_place module and the gce_vm role's loop around
google.cloud.gcp_compute_instance (through the gce_failover filters). Which zones GCE suggests,
which quota ran out, what the next zone is, and the sentences a person reads."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import re

from ansible.module_utils.gce_pricing import region_of

EXHAUSTED = ("ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")
GLOBAL_QUOTAS = ("GPUS_ALL_REGIONS", "CPUS_ALL_REGIONS")


def zones_available_hint(errors):
    """Zones GCE says have capacity, from ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS errorDetails."""
    zones = []
    for err in errors:
        for detail in err.get("errorDetails") or []:
            meta = ((detail.get("errorInfo") or {}).get("metadatas")) or {}
            for zone in (meta.get("zonesAvailable") or "").split(","):
                zone = zone.strip()
                if zone and zone not in zones:
                    zones.append(zone)
            text = ((detail.get("localizedMessage") or {}).get("message")) or ""
            match = re.search(r"trying your request in the ([a-z0-9,\- ]+?) zone\(s\)", text)
            if match:
                for zone in match.group(1).split(","):
                    zone = zone.strip()
                    if zone and zone not in zones:
                        zones.append(zone)
    return zones


def quota_metric(err):
    """The metric a QUOTA_EXCEEDED error names, and whether it is project-wide."""
    for detail in err.get("errorDetails") or []:
        info = detail.get("quotaInfo") or {}
        if info.get("metricName"):
            metric = info["metricName"].rsplit("/", 1)[-1].upper()
            return metric, "global" in (info.get("dimensions") or {}) or metric in GLOBAL_QUOTAS, info.get("limit")
    match = re.search(r"Quota '([A-Z0-9_]+)' exceeded\.\s+Limit: ([0-9.]+) (globally|in region)",
                      err.get("message") or "")
    if match:
        return match.group(1), match.group(3) == "globally" or match.group(1) in GLOBAL_QUOTAS, float(match.group(2))
    return None, False, None


def failed_attempt(zone, errors, candidates):
    """The attempt record for an insert that GCE failed in `zone` with `errors` (its operation's
    error.errors): result "exhausted" (try the next zone), "quota" (skip the region, or stop when
    `global`) or "failed" (anything else: no other zone would help)."""
    codes = [e.get("code") or "" for e in errors]
    entry = {"zone": zone, "result": "failed", "code": ",".join(codes),
             "reason": "; ".join(e.get("message", "") for e in errors)}
    if any(code in EXHAUSTED for code in codes):
        entry["result"] = "exhausted"
        hint = zones_available_hint(errors)
        if hint:
            entry["zones_available"] = hint
            entry["hint_not_candidates"] = [z for z in hint if z not in candidates]
    elif "QUOTA_EXCEEDED" in codes:
        entry["result"] = "quota"
        metric, is_global, limit = quota_metric([e for e in errors if e.get("code") == "QUOTA_EXCEEDED"][0])
        entry.update(metric=metric, limit=limit, region=region_of(zone), **{"global": is_global})
    return entry


def next_queue(queue, entry):
    """The zones still to try after `entry`: the ones GCE's zonesAvailable hint names first."""
    preferred = [z for z in entry.get("zones_available") or [] if z in queue]
    return preferred + [z for z in queue if z not in preferred]


def skipped_attempt(zone, blocked_regions):
    """The record of a zone not tried because its region ran out of quota earlier in the run."""
    region = region_of(zone)
    return {"zone": zone, "result": "skipped",
            "reason": "region %s is out of quota (%s)" % (region, blocked_regions[region])}


def blocked_reason(entry):
    """How a region that ran out of quota is named in the zones skipped after it."""
    return "%s limit %s" % (entry.get("metric"), entry.get("limit"))


def attempt_line(a):
    """One line a person reads: where, what happened, why."""
    words = {"created": "created", "would create": "would be created (check mode)", "exists": "already there",
             "exhausted": "out of capacity", "quota": "out of quota", "skipped": "skipped", "failed": "failed"}
    line = "%s: %s" % (a["zone"], words.get(a["result"], a["result"]))
    why = []
    if a.get("code"):
        why.append(a["code"] + ((" " + a["metric"]) if a.get("metric") else ""))
    if a["result"] == "skipped" and a.get("reason"):
        why.append(a["reason"])
    if a.get("zones_available"):
        why.append("GCE suggested " + ", ".join(a["zones_available"]))
    if a.get("cleaned_up"):
        why.append("removed " + ", ".join(a["cleaned_up"]))
    return line + (" (%s)" % "; ".join(why) if why else "")


def global_quota_message(metric, limit, project, message):
    return ("Project-wide quota %s (limit %s) is used up: no zone or region can take the VM, so "
            "nothing more was tried. Raise it: https://console.cloud.google.com/iam-admin/quotas"
            "?project=%s&metric=%s or `ansible-playbook playbooks/quota_request.yml "
            "-e gce_quota_request_metric=%s -e gce_quota_request_value=N`. GCE said: %s"
            % (metric, limit, project, metric, metric, message))


def no_zone_message(name, attempts):
    lines = ["No candidate zone could take %s; nothing was left behind. Tried:" % name]
    lines.extend("- " + attempt_line(a) for a in attempts)
    lines.append("Add zones to gce_vm_candidate_zones (or regions to gce_vm_candidate_regions), try spot "
                 "(gce_vm_provisioning_model: SPOT), or retry later.")
    return "\n".join(lines)


def google_cloud_errors(text):
    """GCE's errors from the message google.cloud fails with: a failed operation's error.errors
    as Python's repr of the list, or "GCP returned error: {...}" (the repr of the HTTP error's
    body) when the request itself was refused. [] when the text is neither."""
    text = (text or "").strip()
    prefix = "GCP returned error:"
    if text.startswith(prefix):
        text = text[len(prefix):].strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return []
    if isinstance(value, dict) and isinstance(value.get("error"), dict):
        body = value["error"]
        details = [d for d in body.get("errors") or [] if isinstance(d, dict)] or [{}]
        # A synchronous refusal carries reasons, not operation codes; quota is the one failover acts on.
        return [{"code": "QUOTA_EXCEEDED" if d.get("reason") == "quotaExceeded" else
                 (d.get("reason") or str(body.get("code") or "")),
                 "message": d.get("message") or body.get("message") or "",
                 "errorDetails": body.get("details") or []} for d in details]
    if isinstance(value, list) and all(isinstance(e, dict) for e in value):
        return value
    return []
