"""Test-only callback: every module result of a run, one JSON line each, in $INVOCATIONS_LOG.

    ANSIBLE_CALLBACK_PLUGINS=tests/support/callbacks ANSIBLE_CALLBACKS_ENABLED=invocations \
    INVOCATIONS_LOG=/tmp/x.jsonl ansible-playbook site.yml

Records what each task was asked to manage (its module arguments) and whether it changed, so a
test can check that everything the configure roles touch is covered by what converged_state
fingerprints.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: invocations
type: notification
short_description: module arguments of every result, as JSON lines (tests only)
description: [Writes one line per module result to the file named by INVOCATIONS_LOG.]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "invocations"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result):
        path = os.environ.get("INVOCATIONS_LOG")
        if not path:
            return
        task = result._task
        res = result._result
        items = res.get("results") if isinstance(res.get("results"), list) else [res]
        with open(path, "a") as f:
            for item in items:
                if not isinstance(item, dict) or item.get("skipped"):
                    continue
                args = (item.get("invocation") or {}).get("module_args") or {}
                f.write(json.dumps({
                    "host": result._host.get_name(), "play": task.play.get_name() if task.play else "",
                    "role": task._role.get_name() if task._role else "", "task": task.get_name(),
                    "action": task.action, "changed": bool(item.get("changed")),
                    "delegate_to": task.delegate_to if isinstance(task.delegate_to, str) else None,
                    "args": {k: args[k] for k in ("path", "dest", "name", "pkg", "state", "enabled", "virtualenv",
                                                  "resource_type", "resource", "router", "project")
                             if args.get(k) is not None},
                }, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._write(result)
