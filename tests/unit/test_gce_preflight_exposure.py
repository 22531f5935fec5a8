"""gce_preflight's exposure check: which firewall rules let the internet reach the VM, and which
SSH source ranges add up to the whole internet."""

import importlib
import ipaddress
import os

from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ansible.module_utils  # noqa: E402

if os.path.join(ROOT, "plugins", "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(os.path.join(ROOT, "plugins", "module_utils"))

pc = importlib.import_module("ansible.module_utils.gce_preflight_checks")

NET = "https://www.googleapis.com/compute/v1/projects/my-gpu-project/global/networks/default"
SA = "123-compute@developer.gserviceaccount.com"
REQUEST = {"project": "my-gpu-project", "external_ip": True, "network": "default", "network_tag": "gpu-jupyter",
           "firewall_name": "gpu-jupyter-allow-ssh", "allow_public_ingress": False}


def rule(name, ranges, **extra):
    return dict({"name": name, "network": NET, "direction": "INGRESS", "priority": 1000, "disabled": False,
                 "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}], "sourceRanges": ranges}, **extra)


# What a fresh project's default network carries.
DEFAULT_RULES = [
    rule("default-allow-internal", ["10.128.0.0/9"], priority=65534,
         allowed=[{"IPProtocol": "tcp", "ports": ["0-65535"]}, {"IPProtocol": "udp", "ports": ["0-65535"]},
                  {"IPProtocol": "icmp"}]),
    rule("default-allow-ssh", ["0.0.0.0/0"], priority=65534),
    rule("default-allow-rdp", ["0.0.0.0/0"], priority=65534, allowed=[{"IPProtocol": "tcp", "ports": ["3389"]}]),
    rule("default-allow-icmp", ["0.0.0.0/0"], priority=65534, allowed=[{"IPProtocol": "icmp"}]),
    rule("gpu-jupyter-allow-ssh", ["35.235.240.0/20"], targetTags=["gpu-jupyter"]),
]


def refused(rules, **change):
    return [r.details["rule"] for r in pc.exposure_refusals(dict(REQUEST, **change), rules, SA)]


def test_default_network_rules_refused_with_external_ip():
    out = pc.exposure_refusals(REQUEST, DEFAULT_RULES, SA)
    assert [r.details["rule"] for r in out] == ["default-allow-icmp", "default-allow-rdp", "default-allow-ssh"]
    ssh = out[2]
    assert ssh.variable == "gce_vm_external_ip"
    for text in ("default-allow-ssh", "0.0.0.0/0", "tcp:22", "the whole internet", "gce_vm_external_ip: false",
                 "gcloud compute firewall-rules delete default-allow-ssh --project my-gpu-project",
                 "--source-ranges=35.235.240.0/20", "gce_vm_allow_public_ingress: true"):
        assert text in ssh.message, (text, ssh.message)


def test_no_external_ip_or_opt_in_refuses_nothing():
    assert refused(DEFAULT_RULES, external_ip=False) == []
    assert refused(DEFAULT_RULES, allow_public_ingress=True) == []


def test_union_of_halves_is_the_internet():
    out = pc.exposure_refusals(REQUEST, [rule("halves", ["0.0.0.0/1", "128.0.0.0/1"])], SA)
    assert len(out) == 1 and "the whole internet" in out[0].message


def test_any_public_address_counts_private_and_iap_do_not():
    assert refused([rule("office", ["203.0.113.7/32"])]) == ["office"]
    assert refused([rule("mixed", ["10.0.0.0/8", "8.8.8.0/24"])]) == ["mixed"]
    # A range that holds private space and public space is public.
    assert refused([rule("wide", ["8.0.0.0/5"])]) == ["wide"]
    assert refused([rule("private", ["10.0.0.0/8", "192.168.0.0/16", "35.235.240.0/20", "172.16.0.0/12"])]) == []
    assert refused([rule("tags-only", [], sourceTags=["web"])]) == []


def test_targets_decide_whether_a_rule_applies():
    assert refused([rule("other-tag", ["0.0.0.0/0"], targetTags=["web"])]) == []
    assert refused([rule("our-tag", ["0.0.0.0/0"], targetTags=["web", "gpu-jupyter"])]) == ["our-tag"]
    assert refused([rule("other-sa", ["0.0.0.0/0"], targetServiceAccounts=["x@p.iam.gserviceaccount.com"])]) == []
    assert refused([rule("our-sa", ["0.0.0.0/0"], targetServiceAccounts=[SA])]) == ["our-sa"]


def test_disabled_egress_deny_and_other_networks_do_not_apply():
    other = NET.replace("/default", "/other")
    assert refused([rule("off", ["0.0.0.0/0"], disabled=True)]) == []
    assert refused([rule("out", ["0.0.0.0/0"], direction="EGRESS")]) == []
    assert refused([dict(rule("deny", ["0.0.0.0/0"]), allowed=None, denied=[{"IPProtocol": "all"}])]) == []
    assert refused([rule("elsewhere", ["0.0.0.0/0"], network=other)]) == []
    # The project's own SSH rule is judged by the ssh_source_ranges check.
    assert refused([rule("gpu-jupyter-allow-ssh", ["203.0.113.7/32"], targetTags=["gpu-jupyter"])]) == []


def test_covers_internet():
    assert pc.covers_internet(["0.0.0.0/0"]) == ["IPv4"]
    assert pc.covers_internet(["0.0.0.0/1", "128.0.0.0/1"]) == ["IPv4"]
    assert pc.covers_internet(["0.0.0.0/1", "128.0.0.0/2"]) == []
    assert pc.covers_internet(["::/1", "8000::/1", "0.0.0.0/0"]) == ["IPv4", "IPv6"]
    # Everything but the private blocks is still the whole internet.
    everything_public = [str(n) for n in pc.public_part(["0.0.0.0/0"])]
    assert pc.covers_internet(everything_public) == ["IPv4"]


@settings(deadline=None, max_examples=20)
@given(st.integers(min_value=1, max_value=8))
def test_any_split_of_the_internet_covers_it(prefix):
    halves = [str(n) for n in ipaddress.ip_network("0.0.0.0/0").subnets(new_prefix=prefix)]
    assert pc.covers_internet(halves) == ["IPv4"]
    assert pc.covers_internet(halves[1:]) == []


BASE = {"project": "my-gpu-project", "name": "jupyter-gpu", "zone": "us-central1-a", "machine_type": "n1-standard-8",
        "gpu_type": "nvidia-tesla-t4", "gpu_count": 1, "image_project": "deeplearning-platform-release",
        "image_family": "pytorch-2-9-cu129-ubuntu-2404-nvidia-580", "disk_size_gb": 100, "disk_type": "pd-balanced",
        "access": "ssh", "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4x me@laptop",
        "ssh_user": "jupyter", "provisioning_model": "STANDARD", "termination_action": "STOP", "external_ip": True}


def local(**change):
    return [r.message for r in pc.local_refusals(dict(BASE, **change))]


def test_ssh_source_union_of_halves_refused():
    out = local(ssh_source_ranges=["0.0.0.0/1", "128.0.0.0/1"])
    assert len(out) == 1 and "gce_vm_ssh_source_ranges" in out[0] and "whole IPv4 Internet" in out[0], out
    assert "gce_vm_allow_public_ssh: true" in out[0]
    assert local(ssh_source_ranges=["0.0.0.0/1", "128.0.0.0/1"], allow_public_ssh=True) == []
    assert local(ssh_source_ranges=["203.0.113.7/32"]) == []


def test_direct_ssh_without_external_ip_refused():
    out = local(ssh_source_ranges=["203.0.113.7/32"], external_ip=False)
    assert len(out) == 1 and out[0].startswith("gce_vm_external_ip: false") and "gce_vm_access: iap" in out[0]
    assert local(ssh_source_ranges=["203.0.113.7/32"], external_ip=False, direct_without_external_ip=True) == []
    assert local(ssh_source_ranges=["35.235.240.0/20"], access="iap", external_ip=False) == []
