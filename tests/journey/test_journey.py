"""The whole journey, offline, as a user runs it: the sandbox's VMs are podman containers.

nothing -> site.yml (= make up) -> the printed tunnel and token commands -> a notebook cell runs
through the tunnel and JupyterLab renders in headless Chromium -> site.yml again: 0 changed ->
reconfigure to 2 GPUs -> site.yml: 0 changed, the summary shows 2 GPUs -> stop -> site.yml:
started, nothing else -> destroy: no container, instance, disk or firewall rule.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO, run_playbook
from support import converged_coverage

pytestmark = pytest.mark.journey

NAME = "jupyter-gpu"
ZONE = "us-central1-a"
ARTIFACTS = REPO / "artifacts" / "journey"
# JSON results, so the summary's lines come back whole (the YAML callback folds long lines).
JSON_OUTPUT = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
# The task a rerun shows when it skips the configure roles on a VM (the meta task after it is not shown).
SHORTCUT = "TASK [Converged | Keep what the roles found for the summary]"
# The task a rerun shows when it skips the gce_vm role's tasks for a VM whose project is as recorded.
PROVISION_SHORTCUT = "TASK [gce_vm : Shortcut | Take back what the last complete run found]"
FIREWALL = "gpu-jupyter-allow-ssh"


@pytest.fixture(scope="module")
def podman_sandbox(tmp_path_factory):
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make test-deps` (scripts/bootstrap --tests)")
    from gce_sandbox.testing import SandboxProcess

    with SandboxProcess(tmp_path_factory.mktemp("gce-journey"), vms="podman", startup_timeout=120) as sb:
        yield sb


def summary_line(stdout: str, label: str) -> str:
    """The last summary line starting with `label`, as the user reads it."""
    found = [json.loads(m.group(0)) for m in re.finditer(r'"%s\s+(?:[^"\\]|\\.)*"' % re.escape(label), stdout)]
    assert found, f"no '{label}' line in the summary:\n{stdout[-4000:]}"
    return found[-1][len(label):].strip()


def containers(sb) -> list[str]:
    from gce_sandbox.podman_vms import sandbox_id

    out = subprocess.run(["podman", "ps", "--all", "--filter", f"label=gce-sandbox={sandbox_id(sb.state_dir)}",
                          "--format", "json"], capture_output=True, text=True, check=True).stdout
    return sorted("%s %s" % (c["Names"][0], c["State"]) for c in json.loads(out or "[]"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def tunnel(command: str):
    """Run the summary's tunnel command as printed; only the local port is a free one, so
    parallel test workers never collide on 8080 (or a fleet's 8081, 8082, ...)."""
    argv = shlex.split(command)
    port = free_port()
    argv = [re.sub(r"^\d+:localhost:", f"{port}:localhost:", a) for a in argv]
    assert f"{port}:localhost:8080" in argv, argv
    proc = subprocess.Popen(argv[:1] + ["-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes"] + argv[1:],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"tunnel exited {proc.returncode}: {proc.stderr.read()}"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        else:
            pytest.fail("the tunnel did not open within 30 s")
        yield port
    finally:
        # ssh may hold on to a forwarded connection that is still closing; the test is done with it.
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run_cell(port: int, token: str, code: str) -> str:
    """Start a kernel and execute one cell over its websocket, as JupyterLab does."""
    import websocket

    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    req = urllib.request.Request(base + "/api/kernels", data=b'{"name": "python3"}', headers=auth, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        kernel = json.loads(resp.read())
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels",
                                     header=[f"Authorization: token {token}"], timeout=120)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "journey", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False}}))
    result = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "execute_result":
            result = msg["content"]["data"]["text/plain"]
        elif msg["msg_type"] == "error":
            result = "error: " + msg["content"]["evalue"]
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    ws.close()
    req = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}", headers=auth, method="DELETE")
    urllib.request.urlopen(req, timeout=30).close()
    return result


def chromium_dom(url: str, screenshot: Path) -> str:
    exe = "/usr/lib/chromium/chromium" if Path("/usr/lib/chromium/chromium").exists() else shutil.which("chromium")
    assert exe, "chromium is not installed: run `make test-deps`"
    with tempfile.TemporaryDirectory(prefix="journey-chromium-") as profile:
        out = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
             "--window-size=1280,800", f"--screenshot={screenshot}", "--dump-dom", url],
            capture_output=True, text=True, timeout=180, check=False)
    return out.stdout


def mutating_calls(sb) -> list[str]:
    return ["%s %s" % (r["method"], r["path"].split("?")[0].rsplit("/", 1)[-1]) for r in sb.requests(mutating=True)]


