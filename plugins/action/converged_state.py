"""Controller half of converged_state: the digest of everything a configure run reads here.

Two runs with the same digest would send the same work to the VM: the same values of every
variable the host has (inventory, group_vars, extra vars, the VM's connection, the roles' defaults
and vars, the cluster's groups) and the same project code (roles, plugins, playbooks). Facts are
left out: they are gathered on the VM during the run, and the module checks the VM itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

PROJECT = Path(__file__).resolve().parents[2]
CODE = ("roles", "plugins", "playbooks")
# Values that differ between runs that do the same work, or that describe the run, not the VM.
IGNORED = frozenset((
    "omit", "hostvars", "vars", "environment", "ansible_facts", "ansible_local", "playbook_dir",
    "ansible_check_mode", "ansible_diff_mode", "ansible_verbosity", "ansible_run_tags",
    "ansible_skip_tags", "ansible_limit", "ansible_forks", "ansible_play_batch", "ansible_play_hosts",
    "ansible_play_hosts_all", "ansible_config_file", "ansible_inventory_sources", "inventory_dir",
    "inventory_file", "ansible_search_path", "ansible_playbook_python", "ansible_play_name",
    "ansible_parent_role_names", "ansible_parent_role_paths", "role_path", "role_name", "role_uuid",
    # The roles in play, in an order that varies between runs; the code digest covers them.
    "ansible_role_names", "ansible_play_role_names", "ansible_dependent_role_names", "role_names",
    # A credential says who asks, not what is asked: a token renewed every hour (GCP_ACCESS_TOKEN)
    # must not make every run a full one.
    "gcp_access_token",
))


def code_digest(root=PROJECT):
    digest = hashlib.sha256()
    for part in CODE:
        for folder, dirs, files in os.walk(root / part):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = Path(folder, name)
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def files_digest(paths):
    digest = hashlib.sha256()
    for path in sorted(os.path.expanduser(p) for p in paths):
        try:
            content = Path(path).read_bytes()
        except FileNotFoundError:
            content = b"<absent>"
        digest.update(path.encode() + b"\0" + content + b"\0")
    return digest.hexdigest() if paths else ""


def vars_digest(names_values, template):
    digest = hashlib.sha256()
    for name, raw in sorted(names_values):
        if name in IGNORED:
            continue
        try:
            value = template(raw)
        except AnsibleError as e:  # an undefined value is a value too: the next run must agree on it
            value = "<%s>" % type(e).__name__
        digest.update(name.encode() + b"=" + json.dumps(value, sort_keys=True, default=repr).encode() + b"\n")
    return digest.hexdigest()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        # Files the run writes on this machine (a cluster's node list): checked as they are now.
        args["controller"] = files_digest(args.pop("controller_files", []))
        if args.get("step") == "check" and "inputs" not in args:
            args["inputs"] = "sha256:%s:%s" % (
                code_digest(), vars_digest(task_vars.items(), self._templar.template))
        result.update(self._execute_module(module_name="converged_state", module_args=args,
                                           task_vars=task_vars))
        if "inputs" in args:
            result["inputs"] = args["inputs"]
        return result
