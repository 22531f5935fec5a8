"""gce_preflight's local validation: each bad input refused with the variable and the fix, no API."""

import importlib
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ansible.module_utils  # noqa: E402

if os.path.join(ROOT, "plugins", "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(os.path.join(ROOT, "plugins", "module_utils"))
sys.path.insert(0, os.path.join(ROOT, "plugins", "modules"))

pc = importlib.import_module("ansible.module_utils.gce_preflight_checks")
place = importlib.import_module("gce_instance_place")

GOOD = {
    "project": "my-gpu-project", "name": "jupyter-gpu", "zone": "us-central1-a", "candidate_zones": [],
    "machine_type": "n1-standard-8", "gpu_type": "nvidia-tesla-t4", "gpu_count": 1,
    "image_project": "deeplearning-platform-release", "image_family": "pytorch-2-9-cu129-ubuntu-2404-nvidia-580",
    "disk_size_gb": 100, "disk_type": "pd-balanced", "labels": {"purpose": "jupyter"},
    "ssh_source_ranges": ["203.0.113.7/32"], "allow_public_ssh": False, "firewall_ports": [22],
    "access": "ssh", "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4x me@laptop",
    "ssh_user": "jupyter", "provisioning_model": "STANDARD", "termination_action": "STOP",
    "budget_monthly_usd": 500,
}

# (change, variable named in the message, words the fix must contain)
BAD = [
    ({"project": "My Project"}, "gcp_project", "project ID"),
    ({"project": "abc"}, "gcp_project", "6-30"),
    ({"name": "Jupyter_GPU"}, "gce_vm_name", "lowercase"),
    ({"zone": "us-central1"}, "gce_vm_zone", "us-central1-a"),
    ({"candidate_zones": ["us-central1-b", "uscentral1b"]}, "gce_vm_candidate_zones", "zone name"),
    ({"machine_type": "N1 standard 8"}, "gce_vm_machine_type", "n1-standard-8"),
    ({"gpu_type": "tesla-t4"}, "gce_vm_gpu_type", "nvidia-tesla-t4"),
    ({"gpu_count": 3}, "gce_vm_gpu_count", "1, 2, 4"),
    ({"gpu_count": -1}, "gce_vm_gpu_count", "negative"),
    ({"gpu_count": True}, "gce_vm_gpu_count", "yes/no"),
    ({"gpu_count": "true"}, "gce_vm_gpu_count", "such as 1"),
    ({"machine_type": "n1-standard-64"}, "gce_vm_machine_type", "at most 48"),
    ({"machine_type": "n1-standard-96", "gpu_count": 2}, "gce_vm_machine_type", "gce_vm_gpu_count to 4"),
    ({"machine_type": "n1-standard-16", "gpu_type": "nvidia-tesla-v100"}, "gce_vm_machine_type", "at most 12"),
    ({"gpu_count": 0}, "gce_vm_gpu_count", "clear gce_vm_gpu_type"),
    ({"gpu_type": ""}, "gce_vm_gpu_type", "set gce_vm_gpu_type"),
    ({"machine_type": "g2-standard-8"}, "gce_vm_gpu_count", "built in"),
    ({"machine_type": "g2-standard-8", "gpu_count": 0}, "gce_vm_gpu_type", "nvidia-l4"),
    ({"machine_type": "e2-standard-8"}, "gce_vm_machine_type", "only N1"),
    ({"gpu_type": "nvidia-l4"}, "gce_vm_gpu_type", "g2-standard-4"),
    ({"disk_size_gb": 5}, "gce_vm_disk_size_gb", "between 10"),
    ({"disk_type": "ssd"}, "gce_vm_disk_type", "pd-balanced"),
    ({"image_family": "Pytorch Latest"}, "gce_vm_image_family", "image family"),
    ({"labels": {"Owner": "me"}}, "gce_vm_labels", "label key"),
    ({"labels": {"owner": "Jane Doe"}}, "gce_vm_labels", "jane-doe"),
    ({"ssh_source_ranges": ["0.0.0.0/0"]}, "gce_vm_ssh_source_ranges", "whole Internet"),
    ({"ssh_source_ranges": ["10.0.0.1/8"]}, "gce_vm_ssh_source_ranges", "10.0.0.0/8"),
    ({"ssh_source_ranges": ["my-laptop"]}, "gce_vm_ssh_source_ranges", "CIDR"),
    ({"ssh_source_ranges": []}, "gce_vm_ssh_source_ranges", "iap"),
    ({"jupyter_port": 22}, "jupyter_port", "tunnel"),
    ({"jupyter_port": 8080, "firewall_ports": [22, 8080]}, "jupyter_port", "e.g. 8080"),
    ({"access": "vpn"}, "gce_vm_access", "iap"),
    ({"ssh_public_key": ""}, "gce_vm_ssh_public_key", "id_ed25519.pub"),
    ({"ssh_public_key": "-----BEGIN OPENSSH PRIVATE KEY-----"}, "gce_vm_ssh_public_key", "private key"),
    ({"provisioning_model": "PREEMPTIBLE"}, "gce_vm_provisioning_model", "SPOT"),
    ({"termination_action": "HIBERNATE"}, "gce_vm_instance_termination_action", "STOP"),
    ({"budget_monthly_usd": -5}, "gce_budget_monthly_usd", "positive"),
    ({"compact_placement": True}, "gce_cluster_compact_placement", "g2-standard-8"),
    ({"compact_placement": True, "machine_type": "e2-standard-8", "gpu_type": "", "gpu_count": 0},
     "gce_cluster_compact_placement", "gce_cluster_compact_placement: false"),
]


def test_good_request_passes():
    assert pc.local_refusals(dict(GOOD)) == []


def test_iap_needs_no_key_nor_source_ranges():
    assert pc.local_refusals(dict(GOOD, access="iap", ssh_public_key="", ssh_source_ranges=[])) == []


def test_a2_g2_without_extra_gpu_pass():
    for mt in ("g2-standard-8", "a2-highgpu-1g"):
        assert pc.local_refusals(dict(GOOD, machine_type=mt, gpu_type="", gpu_count=0)) == []


def test_compact_placement_passes_for_the_series_gce_places_compactly():
    for mt in ("g2-standard-8", "a2-highgpu-1g", "a3-highgpu-8g", "n2-standard-8"):
        assert pc.local_refusals(dict(GOOD, machine_type=mt, gpu_type="", gpu_count=0, compact_placement=True)) == []


@pytest.mark.parametrize("change,variable,fix", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_input_refused_with_variable_and_fix(change, variable, fix):
    refusals = pc.local_refusals(dict(GOOD, **change))
    assert refusals, change
    assert any(r.variable == variable and r.message.startswith(variable + ":") and fix in r.message
               for r in refusals), [r.message for r in refusals]


def test_quota_shortfall_message_has_numbers_and_remedies():
    p = dict(GOOD, gpu_count=2)
    wanted = pc.quota_metrics(p, 8, "nvidia-tesla-t4", 2)
    assert ("NVIDIA_T4_GPUS", 2, "region") in wanted and ("GPUS_ALL_REGIONS", 2, "project") in wanted
    quotas = {"NVIDIA_T4_GPUS": {"limit": 4.0, "usage": 3.0}, "CPUS": {"limit": 24.0, "usage": 0.0},
              "SSD_TOTAL_GB": {"limit": 500.0, "usage": 0.0}}
    short = pc.quota_shortfalls(p, {"region": quotas, "region_name": "us-central1"},
                                [w for w in wanted if w[2] == "region"])
    assert len(short) == 1
    msg = short[0].message
    for text in ("NVIDIA_T4_GPUS", "us-central1", "limit 4", "usage 3", "available 1", "requested 2",
                 "console.cloud.google.com/iam-admin/quotas", "playbooks/quota_request.yml"):
        assert text in msg


def test_spot_uses_preemptible_metric_and_falls_back():
    p = dict(GOOD, provisioning_model="SPOT")
    wanted = pc.quota_metrics(p, 8, "nvidia-tesla-t4", 1)
    assert ("PREEMPTIBLE_NVIDIA_T4_GPUS", 1, "region") in wanted
    quotas = {"PREEMPTIBLE_NVIDIA_T4_GPUS": {"limit": 0.0, "usage": 0.0}, "NVIDIA_T4_GPUS": {"limit": 4, "usage": 0},
              "CPUS": {"limit": 24, "usage": 0}}
    short = pc.quota_shortfalls(p, {"region": quotas, "region_name": "us-central1"}, wanted[:1])
    assert short and "PREEMPTIBLE_NVIDIA_T4_GPUS" in short[0].message
    # On-demand quota is free: the refusal names the variable that switches to it.
    assert short[0].variable == "gce_vm_provisioning_model"
    assert "The on-demand quota NVIDIA_T4_GPUS has 4 free: gce_vm_provisioning_model: STANDARD fits now" \
        in short[0].message
    busy = dict(quotas, NVIDIA_T4_GPUS={"limit": 4, "usage": 4})
    short = pc.quota_shortfalls(p, {"region": busy, "region_name": "us-central1"}, wanted[:1])
    assert "STANDARD" not in short[0].message and short[0].variable == "gce_vm_gpu_count"
    # No PREEMPTIBLE_CPUS quota in the region: spot consumes CPUS.
    short = pc.quota_shortfalls(p, {"region": {"CPUS": {"limit": 4, "usage": 0}}, "region_name": "r"},
                                [("PREEMPTIBLE_CPUS", 8, "region")])
    assert short and short[0].details["metric"] == "CPUS"


def test_zones_available_hint_from_error_details():
    errors = [{
        "code": "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "message": "The zone 'projects/p/zones/us-central1-a' does not have enough resources available.",
        "errorDetails": [
            {"localizedMessage": {"locale": "en-US", "message": "A n1-standard-8 VM instance is currently "
                                  "unavailable in the us-central1-a zone. Consider trying your request in the "
                                  "us-central1-f,us-central1-c zone(s), which currently has capacity."}},
            {"errorInfo": {"reason": "resource_availability",
                           "metadatas": {"zonesAvailable": "us-central1-f,us-central1-c"}}},
        ],
    }]
    assert place.zones_available_hint(errors) == ["us-central1-f", "us-central1-c"]
    assert place.zones_available_hint([{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "x"}]) == []


def test_quota_metric_parsing():
    err = {"code": "QUOTA_EXCEEDED", "message": "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 1.0 globally."}
    assert place.quota_metric(err) == ("GPUS_ALL_REGIONS", True, 1.0)
    err = {"code": "QUOTA_EXCEEDED", "message": "Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 1.0 in region us-east1."}
    assert place.quota_metric(err) == ("NVIDIA_T4_GPUS", False, 1.0)
    err = {"code": "QUOTA_EXCEEDED", "message": "",
           "errorDetails": [{"quotaInfo": {"metricName": "compute.googleapis.com/cpus",
                                           "dimensions": {"region": "us-east1"}, "limit": 24}}]}
    assert place.quota_metric(err) == ("CPUS", False, 24)


from hypothesis import given, settings, strategies as st  # noqa: E402


def _typed(key):
    """What AnsibleModule's argument spec lets through for each option: its type, any content."""
    value = GOOD[key]
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-1000, 100000)
    if isinstance(value, list):
        return st.lists(st.one_of(st.text(max_size=20), st.from_regex(r"[0-9.]{1,15}/[0-9]{1,2}", fullmatch=True)),
                        max_size=3)
    if isinstance(value, dict):
        return st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)
    return st.one_of(st.text(max_size=40), st.none())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(sorted(GOOD)), max_size=4, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: _typed(k) for k in keys})))
