"""In-process tests: name / label rules (hypothesis), the filter language, the CLI and
persistence across restarts, Cloud Quotas."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gce_sandbox import catalog
from gce_sandbox.compute import check_labels, check_name
from gce_sandbox.errors import ApiError
from gce_sandbox.filters import compile_filter
from gce_sandbox.testing import SandboxProcess

from .helpers import PROJECT, ZONE, create_vm, vm_body, wait_op, zpath

RFC1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
NAME_CHARS = st.text(alphabet="abcxyz019-_A.", min_size=0, max_size=70)


def accepted(func, *args) -> bool:
    try:
        func(*args)
        return True
    except ApiError as exc:
        assert exc.code == 400 and exc.reason == "invalid"
        return False


@given(NAME_CHARS)
def test_resource_names_follow_rfc1035(name):
    assert accepted(check_name, name) == bool(RFC1035.fullmatch(name))


@given(st.from_regex(RFC1035, fullmatch=True))
def test_every_rfc1035_name_is_accepted(name):
    assert accepted(check_name, name)


@given(st.text(alphabet="abz09-_A ", min_size=0, max_size=70), st.text(alphabet="abz09-_A.", max_size=70))
def test_label_rules(key, value):
    key_ok = bool(re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key))
    value_ok = bool(re.fullmatch(r"[a-z0-9_-]{0,63}", value))
    assert accepted(check_labels, {key: value}) == (key_ok and value_ok)


def test_label_key_message_is_gce_like():
    with pytest.raises(ApiError) as exc:
        check_labels({"Owner": "x"})
    assert "Label key 'Owner' violates format constraints" in exc.value.message


@settings(max_examples=50)
@given(st.dictionaries(st.sampled_from(["role", "env", "team"]), st.sampled_from(["a", "b", "jupyter"]),
                       max_size=3), st.sampled_from(["RUNNING", "TERMINATED"]))
def test_filter_matches_labels_and_status(labels, status):
    resource = {"name": "vm", "labels": labels, "status": status, "zone": f"https://x/zones/{ZONE}"}
    for key in ("role", "env"):
        expected = labels.get(key) == "jupyter"
        assert compile_filter(f"labels.{key} = jupyter")(resource) == expected
        assert compile_filter(f"(labels.{key} = jupyter) (status = RUNNING)")(resource) == \
            (expected and status == "RUNNING")
        assert compile_filter(f"labels.{key} = jupyter OR status != RUNNING")(resource) == \
            (expected or status != "RUNNING")
    assert compile_filter(f"zone = {ZONE}")(resource)
    assert compile_filter("name eq 'v.*'")(resource)
    assert compile_filter("labels.role:*")(resource) == ("role" in labels)


def test_catalog_is_consistent():
    assert set(catalog.REGIONS) == {"us-central1", "us-east1", "us-west1", "europe-west4", "asia-east1"}
    for zone, offered in catalog.ZONES.items():
        assert offered and set(offered) <= set(catalog.ACCELERATORS)
        assert catalog.region_of(zone) in catalog.SUBNET_RANGES
    # Not every zone offers every GPU.
    assert any(set(offered) != set(catalog.ACCELERATORS) for offered in catalog.ZONES.values())
    for metric in catalog.GPU_METRICS:
        assert metric in catalog.DEFAULT_REGION_QUOTAS and "PREEMPTIBLE_" + metric in catalog.DEFAULT_REGION_QUOTAS


def cli(*args, state_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gce_sandbox", *args, "--state-dir", str(state_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)


def test_cli_start_fault_quota_stop_and_persistence(tmp_path):
    state = tmp_path / "gce"
    out = cli("start", state_dir=state)
    assert out.returncode == 0, out.stdout
    try:
        info = json.loads((state / "server.json").read_text())
        env = json.loads((state / "env.json").read_text())
        assert env["HTTPS_PROXY"] == f"http://127.0.0.1:{info['port']}"
        assert env["GCP_AUTH_KIND"] == "accesstoken" and env["CLOUDSDK_AUTH_DISABLE_CREDENTIALS"] == "true"
        assert env["CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE"].endswith("/compute/v1/")
        env_sh = (state / "env.sh").read_text()
        assert "export HTTPS_PROXY=" in env_sh
        # env.sh must not export a token: google.cloud would then refuse every other auth kind.
        assert "export GCP_ACCESS_TOKEN" not in env_sh and "unset GCP_ACCESS_TOKEN" in env_sh
        assert "export GCP_AUTH_KIND=application" in env_sh and "export HTTPLIB2_CA_CERTS=" in env_sh
        sa = json.loads((state / "service-account.json").read_text())
        assert sa["type"] == "service_account" and sa["client_email"] == f"ansible@{PROJECT}.iam.gserviceaccount.com"
        assert sa["token_uri"] == "https://oauth2.googleapis.com/token"
        # A second start finds the running one.
        assert cli("start", state_dir=state).returncode == 0
        assert json.loads((state / "server.json").read_text())["pid"] == info["pid"]
        sb = SandboxProcess(state)      # only to drive the API of the CLI-started server
        sb.url = info["url"]
        sb.enable_compute()
        create_vm(sb, gpus=0, scheduling={})
        out = cli("fault", "add", "zone_exhausted", "--zone", ZONE, "--zones-available", "us-central1-b",
                  "--count", "2", state_dir=state)
        assert out.returncode == 0, out.stdout
        assert cli("quota", "set", "--region", "us-central1", "--metric", "NVIDIA_T4_GPUS", "--limit", "0",
                   state_dir=state).returncode == 0
        status = cli("status", state_dir=state).stdout
        assert "running at" in status and "us-central1-a/vm1: RUNNING" in status
    finally:
        assert "stopped" in cli("stop", state_dir=state).stdout
    assert cli("status", state_dir=state).returncode == 3
    out = cli("log", "--mutating", state_dir=state)
    assert "compute.instances.insert" in out.stdout and "instances.get" not in out.stdout
    # Faults, quotas and resources survive a restart (faults can be edited while stopped).
    assert cli("fault", "add", "slow_operations", "--seconds", "0.2", state_dir=state).returncode == 0
    with SandboxProcess(state) as sb:
        faults = sb.faults()
        assert [f["kind"] for f in faults] == ["zone_exhausted", "slow_operations"]
        assert faults[0]["count"] == 2 and faults[0]["zones_available"] == ["us-central1-b"]
        region = sb.state()["usage"]["regions"]["us-central1"]
        assert next(q for q in region if q["metric"] == "NVIDIA_T4_GPUS")["limit"] == 0
        assert sb.api("GET", zpath("instances/vm1"))["status"] == "RUNNING"


def test_request_id_makes_insert_idempotent(sandbox_server):
    sb = sandbox_server
    sb.reset()
    sb.enable_compute()
    rid = "4f2d7c3e-8b1a-4c5d-9e6f-0a1b2c3d4e5f"
    first = sb.api("POST", zpath("instances") + f"?requestId={rid}", vm_body(gpus=0, scheduling={}))
    again = sb.api("POST", zpath("instances") + f"?requestId={rid}", vm_body(gpus=0, scheduling={}))
    assert again["name"] == first["name"]
    wait_op(sb, again)


def test_cloud_quotas_preference(sandbox_server):
    sb = sandbox_server
    sb.reset()
    parent = f"/cloudquotas/v1/projects/{PROJECT}/locations/global"
    info = sb.api("GET", f"{parent}/services/compute.googleapis.com/quotaInfos/NVIDIA-T4-GPUS-per-project-region")
    limits = {d["dimensions"].get("region"): d["details"]["value"] for d in info["dimensionsInfos"]}
    assert limits["us-central1"] == "4"
    body = {"service": "compute.googleapis.com", "quotaId": "NVIDIA-T4-GPUS-per-project-region",
            "dimensions": {"region": "us-central1"}, "quotaConfig": {"preferredValue": "8"},
            "justification": "course", "contactEmail": "me@example.com"}
    pref = sb.api("POST", f"{parent}/quotaPreferences?quotaPreferenceId=t4-more", body)
    assert pref["reconciling"] is True and pref["quotaConfig"]["grantedValue"] == "4"
    assert sb.api("GET", f"{parent}/quotaPreferences/t4-more")["quotaConfig"]["preferredValue"] == "8"
    status, out = sb.call("POST", f"{parent}/quotaPreferences?quotaPreferenceId=t4-more", body)
    assert status == 409
    status, out = sb.call("POST", f"{parent}/quotaPreferences?quotaPreferenceId=x", dict(body, bogus=1))
    assert status == 400 and "Unknown name \"bogus\"" in out["error"]["message"]


REPO = pathlib.Path(__file__).resolve().parents[2]


def test_cli_looks_where_make_sandbox_keeps_the_state(monkeypatch):
    from gce_sandbox import cli as sandbox_cli

    monkeypatch.delenv("GCE_SANDBOX_STATE_DIR", raising=False)
    make_default = re.search(r"^SANDBOX_STATE \?= (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert sandbox_cli.DEFAULT_STATE_DIR == REPO / make_default
    parser = sandbox_cli.build_parser()
    for argv in (["status"], ["log"], ["fault", "list"], ["stop"], ["timing"]):
        assert parser.parse_args(argv).state_dir == str(REPO / make_default), argv


def test_cli_finds_the_running_sandbox_from_a_shell_that_sourced_env_sh(sandbox_server, tmp_path):
    sb = sandbox_server
    sb.reset()
    sb.enable_compute()
    create_vm(sb, gpus=0, scheduling={})
    py = sys.executable
    script = (f". {sb.state_dir}/env.sh && cd {tmp_path} && {py} -m gce_sandbox status"
              f" && {py} -m gce_sandbox log --mutating")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GCE_SANDBOX")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    assert f"running at {sb.url}" in out.stdout and "us-central1-a/vm1: RUNNING" in out.stdout
    assert "compute.instances.insert" in out.stdout
