"""Cloud Resource Manager v1 and v3: projects get / list, and the project's IAM policy
(getIamPolicy / setIamPolicy, a read-modify-write guarded by the policy's etag).

A new project's policy: its creator as owner, and the Compute Engine default service account and
the Google APIs service agent as editors — which is why a VM running as the default account can
change most of the project.
"""

from __future__ import annotations

import copy

from . import catalog
from .errors import ApiError
from .iam import Iam, concurrent_change, default_compute_account, new_etag


def initial_policy(project: str) -> dict:
    number = catalog.project_number(project)
    return {"version": 1, "etag": new_etag(), "bindings": [
        {"role": "roles/editor", "members": [f"serviceAccount:{default_compute_account(project)}",
                                             f"serviceAccount:{number}@cloudservices.gserviceaccount.com"]},
        {"role": "roles/owner", "members": ["user:owner@example.com"]},
    ]}


def clean_bindings(bindings: list) -> list:
    """What a policy keeps: bindings with members, each member once."""
    out = []
    for binding in bindings or []:
        members = sorted(set(binding.get("members") or []))
        if not members:
            continue
        role = binding.get("role") or ""
        if not role.startswith(("roles/", "projects/", "organizations/")):
            raise ApiError(400, f"Role {role} is not supported for this resource.", "badRequest")
        kept = {"role": role, "members": members}
        if binding.get("condition"):
            kept["condition"] = binding["condition"]
        out.append(kept)
    return out


class ResourceManager:
    def __init__(self, state: dict, iam: Iam):
        self.state = state
        self.project = state["project"]
        self.number = catalog.project_number(self.project)
        self.iam = iam
        if "iam_policy" not in state:
            state["iam_policy"] = initial_policy(self.project)

    def project_v1(self) -> dict:
        return {"projectNumber": self.number, "projectId": self.project, "lifecycleState": "ACTIVE",
                "name": self.project, "createTime": self.state["created"]}

    def project_v3(self) -> dict:
        return {"name": f"projects/{self.number}", "projectId": self.project, "state": "ACTIVE",
                "displayName": self.project, "createTime": self.state["created"], "etag": "W/\"sandbox\""}

    def _check(self, ident: str | None) -> None:
        if ident not in (self.project, self.number):
            raise ApiError(403, "The caller does not have permission", "forbidden")

    def handle(self, method_id: str, version: str, params: dict, body: dict | None) -> tuple[int, dict]:
        if method_id == "cloudresourcemanager.projects.list":
            return 200, {"projects": [self.project_v1() if version == "v1" else self.project_v3()]}
        # v1 names the project in {projectId} or {resource}, v3 in {projectsId} (of projects/ID).
        self._check(params.get("projectsId") or params.get("projectId") or params.get("resource"))
        if method_id == "cloudresourcemanager.projects.get":
            return 200, self.project_v1() if version == "v1" else self.project_v3()
        policy = self.state["iam_policy"]
        if method_id == "cloudresourcemanager.projects.getIamPolicy":
            return 200, copy.deepcopy(policy)
        if method_id == "cloudresourcemanager.projects.setIamPolicy":
            wanted = (body or {}).get("policy")
            if not isinstance(wanted, dict):
                raise ApiError(400, "Request contains an invalid argument.", "badRequest")
            given = wanted.get("etag")
            if given and given != policy["etag"]:
                raise concurrent_change(given, policy["etag"])
            bindings = clean_bindings(wanted.get("bindings"))
            self.iam.check_members(bindings)
            policy.update({"bindings": bindings, "etag": new_etag(), "version": int(wanted.get("version") or 1)})
            return 200, copy.deepcopy(policy)
        raise ApiError(501, f"Method {method_id} is not implemented by the sandbox.", "notImplemented")
