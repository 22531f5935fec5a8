"""gce_instance_destroy against the local GCE sandbox's faults: a delete past the deadline and a lost
connection say what was deleted, what exists now and what running the destroy again does."""

import importlib

import pytest

from tests.support.fake_module import FailedError, FakeModule, load

destroy = load("gce_instance_destroy")
gce_client = importlib.import_module("ansible.module_utils.gce_client")

NAME = "jupyter-gpu"
ZONE = "us-central1-a"


@pytest.fixture
def run(sandbox, monkeypatch):
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    sandbox.enable_compute()
    params = {"auth_kind": "accesstoken", "access_token": sandbox.env["GCP_ACCESS_TOKEN"], "project": sandbox.project}
    client = gce_client.GceClient.from_params(params, backoff_base=0.02, max_retries=2, poll_interval=0.05)
    client.call("POST", client.zone_path(ZONE, "instances"), {
        "name": NAME, "machineType": f"zones/{ZONE}/machineTypes/n1-standard-4",
        "labels": {"managed-by": "gpu-jupyter"},
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
            "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
        "networkInterfaces": [{"network": "global/networks/default"}]}, timeout=30)
    monkeypatch.setattr(destroy.GceClient, "from_module", classmethod(lambda cls, module: cls.from_params(
        module.params, backoff_base=0.02, max_retries=2, poll_interval=0.05, poll_interval_cap=0.2)))
    monkeypatch.setattr(destroy, "AnsibleModule", FakeModule)

    def _run(**args):
        FakeModule.args = dict(params, name=NAME, zone=ZONE, firewall_name="gpu-jupyter-allow-ssh", timeout=30)
        FakeModule.args.update(args)
        with pytest.raises(FailedError) as info:
            destroy.main()
        return info.value.result
    return _run


def test_a_delete_past_the_deadline_names_the_variable_and_what_is_left(sandbox, run):
    sandbox.add_fault("slow_operations", seconds=30)
    result = run(timeout=1)
    msg = result["msg"]
    assert msg.startswith("Deleting VM %s was not finished after 1s, the limit gce_lifecycle_operation_timeout "
                          "sets; nothing was cancelled" % NAME), msg
    # The boot disk goes with the VM: not counted as deleted while the VM's delete is unfinished.
    assert "No delete was confirmed yet." in msg and result["deleted"]["disks"] == []
    assert "VM %s still exists in %s, status " % (NAME, ZONE) in msg
    assert "Running the destroy again deletes what is left" in msg
    assert "raise gce_lifecycle_operation_timeout (now 1s)" in msg


def test_a_connection_lost_on_the_delete_says_so_and_that_the_vm_is_gone(sandbox, run):
    sandbox.add_fault("disconnect", when="after", method="DELETE", path_regex=r"/instances/%s$" % NAME)
    result = run()
    msg = result["msg"]
    assert msg.startswith("Lost the connection to the Compute API while deleting VM %s (" % NAME), msg
    assert "GCE refused nothing." in msg and "No delete was confirmed yet." in msg
    assert "VM %s is gone from %s." % (NAME, ZONE) in msg
    assert result["error"]["reason"] == "connectionError"
