"""Resource policies: compact placement (groupPlacementPolicy with collocation COLLOCATED).

GCE's rules for a compact placement policy, as its placement-policies overview states them:
- a policy is regional, and a VM can use only a policy of its own region;
- a VM has at most one resource policy ("Currently a max of 1 resource policy is supported");
- only some machine series can be placed compactly (accelerator A2/A3/A4/G2/G4, compute C2/C2D/
  H3/H4D, general purpose C3/C3D/C4/C4D/N2/N2D, memory M1-M4, Z3): an N1 VM, the one T4s
  attach to, is refused with "Placement policy is not applicable to machine type ...";
- a policy holds at most 1,500 VMs, or its vmCount when one is set;
- a policy in use by a VM cannot be deleted (400 resourceInUseByAnotherResource).

Spread placement (availabilityDomainCount above 1 without collocation), snapshot schedules,
instance schedules and workload policies answer 501: the sandbox does not act on them.
"""

from __future__ import annotations

import time

from .. import catalog
from ..errors import ApiError, already_exists, bad_request, invalid_field, not_found
from .common import check_name, now_rfc3339, parse_ref, public
from .emulated import ANY, check_fields, not_emulated

# Machine series (the machine type's first word) that take a compact placement policy.
COMPACT_SERIES = frozenset({"a2", "a3", "a4", "a4x", "g2", "g4", "c2", "c2d", "h3", "h4d", "c3", "c3d", "c4", "c4d",
                            "n2", "n2d", "m1", "m2", "m3", "m4", "z3"})
MAX_VMS = 1500


def _group_placement(value, path, method):
    if not isinstance(value, dict):
        return
    unknown = set(value) - {"collocation", "vmCount", "availabilityDomainCount"}
    if unknown:
        raise not_emulated(f"{path}.{sorted(unknown)[0]}", method)
    if value.get("collocation", "UNSPECIFIED_COLLOCATION") != "COLLOCATED":
        raise not_emulated(f"{path} without collocation COLLOCATED (a spread placement policy)", method)


RESOURCE_POLICY = {"name": ANY, "description": ANY, "groupPlacementPolicy": _group_placement}


class ResourcePoliciesMixin:
    def resource_policies(self, region: str) -> dict:
        return self.state.setdefault("resourcePolicies", {}).setdefault(region, {})

    def _resource_policy(self, p) -> dict:
        self.check_region(p["region"])
        policy = self.resource_policies(p["region"]).get(p["resourcePolicy"])
        if policy is None:
            raise not_found(self.res_path(f"regions/{p['region']}/resourcePolicies/{p['resourcePolicy']}"))
        return policy

    def h_resourcePolicies__insert(self, p, q, body):  # noqa: N802 - the discovery method id
        check_fields(body, RESOURCE_POLICY, "resource", "compute.resourcePolicies.insert")
        self.check_project(p["project"])
        self.check_region(p["region"])
        name = body.get("name")
        check_name(name)
        region = p["region"]
        if name in self.resource_policies(region):
            raise already_exists(self.res_path(f"regions/{region}/resourcePolicies/{name}"))
        group = dict(body.get("groupPlacementPolicy") or {})
        if not group:
            raise not_emulated("A resource policy other than a compact placement policy",
                               "compute.resourcePolicies.insert")
        for key, low, high in (("vmCount", 1, MAX_VMS), ("availabilityDomainCount", 1, 1)):
            if key in group:
                try:
                    group[key] = int(group[key])
                except (TypeError, ValueError):
                    raise invalid_field(f"resource.groupPlacementPolicy.{key}", group[key],
                                        "Must be an integer.") from None
                if not low <= group[key] <= high:
                    raise invalid_field(f"resource.groupPlacementPolicy.{key}", group[key],
                                        f"Must be between {low} and {high} for a compact placement policy.")
        policy = {
            "kind": "compute#resourcePolicy",
            "id": catalog.stable_id("resourcePolicy", name, str(time.time_ns())),
            "creationTimestamp": now_rfc3339(), "name": name, "description": body.get("description", ""),
            "region": self.link(f"regions/{region}"),
            "selfLink": self.link(f"regions/{region}/resourcePolicies/{name}"),
            "groupPlacementPolicy": group, "status": "READY",
        }
        self.resource_policies(region)[name] = policy
        return self.op_response(self.new_operation("insert", policy["selfLink"], policy["id"], region=region))

    def h_resourcePolicies__get(self, p, q, body):  # noqa: N802 - the discovery method id
        return 200, public(self._resource_policy(p))

    def h_resourcePolicies__list(self, p, q, body):  # noqa: N802 - the discovery method id
        self.check_region(p["region"])
        return 200, self._list([public(r) for r in self.resource_policies(p["region"]).values()], q,
                               "compute#resourcePolicyList", self.link(f"regions/{p['region']}/resourcePolicies"))

    def h_resourcePolicies__delete(self, p, q, body):  # noqa: N802 - the discovery method id
        policy = self._resource_policy(p)
        users = self._policy_users(policy["selfLink"])
        if users:
            project, rest = parse_ref(users[0])
            raise ApiError(400, "The resource_policy resource '%s' is already being used by 'projects/%s/%s'"
                           % (self.res_path(f"regions/{p['region']}/resourcePolicies/{policy['name']}"), project, rest),
                           "resourceInUseByAnotherResource")
        self.resource_policies(p["region"]).pop(policy["name"])
        return self.op_response(self.new_operation("delete", policy["selfLink"], policy["id"], region=p["region"]))

    # ---- what instances.insert asks of them -----------------------------------------------
    def _policy_users(self, self_link: str) -> list[str]:
        return [inst["selfLink"] for table in self.state.get("instances", {}).values() for inst in table.values()
                if self_link in (inst.get("resourcePolicies") or [])]

    def resolve_resource_policies(self, refs: list, zone: str, machine_type: str) -> list[str]:
        """The insert's resourcePolicies as GCE stores them (full links), or GCE's refusal."""
        if not refs:
            return []
        if len(refs) > 1:
            raise invalid_field("resource.resourcePolicies", ", ".join(map(str, refs)),
                                "Currently a max of 1 resource policy is supported.")
        project, rest = parse_ref(str(refs[0]))
        parts = rest.split("/")
        if len(parts) != 4 or parts[0] != "regions" or parts[2] != "resourcePolicies":
            raise invalid_field("resource.resourcePolicies[0]", refs[0], "Invalid resource policy reference.")
        region, name = parts[1], parts[3]
        if (project or self.project) != self.project or name not in self.resource_policies(region):
            raise not_found(f"projects/{project or self.project}/regions/{region}/resourcePolicies/{name}")
        if region != catalog.region_of(zone):
            raise invalid_field("resource.resourcePolicies[0]", refs[0],
                                f"The resource policy must be in the instance's region, {catalog.region_of(zone)}.")
        policy = self.resource_policies(region)[name]
        if machine_type.split("-", 1)[0] not in COMPACT_SERIES:
            raise bad_request(f"Placement policy is not applicable to machine type {machine_type}.")
        limit = policy["groupPlacementPolicy"].get("vmCount") or MAX_VMS
        if len(self._policy_users(policy["selfLink"])) >= limit:
            raise bad_request(f"No more than {limit} instances of machine type {machine_type} can be created with "
                              "this policy.")
        return [policy["selfLink"]]
