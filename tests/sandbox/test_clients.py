"""Real, unmodified clients against the sandbox: google.cloud modules and inventory plugin
through the HTTPS proxy, google-auth service-account credentials, and gcloud."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import requests

from .helpers import BASE, PROJECT, ZONE, create_vm
from conftest import NO_GCLOUD

BIN = pathlib.Path(sys.executable).parent
VM_TASK = f"""
    - name: Enable the Compute Engine API
      google.cloud.gcp_serviceusage_service:
        name: compute.googleapis.com
        state: present
    - name: Create the GPU VM
      google.cloud.gcp_compute_instance:
        name: nb1
        zone: {ZONE}
        machine_type: n1-standard-4
        status: RUNNING
        labels:
          app: jupyter
        metadata:
          install-nvidia-driver: "True"
        guest_accelerators:
          - accelerator_count: 1
            accelerator_type: {BASE}projects/{PROJECT}/zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4
        scheduling:
          on_host_maintenance: TERMINATE
          automatic_restart: true
        disks:
          - auto_delete: true
            boot: true
            initialize_params:
              source_image: "projects/deeplearning-platform-release/global/images/family/\
common-cu129-ubuntu-2404-nvidia-580"
              disk_size_gb: 100
        network_interfaces:
          - network:
              selfLink: {BASE}projects/{PROJECT}/global/networks/default
            access_configs:
              - name: External NAT
                type: ONE_TO_ONE_NAT
        tags:
          items: [jupyter]
      register: vm
    - name: Show the address
      ansible.builtin.debug:
        msg: "natIP={{{{ vm.networkInterfaces[0].accessConfigs[0].natIP }}}}"
"""


def client_env(sb, **extra) -> dict:
    env = dict(os.environ)
    env.update(sb.env)
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="false",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    env.update(extra)
    return env


def run(cmd, env, cwd) -> subprocess.CompletedProcess:
    cfg = pathlib.Path(cwd) / "ansible.cfg"     # keep the repository's ansible.cfg out of these runs
    if not cfg.exists():
        cfg.write_text("[defaults]\nretry_files_enabled = false\n")
    env = dict(env, ANSIBLE_CONFIG=str(cfg))
    return subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def playbook(tmp_path, tasks: str) -> pathlib.Path:
    path = tmp_path / "play.yml"
    path.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:" + tasks)
    return path


def recap(out: str) -> dict:
    line = [x for x in out.splitlines() if x.startswith("localhost") and "ok=" in x][-1]
    return {k: int(v) for k, v in (p.split("=") for p in line.split(":", 1)[1].split())}


def test_google_cloud_instance_create_then_rerun_unchanged(sandbox_server, tmp_path):
    sb = sandbox_server
    sb.reset()
    sb.clear_requests()
    play = playbook(tmp_path, VM_TASK)
    first = run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(play)], client_env(sb), tmp_path)
    assert first.returncode == 0, first.stdout
    assert recap(first.stdout)["changed"] == 2, first.stdout
    assert "natIP=203.0.113." in first.stdout
    inst = sb.api("GET", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/nb1")
    assert inst["status"] == "RUNNING"
    # Reached through the HTTPS proxy, on both host names google.cloud uses.
    hosts = {e["host"] for e in sb.requests()}
    assert {"serviceusage.googleapis.com", "compute.googleapis.com"} <= hosts

    sb.clear_requests()
    second = run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(play)], client_env(sb), tmp_path)
    assert second.returncode == 0, second.stdout
    assert recap(second.stdout)["changed"] == 0, second.stdout
    assert sb.requests(mutating=True) == []
    # The access token is masked by google.cloud's no_log: a distinctive value keeps output readable.
    assert sb.env["GCP_ACCESS_TOKEN"] not in second.stdout


def test_inventory_plugin_lists_the_vm(sb, tmp_path):
    create_vm(sb, name="nb1", labels={"app": "jupyter"})
    create_vm(sb, name="other", labels={"app": "batch"}, gpus=0, scheduling={})
    inv = tmp_path / "sandbox.gcp_compute.yml"
    inv.write_text(f"""plugin: google.cloud.gcp_compute
projects:
  - {PROJECT}
filters:
  - labels.app = jupyter
hostnames:
  - name
compose:
  ansible_host: networkInterfaces[0].accessConfigs[0].natIP
keyed_groups:
  - key: labels
    prefix: label
