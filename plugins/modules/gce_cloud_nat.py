#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gce_cloud_nat
short_description: Give VMs without an external address egress through Cloud NAT
description:
  - Ensures a Cloud Router on the network in the region carries a Cloud NAT config that
    translates every subnet's addresses with automatically allocated addresses, so a VM
    without an external IP can still reach apt, pip and the Google APIs, and nothing on the
    internet can open a connection to it.
  - The google.cloud collection has no NAT module; this one talks to compute.routers.
  - Idempotent; supports check mode. C(state=absent) removes the NAT config, and the router
    when it carries nothing else.
version_added: "1.0.0"
options:
  region: {description: Region of the router (the VM's zone's region)., type: str, required: true}
  network: {description: VPC network name., type: str, default: default}
  router: {description: Cloud Router name., type: str, default: gpu-jupyter-router}
  nat: {description: Name of the NAT config on the router., type: str, default: gpu-jupyter-nat}
  state: {description: present or absent., type: str, default: present, choices: [present, absent]}
  timeout: {description: Seconds to wait for each operation., type: int, default: 300}
extends_documentation_fragment:
  - google.cloud.gcp
author: GPU Jupyter project
"""

EXAMPLES = r"""
- name: Instance | Give the VM egress through Cloud NAT
  gce_cloud_nat:
    project: "{{ gcp_project }}"
    auth_kind: "{{ gcp_auth_kind }}"
    region: us-central1
    network: default
"""

RETURN = r"""
action: {description: created, added, removed, deleted or unchanged., type: str, returned: always}
router: {description: The router as the API returns it (absent when deleted or missing)., type: dict, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gce_client import GceClient, GceApiError, GceError, auth_argument_spec


def nat_config(name):
    """Every subnet's addresses, automatically allocated NAT addresses: what the VM needs and no more."""
    return {"name": name, "natIpAllocateOption": "AUTO_ONLY",
            "sourceSubnetworkIpRangesToNat": "ALL_SUBNETWORKS_ALL_IP_RANGES"}


def plan(router, p):
    """(action, method, body) that brings the router to the wanted state; method None: nothing to do."""
    nats = (router or {}).get("nats") or []
    has = any(n.get("name") == p["nat"] for n in nats)
    if p["state"] == "present":
        if router is None:
            return "created", "POST", {"name": p["router"], "network": p["network_link"],
                                       "description": "Egress for gpu-jupyter VMs without an external address",
                                       "nats": [nat_config(p["nat"])]}
        if has:
            return "unchanged", None, None
        return "added", "PATCH", {"nats": nats + [nat_config(p["nat"])]}
    if router is None or not has:
        return "unchanged", None, None
    rest = [n for n in nats if n.get("name") != p["nat"]]
    if rest or router.get("bgpPeers") or router.get("interfaces"):
        return "removed", "PATCH", {"nats": rest}
    return "deleted", "DELETE", None


def main():
    spec = auth_argument_spec()
    spec.update(
        region=dict(type="str", required=True),
        network=dict(type="str", default="default"),
        router=dict(type="str", default="gpu-jupyter-router"),
        nat=dict(type="str", default="gpu-jupyter-nat"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        timeout=dict(type="int", default=300),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = dict(module.params)
    client = GceClient.from_module(module)
    p["network_link"] = client.url(client.global_path("networks", p["network"]))
    path = client.region_path(p["region"], "routers", p["router"])
    try:
        router = client.get_or_none(path)
        if router is not None and router.get("network", "").rstrip("/").rsplit("/", 1)[-1] != p["network"]:
            module.fail_json(msg="Router %s in %s belongs to network %s, not %s: set gce_vm_nat_router to another "
                                 "name." % (p["router"], p["region"], router.get("network"), p["network"]))
        action, method, body = plan(router, p)
        if method and not module.check_mode:
            if method == "POST":
                client.call("POST", client.region_path(p["region"], "routers"), body=body, timeout=p["timeout"])
            else:
                client.call(method, path, body=body, timeout=p["timeout"])
            router = client.get_or_none(path)
    except (GceApiError, GceError) as exc:
        module.fail_json(msg="Cloud NAT on %s in %s: %s" % (p["router"], p["region"], exc))
    module.exit_json(changed=method is not None, action=action, router=router or {})


if __name__ == "__main__":
    main()