def test_any_garbage_is_refused_cleanly_never_crashes(change):
    refusals = pc.local_refusals(dict(GOOD, **change))
    for refusal in refusals:
        assert refusal.message.startswith(refusal.variable + ":")


@settings(max_examples=100, deadline=None)
@given(st.ip_addresses(v=4), st.integers(min_value=1, max_value=32))
def test_cidrs_with_host_bits_get_the_network_suggested(address, prefix):
    import ipaddress
    cidr = "%s/%d" % (address, prefix)
    refusals = pc.local_refusals(dict(GOOD, ssh_source_ranges=[cidr]))
    network = ipaddress.ip_network(cidr, strict=False)
    if str(network) == cidr:
        assert refusals == []
    else:
        assert any("Did you mean %s?" % network in r.message for r in refusals)


def _settable_variables():
    """Variables a user sets: group_vars, inventories' group_vars, roles' defaults and argument specs."""
    import glob

    import yaml

    names = set()
    patterns = ("group_vars/all/*.yml", "inventories/*/group_vars/all/*.yml", "roles/*/defaults/main.yml")
    for path in (p for pattern in patterns for p in glob.glob(os.path.join(ROOT, pattern))):
        with open(path) as f:
            names |= set(yaml.safe_load(f) or {})
    for path in glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml")):
        with open(path) as f:
            for entry in (yaml.safe_load(f) or {}).get("argument_specs", {}).values():
                names |= set(entry.get("options") or {})
    return names


def test_every_refusal_names_a_variable_the_user_sets():
    settable = _settable_variables()
    named = set(pc.VARIABLES.values()) | {b[1] for b in BAD}
    unknown = sorted(v for v in named if v not in settable)
    assert not unknown, "refusals would name variables nobody can set: %s" % unknown



def test_access_defaults_to_iap_only_for_iap_s_range():
    assert pc.resolve_access("", [pc.IAP_RANGE]) == "iap"
    assert pc.resolve_access("", ["203.0.113.7/32"]) == "ssh"
    assert pc.resolve_access("oslogin", [pc.IAP_RANGE]) == "oslogin"


def test_builtin_families_are_one_list():
    for machine_type in ("a2-highgpu-1g", "a3-highgpu-8g", "a4-highgpu-8g", "g2-standard-8", "g4-standard-48"):
        assert pc.has_builtin_gpus(machine_type), machine_type
    assert not pc.has_builtin_gpus("n1-standard-8")
