"""Zone, region and global operations: how long they run, what happens when they end."""

# ruff: noqa: N802 - handler names are Compute API method names (h_instances__setMachineType)
from __future__ import annotations

import os
import time
from typing import Any

from .. import catalog
from ..errors import (
    not_found,
)
from . import timing
from .common import RetryAfter, now_rfc3339, public


class OperationsMixin:
    # ---- operations --------------------------------------------------------------
    def new_operation(self, op_type: str, target_link: str, target_id: str | None = None, *,
                      zone: str | None = None, region: str | None = None,
                      on_done: dict | None = None, error: list[dict] | None = None,
                      on_error: dict | None = None,
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
        delay = max(self.faults.operation_delay(), timing.duration(self.state.get("timing"), op_type, target_link))
        op["_started_at"] = time.time()
        op["_ready_at"] = op["_started_at"] + delay
        op["_on_done"] = on_done
        op["_error"] = error
        op["_on_error"] = on_error
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
            if op["status"] == "DONE":
                continue
            if op["_ready_at"] <= now:
                self._finish(op)
                changed = True
            elif op["_ready_at"] > op.get("_started_at", now):
                # GCE's progress moves in coarse steps while an operation runs.
                started = op["_started_at"]
                share = (now - started) / (op["_ready_at"] - started)
                op["progress"] = min(90, int(share * 10) * 10)
        # A VM past its run-time limit is stopped (or deleted) by GCE itself.
        changed = self.expire_run_limits() or changed
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
            if op.get("_on_error"):     # what a failed operation leaves behind (partial_insert)
                self._apply(op["_on_error"])
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
        elif kind == "flex_start_ready":
            self._flex_start_ready(action["zone"], action["name"])
        elif kind == "flex_start_failed":
            self._flex_start_failed(action["zone"], action["name"])
        elif kind == "snapshot_ready":
            self._snapshot_ready(action["name"])
        elif kind == "delete_snapshot":
            self.snapshots().pop(action["name"], None)
        elif kind == "delete_firewall":
            self.firewalls().pop(action["name"], None)

    def op_response(self, op: dict) -> tuple[int, dict]:
        return 200, public(op)

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
