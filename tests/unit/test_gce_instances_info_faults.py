"""gce_instances_info against the local GCE sandbox: a lost connection is named as one, not as a refusal."""

import importlib
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ansible.module_utils  # noqa: E402

if os.path.join(ROOT, "plugins", "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(os.path.join(ROOT, "plugins", "module_utils"))
sys.path.insert(0, os.path.join(ROOT, "plugins", "modules"))

info = importlib.import_module("gce_instances_info")


class FailedError(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs.get("msg"))
        self.result = kwargs


def test_a_lost_connection_says_so_and_that_nothing_changed(sandbox, monkeypatch):
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    sandbox.enable_compute()
    sandbox.add_fault("disconnect", method="GET", path_regex=r"/aggregated/instances$")
    args = {"auth_kind": "accesstoken", "access_token": sandbox.env["GCP_ACCESS_TOKEN"], "project": sandbox.project}

    class FakeModule:
        def __init__(self, argument_spec, **_kwargs):
            self.params = {k: v.get("default") for k, v in argument_spec.items()}
            self.params.update(args)
            self.check_mode = True

        def fail_json(self, **kwargs):
            raise FailedError(kwargs)

        def exit_json(self, **kwargs):
            raise AssertionError("expected a failure, got %r" % (kwargs,))

    monkeypatch.setattr(info, "AnsibleModule", FakeModule)
    monkeypatch.setattr(info.GceClient, "from_module", classmethod(
        lambda cls, module: cls.from_params(module.params, backoff_base=0.02, max_retries=1)))
    with pytest.raises(FailedError) as failed:
        info.main()
    msg = failed.value.result["msg"]
    assert msg.startswith("Lost the connection to the Compute API while listing the VMs ("), msg
    assert "2 attempts); GCE refused nothing, and this read changes nothing." in msg
    assert failed.value.result["error"]["reason"] == "connectionError"
