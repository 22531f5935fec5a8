#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the provision play left in the project, recorded after a complete run and checked before the next.

A converged rerun of the gce_vm role is some 15 API-backed module runs (preflight, the APIs, the
firewall rule, the service account and its grants, Cloud NAT, the VM, its host keys), each a few
tenths of a second on its own and a few calls each. This module reads the same resources in one
run, in parallel, and compares each with what the last complete run recorded, together with a
digest of that run's inputs (the action plugin of the same name computes it). Equal means every
one of those tasks would find nothing to do, so the role can skip them; anything different is
named and the role runs as usual.
"""

DOCUMENTATION = r"""
module: gce_provision_state
short_description: Record, then check in one step, the project resources the gce_vm role leaves
description:
  - C(step=record) reads the VM, its SSH host keys (guest attributes), the firewall rules (all of
    the project's with I(project_firewalls)), the placement policies, the VM's service account, the
    project's and the buckets' IAM policies and the Cloud NAT router, and writes a digest of each
    answer, with I(inputs), I(controller) and I(facts), to I(record) (mode 0600 in a 0700 directory).
  - C(step=check) reads the recorded resources again, in parallel, and reports C(converged=true)
    only when every answer and I(inputs) and I(controller) equal the record. It changes nothing in
    the project, so it runs in check mode too; a check that finds a difference deletes the record.
options:
  step:
    description: C(check) or C(record).
    type: str
    choices: [check, record]
    required: true
  record:
    description: The record's file on the controller (one per project and VM).
    type: path
    required: true
  inputs:
    description: Digest of the run's inputs (variables and project code); the action plugin fills it.
    type: str
    required: true
  controller:
    description: Digest of the files the run keeps on the controller (known_hosts, ssh config); the
      action plugin fills it from C(controller_files).
    type: str
    default: ""
  instance:
    description: With C(step=record), the VM's name.
    type: str
  zone:
    description: With C(step=record), the VM's zone.
    type: str
  firewalls:
    description: With C(step=record), names of the firewall rules.
    type: list
    elements: str
    default: []
  resource_policies:
    description: With C(step=record), self links of the VM's placement policies.
    type: list
    elements: str
    default: []
  service_account:
    description: With C(step=record), the email of the VM's own service account ('' for none).
    type: str
    default: ""
  project_iam:
    description: With C(step=record), whether the project's IAM policy is part of what the run keeps.
    type: bool
    default: false
  buckets:
    description: With C(step=record), buckets whose IAM policies the run keeps.
    type: list
    elements: str
    default: []
  router:
    description: With C(step=record), the Cloud NAT router as C(REGION/NAME) ('' for none).
    type: str
    default: ""
  project_firewalls:
    description: With C(step=record), whether every firewall rule of the project is read too. For a
      VM with an external address, so that a rule added since that lets the internet in reaches
      the preflight's exposure check.
    type: bool
    default: false
  facts:
    description: With C(step=record), facts to hand back by a later converged check.
    type: dict
    default: {}
extends_documentation_fragment:
  - google.cloud.gcp
author: GPU Jupyter project
"""

EXAMPLES = r"""
- name: Compare the project with what the last complete run left in it
  gce_provision_state:
    project: my-project
    auth_kind: application
    step: check
    record: ~/.cache/gpu-jupyter/provision/my-project/jupyter-gpu.json
    controller_files: [~/.ssh/gpu_jupyter_known_hosts]
  register: state

- name: Record what this complete run left
  gce_provision_state:
    project: my-project
    auth_kind: application
    step: record
    record: ~/.cache/gpu-jupyter/provision/my-project/jupyter-gpu.json
    inputs: "{{ state.inputs }}"
    controller_files: [~/.ssh/gpu_jupyter_known_hosts]
    instance: jupyter-gpu
    zone: us-central1-a
    firewalls: [gpu-jupyter-allow-ssh]
    router: us-central1/gpu-jupyter-router
"""

RETURN = r"""
converged:
  description: Whether the project and the inputs are as the last complete run left them.
  type: bool
  returned: always
differences:
  description: What differs, at most 8 lines (empty when converged).
  type: list
  elements: str
  returned: always
facts:
  description: The recorded facts, when converged.
  type: dict
  returned: always
covered:
  description: How many resources the record covers.
  type: int
  returned: with step=record
requests:
  description: API calls made, all of them reads.
  type: int
  returned: always
"""

import errno
import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gce_client import GceApiError, GceClient, GceError, auth_argument_spec

FORMAT = 1
MAX_DIFFERENCES = 8
IAM = "https://iam.googleapis.com/v1/projects/%s/serviceAccounts/%s"
CRM = "https://cloudresourcemanager.googleapis.com/v1/projects/%s:getIamPolicy"
STORAGE_IAM = "https://storage.googleapis.com/storage/v1/b/%s/iam"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
POLICY_VERSION = 3


def reads(client, p):
    """The resources a complete run leaves, as (label, method, path, params, body)."""
    out = [("instance %s" % p["instance"], "GET", client.zone_path(p["zone"], "instances", p["instance"]), None, None),
           ("host keys of %s" % p["instance"], "GET",
            client.zone_path(p["zone"], "instances", p["instance"], "getGuestAttributes"),
            {"queryPath": "hostkeys/"}, None)]
    out += [("firewall rule %s" % name, "GET", client.global_path("firewalls", name), None, None)
            for name in p["firewalls"]]
    if p["project_firewalls"]:
        out.append(("firewall rules of project %s" % client.project, "LIST", client.global_path("firewalls"),
                    None, None))
    out += [("placement policy %s" % link.rsplit("/", 1)[-1], "GET", link, None, None)
            for link in p["resource_policies"]]
    if p["service_account"]:
        out.append(("service account %s" % p["service_account"], "GET",
                    IAM % (client.project, p["service_account"]), None, None))
    if p["project_iam"]:
        out.append(("IAM policy of project %s" % client.project, "POST", CRM % client.project, None,
                    {"options": {"requestedPolicyVersion": POLICY_VERSION}}))
    out += [("IAM policy of bucket %s" % b, "GET", STORAGE_IAM % b,
             {"optionsRequestedPolicyVersion": POLICY_VERSION}, None) for b in p["buckets"]]
    if p["router"]:
        region, _, name = p["router"].partition("/")
        out.append(("Cloud NAT router %s" % name, "GET", client.region_path(region, "routers", name), None, None))
    return [dict(label=label, method=method, path=path, params=params, body=body)
            for label, method, path, params, body in out]


def _digest(answer):
    return hashlib.sha256(json.dumps(answer, sort_keys=True).encode()).hexdigest()


def read_all(client, wanted, threads=8):
    """{label: digest of the answer, 'absent' for a 404, 'error STATUS' for another refusal (the host
    keys of a stopped VM, a permission taken away)}; a connection that keeps failing is raised."""
    def one(r):
        try:
            if r["method"] == "LIST":
                return r["label"], _digest(client.list(r["path"], params=r["params"]))
            return r["label"], _digest(client.request(r["method"], r["path"], body=r["body"], params=r["params"]))
        except GceApiError as exc:
            if exc.status is None:
                raise
            return r["label"], "absent" if exc.status == 404 else "error %d" % exc.status
    if not wanted:
        return {}
    # The first on its own: credentials that need a token fetch it once, not once per thread.
    first = one(wanted[0])
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(wanted) - 1))) as pool:
        rest = list(pool.map(one, wanted[1:]))
    return dict([first] + rest)


def load(path):
    """The record, or None when there is none or it is not trusted: a link is not followed (ELOOP),
    and a file someone else owns or may write is not believed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        try:
            record = json.load(f)
        except ValueError:
            return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def save(path, record):
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".provision-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, sort_keys=True, indent=1)
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def forget(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def compare_run(record, inputs, controller):
    """Why the record cannot vouch for this run before anything is read, as lines."""
    if record is None:
        return ["no record of a complete run"]
    if record.get("inputs") != inputs:
        return ["the variables or the project's code changed since the last complete run"]
    if record.get("controller") != controller:
        return ["known_hosts or the ssh-config file on this machine changed since the last complete run"]
    return []


def compare(record, found):
    """Which recorded resources read differently now, as lines."""
    out = []
    state = record.get("state", {})
    # In the order of the reads: the VM first.
    for label in [r["label"] for r in record.get("reads", [])]:
        now, then = found.get(label), state.get(label)
        if now != then:
            out.append("%s: %s" % (label, "gone" if now == "absent" else "was absent" if then == "absent"
                                   else now if (now or "").startswith("error ") else
                                   "changed since the last complete run"))
    return out


def check(client, path, inputs, controller, check_mode=False):
    """(differences, recorded facts): no differences means converged. A record that differs is dropped."""
    record = load(path)
    differences = compare_run(record, inputs, controller)
    if not differences:
        try:
            differences = compare(record, read_all(client, record.get("reads", [])))
        except GceError as exc:
            # Unreadable now: the role runs as usual, and its own tasks report what is wrong.
            differences = ["could not read the project: %s" % exc]
    if differences and record is not None and not check_mode:
        forget(path)
    return differences, ({} if differences else record.get("facts", {}))


def record(client, path, params):
    """Read what the run left and write the record; returns how many resources it covers."""
    wanted = reads(client, params)
    save(path, dict(format=FORMAT, inputs=params["inputs"], controller=params["controller"], reads=wanted,
                    state=read_all(client, wanted), facts=params["facts"]))
    return len(wanted)


def main():
    spec = auth_argument_spec()
    spec.update(
        step=dict(type="str", required=True, choices=["check", "record"]),
        record=dict(type="path", required=True),
        inputs=dict(type="str", required=True),
        controller=dict(type="str", default=""),
        instance=dict(type="str"),
        zone=dict(type="str"),
        firewalls=dict(type="list", elements="str", default=[]),
        resource_policies=dict(type="list", elements="str", default=[]),
        service_account=dict(type="str", default=""),
        project_iam=dict(type="bool", default=False),
        buckets=dict(type="list", elements="str", default=[]),
        router=dict(type="str", default=""),
        project_firewalls=dict(type="bool", default=False),
        facts=dict(type="dict", default={}),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_if=[("step", "record", ("instance", "zone"))])
    p = module.params
    if not p["scopes"]:
        p["scopes"] = [CLOUD_PLATFORM]
    client = GceClient.from_module(module, use_request_id=False)
    if p["step"] == "check":
        differences, facts = check(client, p["record"], p["inputs"], p["controller"], module.check_mode)
        module.exit_json(changed=False, converged=not differences, differences=differences[:MAX_DIFFERENCES],
                         facts=facts, requests=client.request_count)
    covered = 0
    if not module.check_mode:
        try:
            covered = record(client, p["record"], p)
        except GceError as exc:
            module.fail_json(msg="Recording what the run left in project %s: %s" % (client.project, exc))
    module.exit_json(changed=False, converged=True, differences=[], facts=p["facts"], covered=covered,
                     requests=client.request_count)


if __name__ == "__main__":
    main()
