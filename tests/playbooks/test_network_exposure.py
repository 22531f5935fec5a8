"""Nothing on the internet reaches the VM by default, judged against the network's real firewall
rules (the sandbox's default network carries GCE's four default rules), not only the project's."""

from conftest import flat, run_playbook

PLAYBOOK = "playbooks/provision.yml"
DEFAULTS = ("default-allow-ssh", "default-allow-rdp", "default-allow-icmp")


def firewalls(sandbox):
    return f"/compute/v1/projects/{sandbox.project}/global/firewalls"


def wait(sandbox, op):
    sandbox.api("POST", op["selfLink"].split("googleapis.com", 1)[1] + "/wait")


def delete_public_defaults(sandbox):
    for name in DEFAULTS:
        wait(sandbox, sandbox.api("DELETE", f"{firewalls(sandbox)}/{name}"))


def add_rule(sandbox, name, ranges, **extra):
    body = dict({"name": name, "network": "global/networks/default", "direction": "INGRESS",
                 "allowed": [{"IPProtocol": "tcp", "ports": ["8080"]}], "sourceRanges": ranges}, **extra)
    wait(sandbox, sandbox.api("POST", firewalls(sandbox), body))


def refused_before_any_write(sandbox, result, texts):
    assert result.rc != 0, result
    for text in texts:
        assert text in flat(result), (text, result.stdout[-3000:])
    assert sandbox.requests(mutating=True) == [], sandbox.requests(mutating=True)


def test_external_ip_on_a_stock_default_network_is_refused_before_any_write(sandbox):
    sandbox.enable_compute()
    sandbox.clear_requests()
    result = run_playbook(PLAYBOOK, sandbox, extra_vars={"gce_vm_external_ip": True})
    refused_before_any_write(sandbox, result, [
        "gce_vm_external_ip: true gives the VM an internet address, and firewall rule default-allow-ssh of "
        "network default lets the whole internet in (sources 0.0.0.0/0, allows tcp:22)",
        "firewall rule default-allow-rdp", "firewall rule default-allow-icmp",
        "gce_vm_external_ip: false",
        f"gcloud compute firewall-rules delete default-allow-ssh --project {sandbox.project}",
        "gce_vm_allow_public_ingress: true",
    ])
    assert "default-allow-internal" not in flat(result)
    # The rules were read, never changed.
    assert "compute.firewalls.list" in [r["method_id"] for r in sandbox.requests()]


def test_ranges_that_add_up_to_the_internet_are_the_internet(sandbox):
    sandbox.enable_compute()
    delete_public_defaults(sandbox)
    add_rule(sandbox, "halves", ["0.0.0.0/1", "128.0.0.0/1"])
    sandbox.clear_requests()
    result = run_playbook(PLAYBOOK, sandbox, extra_vars={"gce_vm_external_ip": True})
    refused_before_any_write(sandbox, result, [
        "firewall rule halves of network default lets the whole internet in (sources 0.0.0.0/1, 128.0.0.0/1, "
        "allows tcp:8080)"])


def test_a_rule_for_other_tags_does_not_count_ours_does(sandbox):
    sandbox.enable_compute()
    delete_public_defaults(sandbox)
    add_rule(sandbox, "web-only", ["0.0.0.0/0"], targetTags=["web"])
    result = run_playbook(PLAYBOOK, sandbox, extra_vars={"gce_vm_external_ip": True})
    assert result.rc == 0, result.stdout[-3000:]
    wait(sandbox, sandbox.api("DELETE", f"{sandbox_path(sandbox)}/jupyter-gpu"))
    add_rule(sandbox, "ours", ["198.51.100.0/24"], targetTags=["gpu-jupyter"])
    sandbox.clear_requests()
    result = run_playbook(PLAYBOOK, sandbox, extra_vars={"gce_vm_external_ip": True})
    refused_before_any_write(sandbox, result, [
        "firewall rule ours of network default lets internet addresses in (sources 198.51.100.0/24, allows "
        "tcp:8080; it targets this VM's tag)"])
    assert "web-only" not in flat(result)


def sandbox_path(sandbox, zone="us-central1-a"):
    return f"/compute/v1/projects/{sandbox.project}/zones/{zone}/instances"


def test_ssh_sources_that_add_up_to_the_internet_are_refused_without_any_call(sandbox):
    sandbox.clear_requests()
    result = run_playbook(PLAYBOOK, sandbox, extra_vars={
        "gce_vm_ssh_source_ranges": ["0.0.0.0/1", "128.0.0.0/1"], "gce_vm_external_ip": True,
        "gce_vm_ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0cDJ4cTJ1bHl0ZXN0a2V5 a@b"})
    assert result.rc != 0, result
    assert "gce_vm_ssh_source_ranges: 0.0.0.0/1, 128.0.0.0/1 together cover the whole IPv4 Internet" in flat(result)
    assert sandbox.requests() == []


def test_default_vm_has_no_external_ip_and_egress_through_cloud_nat(sandbox):
    """The default path works on the stock default network: no address, a NAT router, a quiet rerun."""
    sandbox.enable_compute()
    first = run_playbook(PLAYBOOK, sandbox)
    assert first.rc == 0, first.stdout[-3000:]
    vm = sandbox.api("GET", f"{sandbox_path(sandbox)}/jupyter-gpu")
    assert [nic.get("accessConfigs", []) for nic in vm["networkInterfaces"]] == [[]]
    routers = f"/compute/v1/projects/{sandbox.project}/regions/us-central1/routers"
    router = sandbox.api("GET", f"{routers}/gpu-jupyter-router")
    assert router["network"].endswith("/global/networks/default")
    assert [(n["name"], n["natIpAllocateOption"], n["sourceSubnetworkIpRangesToNat"]) for n in router["nats"]] == [
        ("gpu-jupyter-nat", "AUTO_ONLY", "ALL_SUBNETWORKS_ALL_IP_RANGES")]
    sandbox.clear_requests()
    second = run_playbook(PLAYBOOK, sandbox)
    assert second.rc == 0 and second.changed == 0, second.stdout[-3000:]
    assert sandbox.requests(mutating=True) == []


def test_an_existing_vm_is_checked_again_on_every_run(sandbox):
    """The fast path (the VM exists as wanted) still reads the rules: one added since is refused."""
    sandbox.enable_compute()
    delete_public_defaults(sandbox)
    first = run_playbook(PLAYBOOK, sandbox, extra_vars={"gce_vm_external_ip": True})
    assert first.rc == 0, first.stdout[-3000:]
    add_rule(sandbox, "allow-ssh-anywhere", ["0.0.0.0/0"], allowed=[{"IPProtocol": "tcp", "ports": ["22"]}])
    sandbox.clear_requests()
    again = run_playbook(PLAYBOOK, sandbox, extra_vars={"gce_vm_external_ip": True})
    refused_before_any_write(sandbox, again, ["firewall rule allow-ssh-anywhere of network default lets the whole "
                                              "internet in (sources 0.0.0.0/0, allows tcp:22)"])
