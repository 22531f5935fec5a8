"""Shared by every Compute resource module: links, names, labels, fingerprints, lists.

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
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from .. import catalog
from ..backend import FakeAddressBackend, VmBackend
from ..errors import (
    ApiError,
    invalid_field,
    not_found,
)
from ..filters import compile_filter
from .faults import Faults

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


class RetryAfter(Exception):  # noqa: N818 - not an error: a request to call again later
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


class ComputeBase:
    def __init__(self, state: dict, backend: VmBackend | None = None,
                 faults: "Faults | None" = None):
        self.state = state
        self.backend = backend or FakeAddressBackend(state)
        self.faults = faults or Faults(state)
        self.project = state["project"]
        self.number = catalog.project_number(self.project)
        # Whether a service account may run a VM: the sandbox's IAM answers (server.py wires it).
        self.service_account_exists: Callable[[str], bool] = lambda _email: True

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

    def handlers(self) -> dict[str, Callable[..., tuple[int, dict]]]:
        h = {}
        for name in dir(self):
            if name.startswith("h_"):
                h["compute." + name[2:].replace("__", ".")] = getattr(self, name)
        return h


def _paginate(items: list, query: dict) -> tuple[list, str | None]:
    try:
        max_results = int(query.get("maxResults", 500))
    except ValueError:
        raise invalid_field("maxResults", query.get("maxResults"), "Must be an integer.") from None
    max_results = max(1, min(max_results, 500))
    start = 0
    token = query.get("pageToken")
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()).decode())["o"])
        except Exception:  # noqa: BLE001 - any malformed token is the client's error
            raise invalid_field("pageToken", token, "Invalid page token.") from None
    page = items[start:start + max_results]
    nxt = None
    if start + max_results < len(items):
        nxt = base64.urlsafe_b64encode(json.dumps({"o": start + max_results}).encode()).decode()
    return page, nxt

