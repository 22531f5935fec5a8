"""Faults injected on demand through the admin endpoints or the CLI."""

from __future__ import annotations

import os
import re

from .. import catalog
from ..errors import (
    bad_request,
)


class Faults:
    """Faults injected on demand; kept in the state so they survive restarts and CLI edits."""

    # partial_insert: the insert's operation fails AFTER the instance and its disks exist, as GCE's
    # sometimes do (a stockout met while starting the new VM): they stay, TERMINATED, for the
    # client to clean up.
    # disconnect: the connection closes with no answer, before the request is served (`when:
    # before`, the default) or after it was (`when: after`: done, but the client never hears so).
    # flex_start: a FLEX_START insert in `zone` stays PENDING for `seconds`, then gets its capacity
    # (outcome "capacity", the default) or fails without it ("no_capacity").
    KINDS = ("zone_exhausted", "quota_exceeded", "http_error", "slow_operations", "partial_insert", "disconnect",
             "flex_start")

    def __init__(self, state: dict):
        self.state = state

    def all(self) -> list[dict]:
        return self.state.setdefault("faults", [])

    def add(self, kind: str, params: dict) -> dict:
        if kind not in self.KINDS:
            raise bad_request(f"Unknown fault kind '{kind}'; known: {', '.join(self.KINDS)}")
        required = {"zone_exhausted": ["zone"], "quota_exceeded": ["region"], "http_error": ["status"],
                    "slow_operations": ["seconds"], "partial_insert": ["zone"], "disconnect": [],
                    "flex_start": ["zone", "seconds"]}[kind]
        for key in required:
            if params.get(key) in (None, ""):
                raise bad_request(f"Fault '{kind}' needs '{key}'.")
        if kind == "flex_start" and params.setdefault("outcome", "capacity") not in ("capacity", "no_capacity"):
            raise bad_request("Fault 'flex_start' takes outcome: capacity or no_capacity.")
        if kind in ("zone_exhausted", "partial_insert", "flex_start") and params["zone"] not in catalog.ZONES:
            raise bad_request(f"Unknown zone '{params['zone']}'.")
        if kind == "http_error":
            params["status"] = int(params["status"])
        if kind == "disconnect" and params.setdefault("when", "before") not in ("before", "after"):
            raise bad_request("Fault 'disconnect' takes when: before or after.")
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
        return self.on_request("http_error", method, path)

    def on_request(self, kind: str, method: str, path: str, **match) -> dict | None:
        """The first fault of `kind` whose method / path_regex (and `match`) fit this request."""
        for fault in list(self.all()):
            if fault["kind"] != kind or any(fault.get(k) != v for k, v in match.items()):
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
