"""The helpers the modules share from gce_client: one summary of a VM, one label filter."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "module_utils"))
from gce_client import instance_summary, label_filter

BASE = "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a"


def vm(**overrides):
    inst = {
        "name": "jupyter-gpu", "zone": BASE, "status": "RUNNING", "machineType": BASE + "/machineTypes/n1-standard-8",
        "selfLink": BASE + "/instances/jupyter-gpu",
        "guestAccelerators": [{"acceleratorType": BASE + "/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 2}],
        "scheduling": {"provisioningModel": "SPOT", "instanceTerminationAction": "STOP"},
        "networkInterfaces": [{"networkIP": "10.128.0.2", "accessConfigs": [{"natIP": "34.1.2.3"}]}],
        "disks": [{"boot": False, "diskSizeGb": "500"}, {"boot": True, "diskSizeGb": "100"}],
        "labels": {"managed-by": "gpu-jupyter"},
        "serviceAccounts": [{"email": "sa@p.iam.gserviceaccount.com", "scopes": []}],
    }
    inst.update(overrides)
    return inst


def test_the_summary_has_every_field_preflight_and_placement_read():
    assert instance_summary(vm()) == {
        "name": "jupyter-gpu", "zone": "us-central1-a", "status": "RUNNING", "machine_type": "n1-standard-8",
        "gpu_type": "nvidia-tesla-t4", "gpu_count": 2, "provisioning_model": "SPOT",
        "instance_termination_action": "STOP", "max_run_seconds": 0, "labels": {"managed-by": "gpu-jupyter"},
        "external_ip": "34.1.2.3", "internal_ip": "10.128.0.2", "self_link": BASE + "/instances/jupyter-gpu",
        "service_accounts": [{"email": "sa@p.iam.gserviceaccount.com", "scopes": []}], "boot_disk_gb": 100,
        "resource_policies": [],
    }


def test_the_summary_carries_the_placement_policy():
    link = "https://www.googleapis.com/compute/v1/projects/p/regions/us-central1/resourcePolicies/c"
    assert instance_summary(vm(resourcePolicies=[link]))["resource_policies"] == [link]


def test_a_bare_vm_has_empty_addresses_and_is_standard():
    summary = instance_summary({"name": "x", "zone": BASE})
    assert (summary["external_ip"], summary["internal_ip"]) == ("", "")
    assert (summary["gpu_type"], summary["gpu_count"], summary["boot_disk_gb"]) == ("", 0, None)
    assert summary["provisioning_model"] == "STANDARD"


def test_a_legacy_preemptible_vm_counts_as_spot():
    assert instance_summary(vm(scheduling={"preemptible": True}))["provisioning_model"] == "SPOT"


def test_the_label_filter_names_the_vm_first_then_every_label():
    assert label_filter({"b": "2", "a": "1"}) == 'labels.a = "1" AND labels.b = "2"'
    assert label_filter({"a": "1"}, "vm") == 'name = "vm" AND labels.a = "1"'
    assert label_filter({}, "vm") == 'name = "vm"'
    assert label_filter({}) is None and label_filter(None) is None


def test_the_summary_carries_the_run_time_cap():
    capped = vm(scheduling={"provisioningModel": "STANDARD", "maxRunDuration": {"seconds": "28800"},
                            "instanceTerminationAction": "STOP"})
    assert instance_summary(capped)["max_run_seconds"] == 28800
    assert instance_summary(vm(scheduling={"maxRunDuration": {"seconds": "x"}}))["max_run_seconds"] == 0
