"""VPC firewall rules."""

from __future__ import annotations

import re
import time

from .. import catalog
from ..errors import (
    already_exists,
    invalid_field,
    not_found,
)
from .common import check_name, now_rfc3339, public
from .emulated import FIREWALL, check_fields


class FirewallsMixin:
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
        check_fields(body, FIREWALL, "resource", "compute.firewalls.insert")
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
        check_fields(body, FIREWALL, "resource", "compute.firewalls.patch")
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
        check_fields(body, FIREWALL, "resource", "compute.firewalls.update")
        fw = self.firewalls().get(p["firewall"])
        if fw is None:
            raise not_found(self.res_path(f"global/firewalls/{p['firewall']}"))
        self.firewalls()[fw["name"]] = self._firewall_record(dict(body, name=fw["name"]), fw)
        return self.op_response(self.new_operation("update", fw["selfLink"], fw["id"]))

