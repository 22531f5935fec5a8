"""Access to the placed VM against the sandbox: SSH only (never 8080), from the configured range or
IAP's, the user's key in metadata or OS Login, and the ssh-config entry with the Jupyter tunnel."""

from conftest import flat, run_playbook

NAME = "jupyter-gpu"
ZONE = "us-central1-a"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0cDJ4cTJ1bHl0ZXN0a2V5a2V5a2V5a2V5a2V5 alice@laptop"


def firewall(sb):
    return sb.api("GET", f"/compute/v1/projects/{sb.project}/global/firewalls/gpu-jupyter-allow-ssh")


def metadata(sb):
    vm = sb.api("GET", f"/compute/v1/projects/{sb.project}/zones/{ZONE}/instances/{NAME}")
    return {i["key"]: i["value"] for i in vm["metadata"].get("items", [])}, vm


def test_direct_ssh_with_the_users_key_and_an_ssh_config_entry(sandbox, tmp_path):
    sandbox.enable_compute()
    config = tmp_path / "ssh_config"
    extra = {"gce_vm_ssh_source_ranges": ["203.0.113.7/32"], "gce_vm_ssh_public_key": KEY,
             "gce_vm_ssh_user": "alice", "gce_vm_ssh_config_file": str(config)}
    first = run_playbook("playbooks/provision.yml", sandbox, extra_vars=extra)
    assert first.rc == 0, first

    rule = firewall(sandbox)
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]
    assert rule["sourceRanges"] == ["203.0.113.7/32"]
    items, vm = metadata(sandbox)
    assert items["ssh-keys"] == "alice:" + KEY
    assert "enable-oslogin" not in items
    # No external address by default: the ssh-config entry names the internal one (a real
    # project reaches it from inside the VPC, or over a VPN).
    assert not vm["networkInterfaces"][0].get("accessConfigs")
    address = vm["networkInterfaces"][0]["networkIP"]
    text = config.read_text()
    assert f"Host {NAME}\n  HostName {address}\n  User alice\n" in text, text
    assert "  LocalForward 8080 localhost:8080\n" in text and "ProxyCommand" not in text, text
    assert oct(config.stat().st_mode & 0o777) == "0o600"

    again = run_playbook("playbooks/provision.yml", sandbox, extra_vars=extra)
    assert again.rc == 0 and again.changed == 0, again


def test_iap_opens_ssh_to_iap_only_and_tunnels_through_it(sandbox):
    sandbox.enable_compute()
    # The defaults: IAP. The sandbox inventory connects straight to its container VMs
    # (gce_vm_iap_direct), so ask for what a real project gets.
    result = run_playbook("site.yml", sandbox, extra_vars={"gce_vm_iap_direct": False})
    assert result.rc == 0, result
    rule = firewall(sandbox)
    assert rule["sourceRanges"] == ["35.235.240.0/20"]
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]
    text = flat(result)
    assert (f"ProxyCommand gcloud compute start-iap-tunnel {NAME} 22 --listen-on-stdin --zone {ZONE} "
            f"--project {sandbox.project}") in text, result
    assert "LocalForward 8080 localhost:8080" in text and f"HostName {NAME}" in text, result


def test_iap_ignores_other_ranges_for_the_firewall(sandbox):
    sandbox.enable_compute()
    result = run_playbook("playbooks/provision.yml", sandbox, extra_vars={
        "gce_vm_access": "iap", "gce_vm_ssh_source_ranges": ["198.51.100.0/24"]})
    assert result.rc == 0, result
    assert firewall(sandbox)["sourceRanges"] == ["35.235.240.0/20"]


def test_os_login_sets_the_metadata_and_no_key(sandbox):
    sandbox.enable_compute()
    result = run_playbook("playbooks/provision.yml", sandbox, extra_vars={
        "gce_vm_access": "oslogin", "gce_vm_ssh_source_ranges": ["203.0.113.7/32"], "gce_vm_ssh_public_key": KEY})
    assert result.rc == 0, result
    items, _vm = metadata(sandbox)
    assert items["enable-oslogin"] == "TRUE"
    assert "ssh-keys" not in items


def test_check_mode_places_nothing_and_shows_the_cost(sandbox):
    sandbox.enable_compute()
    sandbox.clear_requests()
    result = run_playbook("playbooks/provision.yml", sandbox, check=True,
                          extra_vars={"gce_vm_candidate_zones": ["us-central1-b"]})
    assert result.rc == 0, result
    assert sandbox.requests(mutating=True) == []
    assert "~$542.90/month if left running" in flat(result), result
    assert not any((sandbox.state().get("instances") or {}).values())
