"""Unit tests of gce_instances_info (status figures) and gce_instance_destroy (what goes, what stays)."""

import datetime
import importlib.util
import json
import os
import sys

import pytest
import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))
import gce_client  # noqa: E402
import gce_pricing  # noqa: E402

sys.modules["ansible.module_utils.gce_client"] = gce_client
sys.modules["ansible.module_utils.gce_pricing"] = gce_pricing
import gce_preflight_checks  # noqa: E402 (imports ansible.module_utils.gce_pricing, mapped above)

sys.modules["ansible.module_utils.gce_preflight_checks"] = gce_preflight_checks
import ansible.module_utils  # noqa: E402

ansible.module_utils.gce_pricing = gce_pricing


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "plugins", "modules", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


info = load("gce_instances_info")
destroy = load("gce_instance_destroy")
with open(os.path.join(ROOT, "roles", "gce_preflight", "files", "prices.yml")) as _prices:
    PRICES = yaml.safe_load(_prices)
BASE = "https://www.googleapis.com/compute/v1/projects/proj/zones/us-central1-a"
NOW = datetime.datetime(2025, 6, 2, 12, 0, tzinfo=datetime.timezone.utc)


def vm(status="RUNNING", machine="n1-standard-8", gpus=1, started="2025-06-02T04:30:00.000-07:00"):
    return {
        "name": "jupyter-gpu",
        "zone": BASE,
        "status": status,
        "machineType": BASE + "/machineTypes/" + machine,
        "selfLink": BASE + "/instances/jupyter-gpu",
        "lastStartTimestamp": started,
        "guestAccelerators": [{"acceleratorType": BASE + "/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": gpus}]
        if gpus
        else [],
        "scheduling": {"provisioningModel": "STANDARD", "onHostMaintenance": "TERMINATE"},
        "networkInterfaces": [{"networkIP": "10.128.0.2", "accessConfigs": [{"natIP": "34.1.2.3"}]}],
        "disks": [
            {"source": BASE + "/disks/jupyter-gpu", "deviceName": "persistent-disk-0", "boot": True, "autoDelete": True}
        ],
        "labels": {"managed-by": "gpu-jupyter"},
    }


DISKS = {BASE + "/disks/jupyter-gpu": {"sizeGb": "100", "type": BASE + "/diskTypes/pd-balanced"}}


def describe(instance, machine="n1-standard-8"):
    return info.describe(instance, DISKS, "proj", gce_pricing.machine_shape(machine), PRICES, NOW, 8080, True)


def test_running_vm_figures_match_the_price_table():
    row = describe(vm())
    expected = gce_pricing.estimate(PRICES, "us-central1-a", "n1-standard-8", 8, 30.0, gpu_type="nvidia-tesla-t4",
                                    gpu_count=1, disks=[{"type": "pd-balanced", "size_gb": 100}], external_ip=True)
    assert row["cost"]["hourly_now"] == expected["hourly"]
    assert row["cost"]["monthly_running"] == expected["monthly"]
    assert row["cost"]["monthly_stopped"] == expected["stopped_monthly"]
    # By hand from the table: 8 vCPU + 30 GiB + 1 T4 + external IP, and 100 GiB of pd-balanced.
    region = PRICES["regions"]["us-central1"]
    n1 = region["machine_families"]["n1"]
    hourly = 8 * n1["vcpu"] + 30 * n1["memory_gib"] + region["gpus"]["nvidia-tesla-t4"]["on_demand"] + \
        region["external_ip"]["in_use"]
    disk_month = 100 * region["disks_gib_month"]["pd-balanced"]
    assert row["cost"]["monthly_running"] == pytest.approx(hourly * 730 + disk_month, abs=0.01)
    assert row["cost"]["monthly_stopped"] == pytest.approx(disk_month, abs=0.01)
    assert row["uptime_seconds"] == 30 * 60 and row["uptime"] == "0h 30m"
    assert row["gpu_text"] == "1 x nvidia-tesla-t4"
    assert row["tunnel_command"] == ("gcloud compute ssh jupyter-gpu --zone us-central1-a --project proj "
                                     "--tunnel-through-iap -- -N -L 8080:localhost:8080")


def test_stopped_vm_costs_its_disk_now_and_has_no_uptime():
    row = describe(vm(status="TERMINATED"))
    assert row["uptime_seconds"] is None
    assert row["cost"]["hourly_now"] == round(row["cost"]["monthly_stopped"] / 730, 4)
    assert row["cost"]["hourly_now"] < 0.02


def test_table_has_every_column_and_the_tunnel():
    lines = info.table([describe(vm()), describe(vm(status="TERMINATED"))])
    assert lines[0].split() == ["NAME", "ZONE", "STATE", "MACHINE", "TYPE", "GPUS", "UPTIME", "$/HOUR", "NOW",
                                "$/MONTH", "RUNNING", "$/MONTH", "STOPPED"]
    assert "RUNNING" in lines[1] and "1 x nvidia-tesla-t4" in lines[1] and "0h 30m" in lines[1]
    assert any(line.startswith("jupyter-gpu tunnel: gcloud compute ssh") for line in lines)
    assert "Prices of 2025-06-01" in lines[-1]
    assert info.table([]) == [info.table([])[0], "(no VMs)"]