def assert_nothing_left(sb):
    """No instance, disk, project firewall rule, Cloud NAT or container: nothing bills, nothing runs."""
    state = sb.state()
    assert not any(state.get("instances", {}).values()), state.get("instances")
    assert not any(state.get("disks", {}).values()), state.get("disks")
    assert "gpu-jupyter-allow-ssh" not in state.get("firewalls", {})
    assert not any(state.get("routers", {}).values()), state.get("routers")   # the Cloud NAT
    assert containers(sb) == []


def configure_play(stdout: str) -> str:
    """What the configure play printed (the validate play before it names the roles' checks too)."""
    return stdout.split("PLAY [Configure the GPU VMs]", 1)[-1].split("\nPLAY [", 1)[0]


def took_shortcut(result, names=(NAME,)) -> bool:
    """Every VM skipped the roles: the shortcut's task answered for each, and no role task ran."""
    play = configure_play(result.stdout)
    shortcut = play.split(SHORTCUT, 1)[-1].split("TASK [", 1)[0] if SHORTCUT in play else ""
    return all(f"ok: [{n}]" in shortcut for n in names) and not re.search(r"TASK \[\w+ : ", play)


def provisioned_by_shortcut(result, names=(NAME,)) -> bool:
    """Every VM's provisioning skipped the role's tasks: no preflight, firewall or instance task ran."""
    play = result.stdout.split("PLAY [Provision the GPU VMs]", 1)[-1].split("\nPLAY [", 1)[0]
    taken = play.split(PROVISION_SHORTCUT, 1)[-1].split("TASK [", 1)[0] if PROVISION_SHORTCUT in play else ""
    return all(f"ok: [gce/{n}]" in taken for n in names) and not re.search(
        r"TASK \[(gce_preflight : |gce_vm : (Firewall|Service account|Instance|Nat) \|)", play)


def provision_record(sb, name=NAME) -> dict:
    return json.loads((Path(sb.state_dir) / "provision" / sb.project / f"{name}.json").read_text())


def firewall(sb):
    return sb.api("GET", f"/compute/v1/projects/{sb.project}/global/firewalls/{FIREWALL}")


def instance(sb):
    return sb.api("GET", f"/compute/v1/projects/{sb.project}/zones/{ZONE}/instances/{NAME}")


def on_vm(sb, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", "exec", containers(sb)[0].split()[0], "sh", "-c", command],
                          capture_output=True, text=True, timeout=60, check=False)