""")
    env = client_env(sb, ANSIBLE_INVENTORY_ENABLED="google.cloud.gcp_compute")
    out = run([str(BIN / "ansible-inventory"), "-i", str(inv), "--list"], env, tmp_path)
    assert out.returncode == 0, out.stdout
    data = json.loads(out.stdout[out.stdout.index("{"):])
    hostvars = data["_meta"]["hostvars"]
    assert list(hostvars) == ["nb1"]
    host = hostvars["nb1"]["ansible_host"]
    host = host.get("__ansible_unsafe", host) if isinstance(host, dict) else host   # core 2.19 marks unsafe text
    assert host.startswith("203.0.113."), hostvars["nb1"]
    assert "nb1" in data["label_app_jupyter"]["hosts"]
    agg = [e for e in sb.requests() if e["path"].endswith("/aggregated/instances")]
    assert agg and agg[0]["query"]["filter"] == "labels.app = jupyter"


def test_service_account_key_gets_a_token(sb):
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2 import service_account

    env_keys = ("HTTPS_PROXY", "REQUESTS_CA_BUNDLE", "NO_PROXY")
    saved = {k: os.environ.get(k) for k in env_keys}
    os.environ.update({k: sb.env[k] for k in env_keys})
    try:
        creds = service_account.Credentials.from_service_account_file(
            str(sb.service_account_file), scopes=["https://www.googleapis.com/auth/compute"])
        session = AuthorizedSession(creds)
        resp = session.get(f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/zones/{ZONE}")
        assert resp.status_code == 200, resp.text
        assert creds.token.startswith("ya29.sandbox-sa-")
        token_calls = [e for e in sb.requests() if e["host"] == "oauth2.googleapis.com"]
        assert token_calls and token_calls[0]["status"] == 200 and token_calls[0]["mutating"] is False

        # A key the sandbox did not issue (same account, other RSA key): invalid_grant, like Google.
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        info = json.loads(sb.service_account_file.read_text())
        info["private_key"] = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        forged = service_account.Credentials.from_service_account_info(
            info, scopes=["https://www.googleapis.com/auth/compute"])
        from google.auth.exceptions import RefreshError

        with pytest.raises(RefreshError) as exc:
            AuthorizedSession(forged).get(f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}")
        assert "invalid_grant" in str(exc.value) and "Invalid JWT Signature" in str(exc.value)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    # An access token nobody issued is refused.
    status, out = sb.call("GET", f"/compute/v1/projects/{PROJECT}", token="ya29.made-up")
    assert status == 401 and out["error"]["status"] == "UNAUTHENTICATED"


def test_google_cloud_service_account_auth_path(sb, tmp_path):
    create_vm(sb, name="nb1")
    play = playbook(tmp_path, f"""
    - name: Read the VM with a service-account key
      google.cloud.gcp_compute_instance_info:
        zone: {ZONE}
        filters: ["name = nb1"]
        auth_kind: serviceaccount
        service_account_file: {sb.service_account_file}
      register: info
    - name: Check it
      ansible.builtin.assert:
        that: info.resources | map(attribute='name') | list == ['nb1']
""")
    env = client_env(sb)
    env.pop("GCP_AUTH_KIND")
    env.pop("GCP_ACCESS_TOKEN")
    out = run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(play)], env, tmp_path)
    assert out.returncode == 0, out.stdout
    assert any(e["host"] == "oauth2.googleapis.com" and e["status"] == 200 for e in sb.requests())


def test_connect_to_other_hosts_is_refused(sb):
    proxies = {"https": sb.url}
    with pytest.raises(requests.exceptions.ProxyError) as exc:
        requests.get("https://pypi.org/simple/", proxies=proxies, timeout=10)
    assert "403" in str(exc.value)
    # *.googleapis.com is served over TLS signed by the sandbox CA.
    resp = requests.get(f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{ZONE}",
                        proxies=proxies, verify=sb.env["REQUESTS_CA_BUNDLE"], timeout=10,
                        headers={"Authorization": f"Bearer {sb.env['GCP_ACCESS_TOKEN']}"})
    assert resp.status_code == 200 and resp.json()["name"] == ZONE
    bundle = pathlib.Path(sb.env["REQUESTS_CA_BUNDLE"]).read_text()
    assert bundle.count("BEGIN CERTIFICATE") > 1      # system CAs kept, sandbox CA added


@pytest.mark.skipif(shutil.which("gcloud") is None, reason=NO_GCLOUD)
def test_gcloud_list_and_describe(sb, tmp_path):
    create_vm(sb, name="nb1", labels={"app": "jupyter"})
    env = client_env(sb)
    out = run(["gcloud", "compute", "instances", "list", "--format=json"], env, tmp_path)
    assert out.returncode == 0, out.stdout
    listed = json.loads(out.stdout[out.stdout.index("["):])
    assert [i["name"] for i in listed] == ["nb1"]
    out = run(["gcloud", "compute", "instances", "describe", "nb1", f"--zone={ZONE}",
               "--format=value(status,guestAccelerators[0].acceleratorType.basename())"], env, tmp_path)
    assert out.returncode == 0, out.stdout
    assert out.stdout.split() == ["RUNNING", "nvidia-tesla-t4"]
    assert any(e["method_id"] == "compute.instances.get" for e in sb.requests())


def sourced(sb, command: list[str], **extra) -> list[str]:
    """Run `command` in bash after `. STATE/env.sh`, as a user does, from an environment with none of
    the sandbox's variables and a stale GCP_ACCESS_TOKEN (what an older env.sh exported)."""
    base = {k: v for k, v in client_env(sb).items() if k not in sb.env}
    base.update(GCP_ACCESS_TOKEN="stale-token", **extra)
    script = f". {sb.state_dir / 'env.sh'} && exec \"$@\""
    return ["bash", "-c", script, "bash", *command], base


