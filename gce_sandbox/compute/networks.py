"""Networks and subnetworks: the auto-mode `default` network and its regional subnets."""

from __future__ import annotations

import re

from .. import catalog
from ..errors import (
    invalid_field,
    not_found,
)
from .common import parse_ref


class NetworksMixin:
    # ---- networks --------------------------------------------------------------------
    def network_resource(self) -> dict:
        return {
            "kind": "compute#network", "id": catalog.stable_id("net", self.project, "default"),
            "creationTimestamp": self.state["created"], "name": "default",
            "description": "Default network for the project", "selfLink": self.link("global/networks/default"),
            "selfLinkWithId": self.link(f"global/networks/{catalog.stable_id('net', self.project, 'default')}"),
            "autoCreateSubnetworks": True,
            "subnetworks": [self.link(f"regions/{r}/subnetworks/default") for r in catalog.REGIONS],
            "routingConfig": {"routingMode": "REGIONAL"},
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL",
        }

    def subnetwork_resource(self, region: str) -> dict:
        cidr = catalog.SUBNET_RANGES[region]
        gw = cidr.split("/")[0].rsplit(".", 1)[0] + ".1"
        return {
            "kind": "compute#subnetwork", "id": catalog.stable_id("subnet", self.project, region),
            "creationTimestamp": self.state["created"], "name": "default",
            "network": self.link("global/networks/default"), "ipCidrRange": cidr, "gatewayAddress": gw,
            "region": self.link(f"regions/{region}"), "selfLink": self.link(f"regions/{region}/subnetworks/default"),
            "privateIpGoogleAccess": False, "fingerprint": "ExAmPlE1234=", "stackType": "IPV4_ONLY",
            "purpose": "PRIVATE",
        }

    def h_networks__get(self, p, q, body):
        if p["network"] != "default":
            raise not_found(self.res_path(f"global/networks/{p['network']}"))
        return 200, self.network_resource()

    def h_networks__list(self, p, q, body):
        return 200, self._list([self.network_resource()], q, "compute#networkList", self.link("global/networks"))

    def h_subnetworks__get(self, p, q, body):
        self.check_region(p["region"])
        if p["subnetwork"] != "default":
            raise not_found(self.res_path(f"regions/{p['region']}/subnetworks/{p['subnetwork']}"))
        return 200, self.subnetwork_resource(p["region"])

    def h_subnetworks__list(self, p, q, body):
        self.check_region(p["region"])
        return 200, self._list([self.subnetwork_resource(p["region"])], q, "compute#subnetworkList",
                               self.link(f"regions/{p['region']}/subnetworks"))

    def resolve_network(self, ref: str, field: str) -> str:
        project, rest = parse_ref(ref)
        m = re.match(r"^global/networks/([^/]+)$", rest)
        if not m or (project and project != self.project):
            raise invalid_field(field, ref, "The referenced network resource cannot be found.")
        if m.group(1) != "default":
            raise not_found(self.res_path(f"global/networks/{m.group(1)}"))
        return self.link("global/networks/default")
