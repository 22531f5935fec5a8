#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gce_iam_binding
short_description: Grant or revoke one member's roles on a project or a Cloud Storage bucket
description:
  - Adds (C(state=present)) or removes (C(state=absent)) one member in the bindings of the given
    roles in the IAM policy of a project (Cloud Resource Manager) or of a bucket (Cloud Storage
    bucket-level IAM). Every other member, every other role and every conditional binding is
    left exactly as it was.
  - A read-modify-write guarded by the policy's etag; when someone else changed the policy in
    between (409 ABORTED for a project, 412 for a bucket) the whole read-modify-write is tried
    again, up to O(attempts) times with exponential backoff.
  - A service account created moments ago may not be known to IAM yet (IAM is eventually
    consistent) and GCP then refuses the policy with "Service account ... does not exist."; that
    is retried until O(timeout).
  - The google.cloud collection (1.10) has no module for project or bucket IAM bindings.
  - Idempotent (no write when the member already holds exactly what is asked); supports check
    mode and diff mode. Revoking from a resource that no longer exists changes nothing.
version_added: "1.0.0"
options:
  resource_type:
    description: Whose policy, C(project) or C(bucket).
    type: str
    required: true
    choices: [project, bucket]
  resource:
    description: The bucket's name for C(bucket); the project's id for C(project) (default O(project)).
    type: str
  member:
    description: The member, e.g. C(serviceAccount:vm@my-project.iam.gserviceaccount.com).
    type: str
    required: true
  roles:
    description: Roles to grant to or revoke from O(member), e.g. C(roles/logging.logWriter).
    type: list
    elements: str
    required: true
  state:
    description: C(present) grants, C(absent) revokes (only these roles, only this member).
    type: str
    default: present
    choices: [present, absent]
  attempts:
    description: How many times to run the whole read-modify-write when the policy changed underneath it.
    type: int
    default: 5
  timeout:
    description: Seconds to keep trying while IAM does not know the member yet.
    type: int
    default: 120
extends_documentation_fragment:
  - google.cloud.gcp
author: GPU Jupyter project
"""

EXAMPLES = r"""
- name: Service account | Let the VM write logs
  gce_iam_binding:
    project: my-project
    auth_kind: application
    resource_type: project
    member: serviceAccount:jupyter-gpu-vm@my-project.iam.gserviceaccount.com
    roles: [roles/logging.logWriter, roles/monitoring.metricWriter]

- name: Service account | Let the VM read the bucket it pulls from
  gce_iam_binding:
    project: my-project
    auth_kind: application
    resource_type: bucket
    resource: my-bucket
    member: serviceAccount:jupyter-gpu-vm@my-project.iam.gserviceaccount.com
    roles: [roles/storage.objectViewer]
"""

RETURN = r"""
added:
  description: Roles granted by this run (or that would be, in check mode).
  type: list
  elements: str
  returned: always
removed:
  description: Roles revoked by this run (or that would be, in check mode).
  type: list
  elements: str
  returned: always
roles:
  description: Every role the member holds on the resource afterwards (unconditional bindings).
  type: list
  elements: str
  returned: always