ALL_AUTH_KINDS = f"""
    - name: Read the VM with the default auth kind (application, from env.sh)
      google.cloud.gcp_compute_instance_info:
        zone: {ZONE}
        filters: ["name = nb1"]
      register: by_application
    - name: Read it with a service-account key
      google.cloud.gcp_compute_instance_info:
        zone: {ZONE}
        filters: ["name = nb1"]
        auth_kind: serviceaccount
        service_account_file: "{{{{ lookup('ansible.builtin.env', 'GCE_SANDBOX_SERVICE_ACCOUNT_FILE') }}}}"
      register: by_serviceaccount
    - name: Read it with an access token
      google.cloud.gcp_compute_instance_info:
        zone: {ZONE}
        filters: ["name = nb1"]
        auth_kind: accesstoken
        access_token: "{{{{ lookup('ansible.builtin.env', 'GCE_SANDBOX_ACCESS_TOKEN') }}}}"
      register: by_accesstoken
    - name: Read it as the machine's account (the metadata server)
      google.cloud.gcp_compute_instance_info:
        zone: {ZONE}
        filters: ["name = nb1"]
        auth_kind: machineaccount
      register: by_machineaccount
    - name: Check that every auth kind saw the VM
      ansible.builtin.assert:
        that: item.resources | map(attribute='name') | list == ['nb1']
      loop: "{{{{ [by_application, by_serviceaccount, by_accesstoken, by_machineaccount] }}}}"
"""


def test_env_sh_serves_every_google_cloud_auth_kind(sb, tmp_path):
    create_vm(sb, name="nb1")
    cmd, env = sourced(sb, [str(BIN / "ansible-playbook"), "-i", "localhost,",
                            str(playbook(tmp_path, ALL_AUTH_KINDS))])
    out = run(cmd, env, tmp_path)
    assert out.returncode == 0, out.stdout
    assert recap(out.stdout)["failed"] == 0
    hosts = [e["host"] for e in sb.requests()]
    assert "oauth2.googleapis.com" in hosts        # application and serviceaccount: the key's JWT grant
    assert "metadata" in hosts                     # machineaccount: the metadata server's token


def test_env_sh_serves_google_api_python_client(sb, tmp_path):
    create_vm(sb, name="nb1")
    code = ("import os, googleapiclient.discovery as d\n"
            "svc = d.build('compute', 'v1', static_discovery=True)\n"
            f"items = svc.instances().list(project=os.environ['GCP_PROJECT'], zone='{ZONE}').execute()['items']\n"
            "print('names=' + ','.join(i['name'] for i in items))\n")
    cmd, env = sourced(sb, [sys.executable, "-c", code])
    out = run(cmd, env, tmp_path)
    assert out.returncode == 0, out.stdout
    assert "names=nb1" in out.stdout
    assert any(e["method_id"] == "compute.instances.list" for e in sb.requests())


def test_metadata_server_wants_its_header(sb):
    url = f"{sb.url}/computeMetadata/v1/instance/service-accounts/default/token"
    direct = {"http": None, "https": None}
    assert requests.get(url, timeout=10, proxies=direct).status_code == 403
    resp = requests.get(url, headers={"Metadata-Flavor": "Google"}, timeout=10, proxies=direct)
    assert resp.headers["Metadata-Flavor"] == "Google"
    token = resp.json()["access_token"]
    assert sb.call("GET", f"/compute/v1/projects/{PROJECT}", token=token)[0] == 200
