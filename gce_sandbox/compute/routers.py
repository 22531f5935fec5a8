"""Cloud Routers and their Cloud NAT configs (`nats`): egress for VMs without an external address.

Only what Cloud NAT needs is honoured: a router on the network with NAT configs that allocate
their addresses automatically. BGP, interfaces, manual NAT addresses and NAT rules answer 501.
The sandbox's container VMs keep podman's own egress whatever the routers say: the router is
recorded and checked, not wired into the containers' network.
"""

from __future__ import annotations

import time

from .. import catalog
from ..errors import already_exists, invalid_field, not_found
from .common import check_name, now_rfc3339, public
from .emulated import ANY, check_fields, not_emulated

NAT_RANGES = ("ALL_SUBNETWORKS_ALL_IP_RANGES", "ALL_SUBNETWORKS_ALL_PRIMARY_IP_RANGES", "LIST_OF_SUBNETWORKS")


def _nat_allocation(value, path, method):
    if value != "AUTO_ONLY":
        raise not_emulated(f"{path}={value!r} (reserved NAT addresses)", method)


NAT = {key: ANY for key in ("name", "sourceSubnetworkIpRangesToNat", "subnetworks", "logConfig", "minPortsPerVm",
                            "maxPortsPerVm", "enableDynamicPortAllocation", "enableEndpointIndependentMapping",
                            "udpIdleTimeoutSec", "icmpIdleTimeoutSec", "tcpEstablishedIdleTimeoutSec",
                            "tcpTransitoryIdleTimeoutSec", "tcpTimeWaitTimeoutSec", "type", "endpointTypes",
                            "autoNetworkTier")}
NAT["natIpAllocateOption"] = _nat_allocation
ROUTER = {"name": ANY, "description": ANY, "network": ANY, "nats": [NAT]}


class RoutersMixin:
    def routers(self, region: str) -> dict:
        return self.state.setdefault("routers", {}).setdefault(region, {})

    def _check_nats(self, nats: list, field: str) -> None:
        seen = set()
        for i, nat in enumerate(nats):
            where = f"{field}.nats[{i}]"
            check_name(nat.get("name"), f"{where}.name")
            if nat["name"] in seen:
                raise invalid_field(f"{where}.name", nat["name"], "NAT names must be unique within a router.")
            seen.add(nat["name"])
            if not nat.get("natIpAllocateOption"):
                raise invalid_field(f"{where}.natIpAllocateOption", "", "Required field is not specified.")
            if nat.get("sourceSubnetworkIpRangesToNat") not in NAT_RANGES:
                raise invalid_field(f"{where}.sourceSubnetworkIpRangesToNat",
                                    nat.get("sourceSubnetworkIpRangesToNat", ""),
                                    "Must be one of " + ", ".join(NAT_RANGES) + ".")

    def _router_record(self, region: str, body: dict, existing: dict | None, field: str = "resource") -> dict:
        name = body.get("name") or (existing or {}).get("name")
        check_name(name, f"{field}.name")
        if not body.get("network"):
            raise invalid_field(f"{field}.network", "", "Required field is not specified.")
        nats = [dict(n) for n in body.get("nats") or []]
        self._check_nats(nats, field)
        return {
            "kind": "compute#router",
            "id": (existing or {}).get("id") or catalog.stable_id("router", name, str(time.time_ns())),
            "creationTimestamp": (existing or {}).get("creationTimestamp") or now_rfc3339(),
            "name": name, "description": body.get("description", ""),
            "network": self.resolve_network(body["network"], f"{field}.network"),
            "region": self.link(f"regions/{region}"),
            "selfLink": self.link(f"regions/{region}/routers/{name}"),
            "nats": nats,
        }

    def _router(self, p) -> dict:
        self.check_region(p["region"])
        router = self.routers(p["region"]).get(p["router"])
        if router is None:
            raise not_found(self.res_path(f"regions/{p['region']}/routers/{p['router']}"))
        return router

    def h_routers__insert(self, p, q, body):
        check_fields(body, ROUTER, "resource", "compute.routers.insert")
        self.check_project(p["project"])
        self.check_region(p["region"])
        check_name(body.get("name"))
        if body["name"] in self.routers(p["region"]):
            raise already_exists(self.res_path(f"regions/{p['region']}/routers/{body['name']}"))
        router = self._router_record(p["region"], body, None)
        self.routers(p["region"])[router["name"]] = router
        return self.op_response(self.new_operation("insert", router["selfLink"], router["id"], region=p["region"]))

    def h_routers__get(self, p, q, body):
        return 200, public(self._router(p))

    def h_routers__list(self, p, q, body):
        self.check_region(p["region"])
        return 200, self._list([public(r) for r in self.routers(p["region"]).values()], q, "compute#routerList",
                               self.link(f"regions/{p['region']}/routers"))

    def h_routers__patch(self, p, q, body):
        check_fields(body, ROUTER, "resource", "compute.routers.patch")
        router = self._router(p)
        if body.get("name") and body["name"] != router["name"]:
            raise invalid_field("resource.name", body["name"], "Router name cannot be changed.")
        if body.get("network") and self.resolve_network(body["network"], "resource.network") != router["network"]:
            raise invalid_field("resource.network", body["network"], "Router network cannot be changed.")
        merged = dict(public(router))
        merged.update(body)   # PATCH replaces a list it is given whole: `nats` too, as in GCE
        self.routers(p["region"])[router["name"]] = self._router_record(p["region"], merged, router)
        return self.op_response(self.new_operation("patch", router["selfLink"], router["id"], region=p["region"]))

    def h_routers__delete(self, p, q, body):
        router = self._router(p)
        # Gone at once rather than when the operation ends: nothing in the sandbox waits on it.
        self.routers(p["region"]).pop(router["name"])
        return self.op_response(self.new_operation("delete", router["selfLink"], router["id"], region=p["region"]))
