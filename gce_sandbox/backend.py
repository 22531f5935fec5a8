"""What a sandbox VM is backed by.

The API layer (the compute package) owns the resource records; a backend owns the side effects of a
VM's lifecycle and hands back the network addresses the instance shows. The default backend
allocates fake addresses only (nothing ever listens on them): external ones from
203.0.113.0/24 (TEST-NET-3, RFC 5737), internal ones from the region's subnet of the
`default` network (10.128.0.x in us-central1). A container-backed backend can implement the
same four calls and return the addresses of a real container instead.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from . import catalog


@dataclass
class Addresses:
    internal_ip: str | None = None      # networkInterfaces[0].networkIP
    external_ip: str | None = None      # accessConfigs[0].natIP (None: no external address)


class VmBackend(Protocol):
    def on_create(self, instance: dict, external: bool) -> Addresses: ...
    def on_start(self, instance: dict, external: bool) -> Addresses: ...
    def on_stop(self, instance: dict) -> None: ...
    def on_delete(self, instance: dict) -> None: ...


class FakeAddressBackend:
    """Allocates addresses from counters kept in the sandbox state (so they survive restarts)."""

    def __init__(self, state: dict):
        self.state = state

    def _counters(self) -> dict:
        return self.state.setdefault("address_counters", {"external": 0, "internal": {}})

    def _next_external(self) -> str:
        c = self._counters()
        c["external"] = c["external"] % 250 + 1
        return f"203.0.113.{c['external'] + 2}"

    def _next_internal(self, zone: str) -> str:
        region = catalog.region_of(zone)
        net = ipaddress.ip_network(catalog.SUBNET_RANGES.get(region, "10.128.0.0/20"))
        c = self._counters()["internal"]
        c[region] = c.get(region, 0) + 1
        return str(net.network_address + 1 + c[region])   # .1 is the gateway

    def on_create(self, instance: dict, external: bool) -> Addresses:
        zone = instance["zone"].rsplit("/", 1)[-1]
        return Addresses(self._next_internal(zone), self._next_external() if external else None)

    def on_start(self, instance: dict, external: bool) -> Addresses:
        # Internal IPs are kept across stop/start; ephemeral external IPs are not (as on GCE).
        nic = (instance.get("networkInterfaces") or [{}])[0]
        return Addresses(nic.get("networkIP"), self._next_external() if external else None)

    def on_stop(self, instance: dict) -> None:
        return None

    def on_delete(self, instance: dict) -> None:
        return None