def test_up_open_rerun_stop_start_destroy(podman_sandbox, tmp_path):
    sb = podman_sandbox

    # 1. Nothing -> make up: the VM is created and configured, the summary says how to get in.
    #    Every file, unit, package and account the roles touched is in the record of the run.
    touched = tmp_path / "invocations.jsonl"
    first = run_playbook("site.yml", sb, env=dict(JSON_OUTPUT, **converged_coverage.env(touched)), timeout=900)
    assert first.rc == 0, first
    assert first.recap[NAME]["changed"] > 0 and first.recap[NAME]["failed"] == 0, first
    assert [c.split()[1] for c in containers(sb)] == ["running"]
    assert converged_coverage.uncovered(touched, converged_coverage.recorded_keys(containers(sb)[0].split()[0]),
                                            NAME) == []
    # And every project resource the provision play managed is read again by its record.
    assert converged_coverage.provision_uncovered(touched, provision_record(sb), NAME) == []
    # GPUs are recorded on the sandbox VM, not present: nothing claims they were verified.
    assert summary_line(first.stdout, "GPU check").startswith("GPU not verified (sandbox"), first
    assert "1 x nvidia-tesla-t4" in summary_line(first.stdout, "Machine")
    token_cmd = summary_line(first.stdout, "Then open")
    token_cmd = re.search(r"\(token: (.*)\)$", token_cmd).group(1)
    token = subprocess.run(shlex.split(token_cmd), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60, check=True).stdout.strip()
    assert len(token) >= 32

    # 2. The printed tunnel: the API refuses without the token, a cell runs with it, the Lab renders.
    with tunnel(summary_line(first.stdout, "Tunnel")) as port:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=30)
        assert refused.value.code in (401, 403)
        assert run_cell(port, token, "import socket; (6 * 7, socket.gethostname())") == f"(42, '{NAME}')"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "jupyterlab.png"
        dom = chromium_dom(f"http://localhost:{port}/lab?token={token}", shot)
        assert "jp-Launcher" in dom and "Python 3" in dom, dom[-2000:]
        assert shot.stat().st_size > 10_000

    # 3. make up again: nothing changes, nothing is asked of the API that changes anything, and
    #    the VM, as the first run left it, is checked in one step instead of by every role.
    sb.clear_requests()
    second = run_playbook("site.yml", sb, timeout=600)
    assert second.rc == 0, second
    assert second.changed == 0, second
    assert mutating_calls(sb) == []
    assert took_shortcut(second), second
    assert provisioned_by_shortcut(second), second

    # 3a. Drift on the VM (an edited server config, a stopped service) and in the project (the SSH
    #     rule opened to the internet in the console) is named, and the roles run and repair it;
    #     the run after that takes both shortcuts again.
    on_vm(sb, "echo '# edited by hand' >> /etc/jupyter/service/jupyter_server_config.py && systemctl stop jupyter")
    declared_ranges = firewall(sb)["sourceRanges"]
    sb.api("PATCH", f"/compute/v1/projects/{sb.project}/global/firewalls/{FIREWALL}", {"sourceRanges": ["0.0.0.0/0"]})
    repaired = run_playbook("site.yml", sb, env=JSON_OUTPUT, timeout=600)
    assert repaired.rc == 0, repaired
    assert repaired.recap[NAME]["changed"] > 0, repaired
    assert f"Provisioning {NAME}: firewall rule {FIREWALL}: changed since the last complete run" in repaired.stdout
    assert firewall(sb)["sourceRanges"] == declared_ranges != ["0.0.0.0/0"]
    assert "jupyter_server_config.py: content changed" in repaired.stdout, repaired
    assert "unit jupyter.service: inactive, was active" in repaired.stdout, repaired
    assert on_vm(sb, "systemctl is-active jupyter").stdout.strip() == "active"
    assert "edited by hand" not in on_vm(sb, "cat /etc/jupyter/service/jupyter_server_config.py").stdout
    third = run_playbook("site.yml", sb, timeout=600)
    assert third.rc == 0 and third.changed == 0, third
    assert took_shortcut(third), third
    assert provisioned_by_shortcut(third), third

    # 3b. Reconfigure to 2 GPUs (the VM is stopped for it and started again), then make up with
    #     the same declaration: the VM host changes nothing, nothing mutating reaches the API
    #     but the start, and the summary shows the VM's real shape.
    two_gpus = {"gce_vm_gpu_count": 2, "gce_budget_monthly_usd": 1000}
    reconfigured = run_playbook("playbooks/reconfigure.yml", sb,
                                extra_vars=dict(two_gpus, gce_lifecycle_allow_stop=True), timeout=600)
    assert reconfigured.rc == 0, reconfigured
    assert [a["acceleratorCount"] for a in instance(sb)["guestAccelerators"]] == [2]
    assert instance(sb)["status"] == "RUNNING" and not instance(sb).get("deletionProtection")
    sb.clear_requests()
    after = run_playbook("site.yml", sb, extra_vars=two_gpus, env=JSON_OUTPUT, timeout=600)
    assert after.rc == 0, after
    assert after.recap[NAME]["changed"] == 0, after
    assert mutating_calls(sb) == [], mutating_calls(sb)
    assert "2 x nvidia-tesla-t4" in summary_line(after.stdout, "Machine")
    assert "differs from the declaration" not in after.stdout

    # 4. Stop: the container stops with the VM.
    stopped = run_playbook("playbooks/stop.yml", sb)
    assert stopped.rc == 0, stopped
    assert instance(sb)["status"] == "TERMINATED"
    deadline = time.monotonic() + 60
    while [c.split()[1] for c in containers(sb)] != ["exited"] and time.monotonic() < deadline:
        time.sleep(1)
    assert [c.split()[1] for c in containers(sb)] == ["exited"]

    # 5. make up on the stopped VM starts it, and does nothing else (deletion protection untouched).
    sb.clear_requests()
    again = run_playbook("site.yml", sb, timeout=600)
    assert again.rc == 0, again
    assert mutating_calls(sb) == ["POST start"], mutating_calls(sb)
    vm = instance(sb)
    assert vm["status"] == "RUNNING" and not vm.get("deletionProtection")
    assert again.recap[NAME]["changed"] == 0, again

    # 6. make down: nothing of the VM is left, in the API or on this machine.
    down = run_playbook("playbooks/destroy.yml", sb, extra_vars={"destroy_confirm": "yes"})
    assert down.rc == 0, down
    assert_nothing_left(sb)
