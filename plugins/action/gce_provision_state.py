"""Controller half of gce_provision_state: the digest of the run's inputs, as converged_state's.

The same variables and project code as the configure play's record (plugins/action/converged_state.py,
whose functions this loads), here of the provisioning host: the declaration, the credentials' kind
and the project. The files the run keeps on this machine (known_hosts, the ssh-config file) are
digested as they are now.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ansible.plugins.action import ActionBase

_spec = importlib.util.spec_from_file_location("gpu_jupyter_converged_digests",
                                               Path(__file__).with_name("converged_state.py"))
_digests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_digests)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        args["controller"] = _digests.files_digest([p for p in args.pop("controller_files", []) if p])
        if args.get("step") == "check" and "inputs" not in args:
            args["inputs"] = "sha256:%s:%s" % (
                _digests.code_digest(), _digests.vars_digest(task_vars.items(), self._templar.template))
        result.update(self._execute_module(module_name="gce_provision_state", module_args=args,
                                           task_vars=task_vars))
        if "inputs" in args:
            result["inputs"] = args["inputs"]
        return result
