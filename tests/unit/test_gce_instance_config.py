"""Unit tests of gce_instance_config's planning (diff) and apply logic, against a scripted client."""

import copy
import importlib.util
import json
import os
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))
import gce_client  # noqa: E402

# Ansible resolves `ansible.module_utils.gce_client` from ansible.cfg's module_utils path at run
# time; under pytest point that name at the same file.
sys.modules["ansible.module_utils.gce_client"] = gce_client
_spec = importlib.util.spec_from_file_location(
    "gce_instance_config", os.path.join(ROOT, "plugins", "modules", "gce_instance_config.py"))
mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mod)

BASE = "https://compute.googleapis.com/compute/v1/projects/proj/zones/us-central1-a"


def instance(status="RUNNING", machine="n1-standard-8", gpus=1, ohm="TERMINATE", boot_gb=100):
    return {
        "name": "vm",
        "status": status,
        "selfLink": BASE + "/instances/vm",
        "machineType": BASE + "/machineTypes/" + machine,
        "guestAccelerators": (
            [{"acceleratorType": BASE + "/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": gpus}] if gpus else []
        ),
        "scheduling": {
            "onHostMaintenance": ohm,
            "automaticRestart": True,
            "preemptible": False,
            "provisioningModel": "STANDARD",
        },
        "metadata": {
            "fingerprint": "md1",
            "items": [
                {"key": "install-nvidia-driver", "value": "True"},
                {"key": "ssh-keys", "value": "me:ssh-ed25519 AAA"},
            ],
        },
        "labels": {"managed-by": "gpu-jupyter"},
        "labelFingerprint": "lf1",
        "serviceAccounts": [
            {
                "email": "123-compute@developer.gserviceaccount.com",
                "scopes": ["https://www.googleapis.com/auth/devstorage.read_only"],
            }
        ],
        "disks": [
            {"deviceName": "persistent-disk-0", "boot": True, "source": BASE + "/disks/vm", "diskSizeGb": str(boot_gb)},
            {"deviceName": "data", "boot": False, "source": BASE + "/disks/vm-data", "diskSizeGb": "50"},
        ],
    }


def disks(boot_gb=100, data_gb=50):
    return {"persistent-disk-0": {"sizeGb": str(boot_gb), "selfLink": BASE + "/disks/vm"},
            "data": {"sizeGb": str(data_gb), "selfLink": BASE + "/disks/vm-data"}}


def params(**kw):
    base = dict(name="vm", zone="us-central1-a", status=None, allow_stop=False, machine_type=None,
                accelerators=None, scheduling=None, metadata=None, purge_metadata=False, labels=None,
                purge_labels=False, service_account=None, boot_disk_size_gb=None, disks=None, timeout=60)
    base.update(kw)
    return base


def calls(changes):
    return [c["call"] for c in changes]


# ---- planning (the diff) -------------------------------------------------------------------

def test_converged_request_plans_nothing():
    p = params(machine_type="n1-standard-8", accelerators=[{"type": "nvidia-tesla-t4", "count": 1}],
               metadata={"install-nvidia-driver": True}, labels={"managed-by": "gpu-jupyter"},
               service_account={"email": "default", "scopes": ["storage-ro"]}, boot_disk_size_gb=100,
               disks=[{"device_name": "data", "size_gb": 50}])
    before, after, changes, needs_stop, _ = mod.plan_changes(p, instance(), disks())
    assert changes == [] and not needs_stop and before == after


def test_fewer_gpus_change_machine_type_first():
    p = params(machine_type="n1-standard-4", accelerators=[])
    _, _, changes, _, _ = mod.plan_changes(p, instance(gpus=4), disks())
    assert calls(changes) == ["setMachineType", "setMachineResources"]