def test_label_filter_syntax():
    assert info.label_filter({"managed-by": "gpu-jupyter", "a": "b"}) == \
        'labels.a = "b" AND labels.managed-by = "gpu-jupyter"'
    # With a name (the lifecycle roles' lookup in every zone): the name first, then the labels.
    assert info.label_filter({"managed-by": "gpu-jupyter", "a": "b"}, "jupyter-gpu") == \
        'name = "jupyter-gpu" AND labels.a = "b" AND labels.managed-by = "gpu-jupyter"'
    # A name alone (any labels), and nothing at all: no filter, every VM.
    assert info.label_filter({}, "jupyter-gpu") == 'name = "jupyter-gpu"'
    assert info.label_filter(None, "jupyter-gpu") == 'name = "jupyter-gpu"'
    assert info.label_filter({}) is None
    assert info.label_filter(None, None) is None


def test_human_duration():
    assert info.human_duration(3 * 86400 + 5 * 3600 + 59) == "3d 5h"
    assert info.human_duration(None) == "-"


# ---- destroy --------------------------------------------------------------------------------

class Resp:
    def __init__(self, status, payload):
        self.status_code, self.headers = status, {}
        self.text = json.dumps(payload)
        self.content = self.text.encode()

    def json(self):
        return json.loads(self.text)


class FakeProject:
    """Instances, disks and firewalls keyed by path; DELETE removes, autoDelete honoured."""

    def __init__(self, instances, disks, firewalls):
        self.instances, self.disks, self.firewalls = instances, disks, firewalls
        self.mutations = []

    def request(self, method, url, params=None, json=None, headers=None, timeout=None):
        path = url.split("/compute/v1/projects/proj/", 1)[1]
        parts = path.split("/")
        done = {"kind": "compute#operation", "name": "op", "status": "DONE", "operationType": method}
        if method != "GET":
            self.mutations.append((method, path, params))
        if path == "aggregated/instances":
            return Resp(200, {"items": {"zones/us-central1-a": {"instances": list(self.instances.values())}}})
        if parts[-2] == "instances" and parts[-1] in self.instances:
            inst = self.instances[parts[-1]]
            if method == "GET":
                return Resp(200, inst)
            for d in inst["disks"]:
                if d.get("autoDelete"):
                    self.disks.pop(d["source"].rsplit("/", 1)[-1], None)
            del self.instances[parts[-1]]
            return Resp(200, done)
        if parts[-1] == "setDiskAutoDelete":
            for d in self.instances[parts[-2]]["disks"]:
                if d["deviceName"] == params["deviceName"]:
                    d["autoDelete"] = params["autoDelete"] == "true"
            return Resp(200, done)
        if parts[-2] == "disks" and parts[-1] in self.disks:
            if method == "GET":
                return Resp(200, self.disks[parts[-1]])
            del self.disks[parts[-1]]
            return Resp(200, done)
        if parts[-2] == "firewalls" and parts[-1] in self.firewalls:
            if method == "GET":
                return Resp(200, {"name": parts[-1]})
            self.firewalls.discard(parts[-1])
            return Resp(200, done)
        return Resp(404, {"error": {"code": 404, "message": "not found", "errors": [{"reason": "notFound"}]}})


def project(labels=None, other=False):
    inst = vm()
    inst["labels"] = labels if labels is not None else {"managed-by": "gpu-jupyter"}
    inst["disks"].append(
        {"source": BASE + "/disks/jupyter-data", "deviceName": "data", "boot": False, "autoDelete": True}
    )
    instances = {"jupyter-gpu": inst}
    if other:
        second = vm()
        second["name"] = "second"
        instances["second"] = second
    disks = {
        "jupyter-gpu": {"selfLink": BASE + "/disks/jupyter-gpu"},
        "jupyter-data": {"selfLink": BASE + "/disks/jupyter-data"},
    }
    return FakeProject(instances, disks, {"gpu-jupyter-allow-ssh"})


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.check_mode = check_mode
        self.params = dict(name="jupyter-gpu", zone="us-central1-a", keep_data_disk=False,
                           firewall_name="gpu-jupyter-allow-ssh", labels={"managed-by": "gpu-jupyter"}, timeout=60)
        self.params.update(params)


def run_destroy(fake, **kw):
    client = gce_client.GceClient("proj", session=fake, sleep=lambda s: None, poll_interval=0)
    return destroy.Destroyer(FakeModule(**kw), client).run()


def test_destroy_removes_instance_disks_and_firewall_and_is_idempotent():
    fake = project()
    result = run_destroy(fake)
    assert result["deleted"] == {"instances": ["jupyter-gpu"], "disks": ["jupyter-gpu", "jupyter-data"],
                                 "firewalls": ["gpu-jupyter-allow-ssh"]}
    assert fake.instances == {} and fake.disks == {} and fake.firewalls == set()
    again = run_destroy(fake)
    assert not again["changed"]


def test_keep_data_disk_turns_auto_delete_off_first():
    fake = project()
    result = run_destroy(fake, keep_data_disk=True)
    assert list(fake.disks) == ["jupyter-data"] and result["kept"]["disks"] == ["jupyter-data"]
    assert fake.mutations[0][1].endswith("setDiskAutoDelete")


def test_firewall_stays_while_another_managed_vm_exists():
    fake = project(other=True)
    result = run_destroy(fake)
    assert result["kept"]["firewalls"] == ["gpu-jupyter-allow-ssh"]
    assert result["remaining_managed_instances"] == ["second (us-central1-a)"]
    assert fake.firewalls == {"gpu-jupyter-allow-ssh"}


def test_check_mode_lists_without_deleting():
    fake = project()
    result = run_destroy(fake, check_mode=True)
    assert result["changed"] and result["deleted"]["firewalls"] == ["gpu-jupyter-allow-ssh"]
    assert fake.mutations == [] and "jupyter-gpu" in fake.instances


def test_unlabelled_vm_is_refused():
    fake = project(labels={})
    with pytest.raises(destroy.DestroyError, match="managed-by=gpu-jupyter"):
        run_destroy(fake)
    assert fake.mutations == []