attempts: {description: Read-modify-write rounds it took (0 when nothing was written)., type: int, returned: always}
etag: {description: The policy's etag afterwards., type: str, returned: always}
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gce_client import GceApiError, GceClient, GceError, auth_argument_spec

CRM = "https://cloudresourcemanager.googleapis.com/v1/projects/%s"
STORAGE = "https://storage.googleapis.com/storage/v1/b/%s/iam"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# Version 3 returns conditional bindings as they are; a version-1 read of a policy with
# conditions would give a policy that cannot be written back without losing them.
POLICY_VERSION = 3


class PolicyConflictError(GceError):
    """The policy changed between our read and our write, every time we tried."""


def member_roles(policy):
    """Roles the member holds unconditionally, by member: {member: set(roles)}."""
    out = {}
    for binding in policy.get("bindings") or []:
        if binding.get("condition"):
            continue
        for member in binding.get("members") or []:
            out.setdefault(member, set()).add(binding.get("role"))
    return out


def plan(policy, member, roles, state):
    """(new policy or None when nothing changes, added roles, removed roles)."""
    held = member_roles(policy).get(member, set())
    wanted = list(dict.fromkeys(roles))
    if state == "present":
        change = [r for r in wanted if r not in held]
    else:
        change = [r for r in wanted if r in held]
    if not change:
        return None, [], []
    bindings = [dict(b, members=list(b.get("members") or [])) for b in policy.get("bindings") or []]
    for role in change:
        binding = next((b for b in bindings if b.get("role") == role and not b.get("condition")), None)
        if state == "present":
            if binding is None:
                bindings.append({"role": role, "members": [member]})
            else:
                binding["members"].append(member)
        else:
            binding["members"] = [m for m in binding["members"] if m != member]
    bindings = [b for b in bindings if b["members"]]
    new = dict(policy, bindings=bindings)
    if any(b.get("condition") for b in bindings):
        new["version"] = POLICY_VERSION
    return new, (change if state == "present" else []), (change if state == "absent" else [])


class PolicyStore(object):
    """Read and write one resource's IAM policy."""

    def __init__(self, client, resource_type, resource):
        self.client = client
        self.resource_type = resource_type
        self.resource = resource

    def read(self):
        if self.resource_type == "project":
            return self.client.post(CRM % self.resource + ":getIamPolicy",
                                    body={"options": {"requestedPolicyVersion": POLICY_VERSION}})
        return self.client.get(STORAGE % self.resource, params={"optionsRequestedPolicyVersion": POLICY_VERSION})

    def write(self, policy):
        if self.resource_type == "project":
            return self.client.post(CRM % self.resource + ":setIamPolicy", body={"policy": policy})
        return self.client.request("PUT", STORAGE % self.resource, body=policy)


def is_conflict(exc):
    return exc.status in (409, 412) and exc.reason not in ("alreadyExists",)


def is_unknown_member(exc):
    return exc.status == 400 and "does not exist" in (exc.message or "")


def converge(store, member, roles, state, check_mode, attempts=5, timeout=120,
             sleep=time.sleep, clock=time.monotonic):
    """Bring the member's roles to `state`; returns the module's result (without `changed`)."""
    deadline = clock() + timeout
    delay = 1.0
    rounds = 0
    while True:
        try:
            policy = store.read()
        except GceApiError as exc:
            # Revoking from a bucket (or project) that is gone: nothing is left to revoke.
            if exc.status == 404 and state == "absent":
                return dict(added=[], removed=[], attempts=rounds, etag="", roles=[])
            raise
        new, added, removed = plan(policy, member, roles, state)
        if new is None or check_mode:
            after = policy if new is None else new
            return dict(added=added, removed=removed, attempts=rounds, etag=policy.get("etag", ""),
                        roles=sorted(member_roles(after).get(member, set())))
        rounds += 1
        try:
            written = store.write(new)
        except GceApiError as exc:
            if is_conflict(exc) and rounds < attempts:
                sleep(delay)
                delay = min(delay * 2, 16.0)
                continue
            if is_conflict(exc):
                raise PolicyConflictError(
                    "the policy changed between our read and our write %d times in a row (%s)"
                    % (rounds, exc.message)) from exc
            if is_unknown_member(exc) and clock() + delay < deadline:
                rounds -= 1
                sleep(delay)
                delay = min(delay * 2, 16.0)
                continue
            raise
        return dict(added=added, removed=removed, attempts=rounds, etag=(written or {}).get("etag", ""),
                    roles=sorted(member_roles(written or new).get(member, set())))


def main():
    spec = auth_argument_spec()
    spec.update(
        resource_type=dict(type="str", required=True, choices=["project", "bucket"]),
        resource=dict(type="str"),
        member=dict(type="str", required=True),
        roles=dict(type="list", elements="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        attempts=dict(type="int", default=5),
        timeout=dict(type="int", default=120),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    if not p["scopes"]:
        p["scopes"] = [CLOUD_PLATFORM]
    resource = p["resource"] or (p["project"] if p["resource_type"] == "project" else None)
    if not resource:
        module.fail_json(msg="resource: the bucket's name is required when resource_type is bucket")
    if ":" not in p["member"]:
        module.fail_json(msg="member %r: write it as kind:id, e.g. serviceAccount:vm@p.iam.gserviceaccount.com"
                             % p["member"])
    client = GceClient.from_module(module, use_request_id=False)
    store = PolicyStore(client, p["resource_type"], resource)
    what = "%s %s" % (p["resource_type"], resource)
    try:
        result = converge(store, p["member"], p["roles"], p["state"], module.check_mode,
                          attempts=max(1, p["attempts"]), timeout=p["timeout"])
    except (GceApiError, GceError) as exc:
        module.fail_json(msg="IAM policy of %s, %s %s: %s" % (
            what, "granting" if p["state"] == "present" else "revoking", ", ".join(p["roles"]), exc))
    changed = bool(result["added"] or result["removed"])
    if changed and getattr(module, "_diff", False):
        before = sorted(set(result["roles"]) - set(result["added"]) | set(result["removed"]))
        header = "%s: %s" % (what, p["member"])
        result["diff"] = {"before": {"roles": before}, "after": {"roles": result["roles"]},
                          "before_header": header, "after_header": header}
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