def test_upgrade_plans_gpus_then_machine_type_then_disk():
    p = params(machine_type="n1-standard-16", accelerators=[{"type": "nvidia-tesla-t4", "count": 2}],
               boot_disk_size_gb=200)
    before, after, changes, needs_stop, _ = mod.plan_changes(p, instance(), disks())
    assert calls(changes) == ["setMachineResources", "setMachineType", "disks.resize"]
    assert needs_stop
    assert changes[1]["body"] == {"machineType": "zones/us-central1-a/machineTypes/n1-standard-16"}
    assert changes[0]["body"]["guestAccelerators"] == [
        {"acceleratorType": "projects/proj/zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 2}
    ]
    assert changes[2]["body"] == {"sizeGb": "200"} and changes[2]["target"] == BASE + "/disks/vm"
    assert before["accelerators"] == {"nvidia-tesla-t4": 1} and after["accelerators"] == {"nvidia-tesla-t4": 2}
    assert (before["disks"]["persistent-disk-0"], after["disks"]["persistent-disk-0"]) == (100, 200)


def test_adding_gpus_forces_terminate_before_set_machine_resources():
    p = params(accelerators=[{"type": "nvidia-tesla-t4", "count": 1}])
    _, after, changes, _, _ = mod.plan_changes(p, instance(gpus=0, ohm="MIGRATE"), {})
    assert calls(changes) == ["setScheduling", "setMachineResources"]
    assert changes[0]["body"]["onHostMaintenance"] == "TERMINATE"
    assert changes[0]["body"]["automaticRestart"] is True  # unmanaged fields are kept
    assert after["scheduling"]["on_host_maintenance"] == "TERMINATE"


def test_migrate_with_gpus_is_refused():
    p = params(scheduling={"on_host_maintenance": "MIGRATE"})
    with pytest.raises(mod.ConfigError, match="cannot live-migrate"):
        mod.plan_changes(p, instance(gpus=1), {})


def test_gpus_on_builtin_gpu_machine_type_are_refused():
    p = params(machine_type="g2-standard-8", accelerators=[{"type": "nvidia-l4", "count": 1}])
    with pytest.raises(mod.ConfigError, match="^gce_vm_gpu_count: .* built in"):
        mod.plan_changes(p, instance(), {})


def test_removing_gpus_sends_empty_list():
    _, _, changes, needs_stop, _ = mod.plan_changes(params(accelerators=[]), instance(), {})
    assert calls(changes) == ["setMachineResources"] and needs_stop
    assert changes[0]["body"] == {"guestAccelerators": []}


def test_shrink_is_refused_before_anything_else_is_planned():
    p = params(machine_type="n1-standard-16", boot_disk_size_gb=50)
    with pytest.raises(mod.ConfigError) as info:
        mod.plan_changes(p, instance(), disks())
    assert str(info.value).startswith(
        "gce_vm_disk_size_gb: refusing to shrink disk 'persistent-disk-0' from 100 GB to 50 GB")
    assert "set gce_vm_disk_size_gb to 100 or more" in str(info.value)


def test_unknown_device_name_is_named():
    with pytest.raises(mod.ConfigError, match="no disk with device name 'scratch'"):
        mod.plan_changes(params(disks=[{"device_name": "scratch", "size_gb": 10}]), instance(), disks())


def test_metadata_merges_unless_purged_and_keeps_fingerprint():
    _, after, changes, needs_stop, _ = mod.plan_changes(params(metadata={"idle-minutes": 30}), instance(), {})
    assert calls(changes) == ["setMetadata"] and not needs_stop
    assert changes[0]["body"]["fingerprint"] == "md1"
    assert after["metadata"] == {
        "install-nvidia-driver": "True",
        "ssh-keys": "me:ssh-ed25519 AAA",
        "idle-minutes": "30",
    }
    _, after, _, _, _ = mod.plan_changes(params(metadata={"a": "b"}, purge_metadata=True), instance(), {})
    assert after["metadata"] == {"a": "b"}


def test_labels_use_label_fingerprint():
    _, _, changes, _, _ = mod.plan_changes(params(labels={"team": "ds"}), instance(), {})
    assert changes[0]["body"] == {"labels": {"managed-by": "gpu-jupyter", "team": "ds"}, "labelFingerprint": "lf1"}


def test_service_account_scopes_need_stop_and_default_email_matches():
    p = params(service_account={"email": "default", "scopes": ["storage-ro", "cloud-platform"]})
    _, after, changes, needs_stop, _ = mod.plan_changes(p, instance(), {})
    assert calls(changes) == ["setServiceAccount"] and needs_stop
    assert after["service_account"]["scopes"] == [
        "https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/devstorage.read_only"]


def test_spot_change_needs_stop_but_maintenance_policy_does_not():
    _, _, changes, needs_stop, _ = mod.plan_changes(
        params(scheduling={"provisioning_model": "SPOT", "instance_termination_action": "STOP"}), instance(), {})
    assert needs_stop and changes[0]["body"]["provisioningModel"] == "SPOT"
    _, _, changes, needs_stop, _ = mod.plan_changes(
        params(scheduling={"automatic_restart": False}), instance(), {})
    assert not needs_stop and calls(changes) == ["setScheduling"]


@given(current=st.integers(min_value=10, max_value=65536), wanted=st.integers(min_value=10, max_value=65536))
def test_disk_sizes_only_grow(current, wanted):
    p = params(boot_disk_size_gb=wanted)
    if wanted < current:
        with pytest.raises(mod.ConfigError):
            mod.plan_changes(p, instance(boot_gb=current), disks(boot_gb=current))
    else:
        _, _, changes, _, _ = mod.plan_changes(p, instance(boot_gb=current), disks(boot_gb=current))
        assert calls(changes) == (["disks.resize"] if wanted > current else [])


# ---- apply (Reconfigurer against a fake GCE) ---------------------------------------------------

class FakeGce:
    """A minimal stateful Compute API behind the requests.Session interface."""

    def __init__(self, inst, disk_sizes, fail=None):
        self.inst = inst
        self.disk_sizes = disk_sizes  # source URL -> GB
        self.fail = dict(fail or {})  # path suffix -> list of (status, reason) to answer first
        self.log = []

    def request(self, method, url, params=None, json=None, headers=None, timeout=None):
        self.log.append((method, url.rsplit("/", 1)[-1]))
        for suffix, answers in self.fail.items():
            if url.endswith(suffix) and answers:
                status, reason = answers.pop(0)
                return Resp(status, {"error": {"code": status, "message": reason, "errors": [{"reason": reason}]}})
        path = url.split("/compute/v1/", 1)[1]
        if method == "GET":
            if "/disks/" in path:
                return Resp(200, {"sizeGb": str(self.disk_sizes[url]), "selfLink": url})
            if "/operations/" in path:
                return Resp(200, {"kind": "compute#operation", "name": "op", "status": "DONE", "zone": "us-central1-a"})
            return Resp(200, copy.deepcopy(self.inst))
        verb = path.rsplit("/", 1)[-1]
        inst = self.inst
        if verb in ("setMachineType", "setMachineResources", "setServiceAccount") and inst["status"] != "TERMINATED":
            return Resp(
                400, {"error": {"code": 400, "message": "Instance must be stopped", "errors": [{"reason": "invalid"}]}}
            )
        if verb == "stop":
            inst["status"] = "TERMINATED"
        elif verb == "start":
            inst["status"] = "RUNNING"
        elif verb == "setMachineType":
            inst["machineType"] = BASE + "/machineTypes/" + json["machineType"].rsplit("/", 1)[-1]
        elif verb == "setMachineResources":
            inst["guestAccelerators"] = json["guestAccelerators"]
        elif verb == "setScheduling":
            inst["scheduling"] = json
        elif verb == "resize":
            self.disk_sizes[url.rsplit("/", 1)[0]] = int(json["sizeGb"])
        return Resp(200, {"kind": "compute#operation", "name": "op", "status": "RUNNING", "zone": "us-central1-a",
                          "operationType": verb})


class Resp:
    def __init__(self, status, payload):
        self.status_code = status
        self.headers = {}
        self.text = json.dumps(payload)
        self.content = self.text.encode()

    def json(self):
        return json.loads(self.text)


class FakeModule:
    def __init__(self, p, check_mode=False):
        self.params = p
        self.check_mode = check_mode

    def fail_json(self, **kw):
        raise FailJsonError(kw)


class FailJsonError(Exception):
    pass


def run(p, gce, check_mode=False):
    client = gce_client.GceClient("proj", session=gce, sleep=lambda s: None, poll_interval=0)
    return mod.Reconfigurer(FakeModule(p, check_mode), client).run(), client


def fake(status="RUNNING", fail=None):
    return FakeGce(instance(status=status), {BASE + "/disks/vm": 100, BASE + "/disks/vm-data": 50}, fail)


UPGRADE = dict(machine_type="n1-standard-16", accelerators=[{"type": "nvidia-tesla-t4", "count": 2}],
               boot_disk_size_gb=200)


def test_apply_stops_changes_starts_and_reruns_clean():
    gce = fake()
    result, client = run(params(allow_stop=True, **UPGRADE), gce)
    assert [c["call"] for c in result["changes"]] == [
        "stop",
        "setMachineResources",
        "setMachineType",
        "disks.resize",
        "start",
    ]
    assert result["changed"] and result["gpu_changed"] and result["stopped_for_change"]
    assert result["status"] == "RUNNING" and gce.inst["status"] == "RUNNING"
    assert result["diff"]["before"]["machine_type"] == "n1-standard-8"
    assert result["diff"]["after"]["machine_type"] == "n1-standard-16"
    assert gce.disk_sizes[BASE + "/disks/vm"] == 200
    again, client = run(params(allow_stop=True, **UPGRADE), gce)
    assert not again["changed"] and again["changes"] == []
    assert client.mutating_count == 0


def test_refused_without_allow_stop_and_nothing_mutated():
    gce = fake()
    with pytest.raises(mod.ConfigError) as info:
        run(params(**UPGRADE), gce)
    msg = str(info.value)
    assert "machine_type (n1-standard-8 -> n1-standard-16)" in msg and "accelerators" in msg
    assert "allow_stop" in msg
    assert all(method == "GET" for method, _ in gce.log)


def test_stopped_vm_is_changed_without_allow_stop_and_stays_stopped():
    gce = fake(status="TERMINATED")
    result, _ = run(params(**UPGRADE), gce)
    assert "stop" not in calls(result["changes"]) and "start" not in calls(result["changes"])
    assert gce.inst["status"] == "TERMINATED"


def test_check_mode_reports_without_mutating():
    gce = fake()
    result, client = run(params(allow_stop=True, **UPGRADE), gce, check_mode=True)
    assert result["changed"] and len(result["changes"]) == 5
    assert client.mutating_count == 0 and gce.inst["machineType"].endswith("n1-standard-8")


def test_status_terminated_stops_and_running_starts():
    gce = fake()
    result, _ = run(params(status="TERMINATED"), gce)
    assert calls(result["changes"]) == ["stop"] and gce.inst["status"] == "TERMINATED"
    result, _ = run(params(status="TERMINATED"), gce)
    assert not result["changed"]
    result, _ = run(params(status="RUNNING"), gce)
    assert calls(result["changes"]) == ["start"] and gce.inst["status"] == "RUNNING"


def test_503_bursts_are_retried_during_apply():
    gce = fake(fail={"/setMachineType": [(503, "backendError")] * 3})
    result, client = run(params(allow_stop=True, machine_type="n1-standard-16"), gce)
    assert gce.inst["machineType"].endswith("n1-standard-16")
    assert client.retry_count == 3
    assert [v for _, v in gce.log].count("setMachineType") == 4


def test_failure_after_stop_restarts_vm_and_reports_what_was_applied():
    gce = fake(fail={"/setMachineResources": [(400, "invalid")]})
    with pytest.raises(FailJsonError) as info:
        run(params(allow_stop=True, **UPGRADE), gce)
    failure = info.value.args[0]
    assert "failed at setMachineResources" in failure["msg"] and "started again" in failure["msg"]
    assert [c["call"] for c in failure["changes"]] == ["stop"]
    assert gce.inst["status"] == "RUNNING"


def test_stale_fingerprint_is_reread_once():
    gce = fake(fail={"/setLabels": [(412, "conditionNotMet")]})
    result, _ = run(params(labels={"team": "ds"}), gce)
    assert calls(result["changes"]) == ["setLabels"]
    assert [v for _, v in gce.log].count("setLabels") == 2
