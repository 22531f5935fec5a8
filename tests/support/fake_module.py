"""Run one of the project's modules' main() in the test process: import it with the project's
module_utils, and stand in for AnsibleModule so fail_json and exit_json raise what they got."""

import importlib
import os
import sys

import ansible.module_utils

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(name):
    """The module plugins/modules/<name>.py, importing ansible.module_utils.<x> from plugins/module_utils."""
    utils = os.path.join(ROOT, "plugins", "module_utils")
    if utils not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(utils)
    modules = os.path.join(ROOT, "plugins", "modules")
    if modules not in sys.path:
        sys.path.insert(0, modules)
    return importlib.import_module(name)


class FailedError(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs.get("msg"))
        self.result = kwargs


class ExitedError(Exception):
    def __init__(self, kwargs):
        super().__init__("exit")
        self.result = kwargs


class FakeModule:
    """Just enough of AnsibleModule: params with the spec's defaults (and `args` over them), check
    mode off, fail_json and exit_json raising FailedError and ExitedError."""

    args = {}

    def __init__(self, argument_spec, supports_check_mode=False):
        self.params = {k: v.get("default") for k, v in argument_spec.items()}
        self.params.update(self.args)
        self.check_mode = False

    def fail_json(self, **kwargs):
        raise FailedError(kwargs)

    def exit_json(self, **kwargs):
        raise ExitedError(kwargs)
