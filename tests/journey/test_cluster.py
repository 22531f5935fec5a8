"""A fleet of three that is also a cluster, as a user runs it: gce_vm_count=3 and
gce_cluster_engines [ray, torchrun] -> make up -> three VMs placed in parallel, each its own
machine with its own JupyterLab; Ray's head on jupyter-gpu, workers on the other two; a notebook
in the Ray kernel, through the printed tunnel, runs one task on each node -> scripts/cluster-run
runs a script on the three nodes at once with their ranks, then a torch.distributed job on the gloo
backend across them -> make up again: 0 changed -> status
shows them all -> a worker stopped and started keeps its address and joins again by itself ->
make stop stops them all -> make down: nothing left, the cluster's firewall rule included.

A cluster is a fleet with two more roles, so one bring-up of three container VMs serves both
journeys: it is the suite's most expensive step. Ray's wheel (79 MB) and its dependencies are
downloaded once per machine into a wheelhouse that the nodes install from (ray_pip_extra_args),
so the role's install path runs for real without three downloads. PyTorch's CPU build comes the
same way, into a virtualenv on each node that stands for a Deep Learning VM image's Python, which
cluster_env_python (CLUSTER_PYTHON) points at."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import BIN, REPO, run_playbook
from support import converged_coverage
from test_fleet import summary_lines
from test_journey import (JSON_OUTPUT, assert_nothing_left, containers, mutating_calls, provision_record,
                          provisioned_by_shortcut, run_cell, took_shortcut, tunnel)

pytestmark = pytest.mark.journey

NAMES = ["jupyter-gpu", "jupyter-gpu-2", "jupyter-gpu-3"]
ZONE = "us-central1-a"
RAY_VERSION = "2.60.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
WHEELHOUSE = CACHE / "gpu-jupyter" / f"ray-{RAY_VERSION}-wheels"
# PyTorch's CPU build: a Deep Learning VM image brings a CUDA build; the gloo backend is the same.
TORCH = "torch==2.13.0+cpu"
TORCH_VENV = "/opt/torch/venv"
# The host as the containers see it: the gateway of podman's default bridge.
BRIDGE_HOST = "10.88.0.1"


def ensure_wheelhouse() -> Path:
    """Ray with the dashboard, and ipykernel for the Ray kernel: downloaded once per machine."""
    marker = WHEELHOUSE / ".complete"
    if not marker.exists():
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(BIN / "python"), "-m", "pip", "download", "--only-binary=:all:", "--python-version", "3.11",
                        "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
                        "-d", str(WHEELHOUSE), f"ray[default]=={RAY_VERSION}", "ipykernel"],
                       check=True, capture_output=True, timeout=900)
        marker.touch()
    torch_marker = WHEELHOUSE / ".complete-torch"
    if not torch_marker.exists():
        download = subprocess.run(
            [str(BIN / "python"), "-m", "pip", "download", "--only-binary=:all:", "--python-version", "3.11",
             "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64", "-d", str(WHEELHOUSE),
             TORCH, "numpy"], capture_output=True, text=True, timeout=900)
        assert download.returncode == 0, f"pip download {TORCH} numpy failed:\n{download.stderr[-3000:]}"
        torch_marker.touch()
    return WHEELHOUSE


@pytest.fixture(scope="module")
def wheelhouse_url():
    directory = ensure_wheelhouse()
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((BRIDGE_HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{BRIDGE_HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def cluster_sandbox(tmp_path_factory):
    from gce_sandbox.testing import SandboxProcess

    with SandboxProcess(tmp_path_factory.mktemp("gce-cluster"), vms="podman", startup_timeout=120) as sb:
        yield sb


@pytest.fixture(scope="module")
def cluster_vars(wheelhouse_url):
    return {
        "gce_vm_count": 3, "gce_budget_monthly_usd": 2000, "gce_cluster_engines": ["ray", "torchrun"],
        "ray_pip_extra_args": f"--no-index --trusted-host {BRIDGE_HOST} --find-links {wheelhouse_url}",
        # Podman gives a container 64 MB of /dev/shm: Ray's object store falls back to disk.
        "ray_object_store_memory": 100 * 1024 * 1024,
        # The Python with torch on every node, as on a Deep Learning VM image (torch_on_nodes).
        "cluster_env_python": f"{TORCH_VENV}/bin/python",
    }


@pytest.fixture(scope="module")
def cluster(cluster_sandbox, cluster_vars, tmp_path_factory):
    """One converged cluster for every step; make down at the end. Every module result of the
    run is logged (`touched`) for the check of what the shortcut's record covers."""
    sb = cluster_sandbox
    sb.clear_requests()
    started = time.monotonic()
    touched = tmp_path_factory.mktemp("cluster-invocations") / "invocations.jsonl"
    up = run_playbook("site.yml", sb, extra_vars=cluster_vars, env=dict(JSON_OUTPUT, **converged_coverage.env(touched)),
                      timeout=1500)
    assert up.rc == 0, up
    up.touched = touched
    up.seconds = time.monotonic() - started
    up.calls = [(r["method"], r["path"].split("?")[0]) for r in sb.requests()]
    yield up
    down = run_playbook("playbooks/destroy.yml", sb, extra_vars=dict(cluster_vars, destroy_confirm="yes"))
    assert down.rc == 0, down


@pytest.fixture(scope="module")
def torch_on_nodes(cluster, cluster_sandbox, wheelhouse_url):  # noqa: ARG001 - after make up
    """PyTorch's CPU build in a virtualenv on every node, installed at once from the wheelhouse."""
    sb = cluster_sandbox
    host = wheelhouse_url.split("//", 1)[1].split(":", 1)[0]
    install = (f"sudo python3 -m venv {TORCH_VENV} && sudo {TORCH_VENV}/bin/pip install -q --no-index"
               f" --trusted-host {host} --find-links {wheelhouse_url} '{TORCH}' numpy")
    results: dict = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, on_node(sb, n, install, timeout=600)))
               for n in NAMES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in NAMES:
        assert results[name].returncode == 0, (name, results[name].stdout + results[name].stderr)


def nodes(sb) -> list[dict]:
    return json.loads((sb.state_dir / "ssh" / "gpu_jupyter_cluster.json").read_text())["nodes"]


def on_node(sb, name: str, command: str, timeout: int = 120) -> subprocess.CompletedProcess:
    node = next(n for n in nodes(sb) if n["name"] == name)
    argv = ["ssh", "-o", "BatchMode=yes", *shlex.split(node["ssh_args"]), "-i", node["key"], "-l", node["user"],
            node["host"], command]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def alive_ray_nodes(sb) -> int:
    """`ray status` on the head, as the account Ray runs as: how many nodes are active."""
    head_ip = nodes(sb)[0]["ip"]
    out = on_node(sb, NAMES[0], f"sudo -u jupyter /opt/ray/venv/bin/ray status --address {head_ip}:6379")
    assert out.returncode == 0, out.stdout + out.stderr
    if "Active:" not in out.stdout:  # "No cluster status": Ray's monitor has not reported yet
        return 0
    active = out.stdout.split("Active:", 1)[1].split("Pending:", 1)[0]
    return len(re.findall(r"^\s*1 node_", active, re.M))


def wait_for_ray_nodes(sb, count: int, seconds: float) -> int:
    """Ray's monitor publishes the cluster's status some seconds after the nodes join."""
    deadline = time.monotonic() + seconds
    while (alive := alive_ray_nodes(sb)) != count and time.monotonic() < deadline:
        time.sleep(3)
    return alive


def run_in_kernel(port: int, token: str, kernel: str, code: str, timeout: float = 180) -> str:
    """Start a kernel of the given kernelspec and run one cell, as JupyterLab does."""
    import websocket

    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    req = urllib.request.Request(base + "/api/kernels", data=json.dumps({"name": kernel}).encode(), headers=auth,
                                 method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        kernel_id = json.loads(resp.read())["id"]
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels",
                                     header=[f"Authorization: token {token}"], timeout=timeout)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "cluster", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False}}))
    result, error = None, None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "execute_result":
                result = msg["content"]["data"]["text/plain"]
            elif msg["msg_type"] == "error":
                error = "\n".join(msg["content"]["traceback"])
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
    finally:
        ws.close()
    assert error is None, error
    return result


SPREAD = """
import socket, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address="auto")
@ray.remote(num_cpus=0)
def where():
    return socket.gethostname()
alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
sorted(ray.get([where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
                for n in alive]))
"""

GLOO = """
import socket
import torch
import torch.distributed as dist
dist.init_process_group("gloo")  # MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE from torchrun
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
hosts = [None] * world
dist.all_gather_object(hosts, socket.gethostname())
print("gloo rank %d of %d on %s: all_reduce %d, hosts %s"
      % (rank, world, socket.gethostname(), int(total.item()), ",".join(hosts)))
dist.destroy_process_group()
"""

PROBE = """
import os, socket, sys
ips = os.environ["SKYPILOT_NODE_IPS"].splitlines()
print("rank %s of %s on %s, master %s:%s, %d ips, skypilot rank %s"
      % (os.environ["NODE_RANK"], os.environ["NNODES"], socket.gethostname(), os.environ["MASTER_ADDR"],
         os.environ["MASTER_PORT"], len(ips), os.environ["SKYPILOT_NODE_RANK"]))
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 and os.environ["NODE_RANK"] == "1" else 0)
"""


def test_the_record_covers_everything_the_roles_touched_on_each_node(cluster, cluster_sandbox):
    """Ray's and the cluster's files, units and accounts included, on the head and the workers."""
    for container in [c.split()[0] for c in containers(cluster_sandbox)]:
        name = next(n for n in NAMES if container.endswith("-" + n))
        keys = converged_coverage.recorded_keys(container)
        assert converged_coverage.uncovered(cluster.touched, keys, name) == [], name
        # The node's provisioning record reads the cluster's own firewall rule too.
        record = provision_record(cluster_sandbox, name)
        assert converged_coverage.provision_uncovered(cluster.touched, record, name) == [], name
        assert "firewall rule jupyter-gpu-cluster-internal" in {r["label"] for r in record["reads"]}, record["reads"]


def test_three_vms_each_with_its_own_jupyterlab(cluster, cluster_sandbox):
    sb, up = cluster_sandbox, cluster
    for name in NAMES:
        assert up.recap[name]["changed"] > 0 and up.recap[name]["failed"] == 0, (name, up)
    assert [c.split()[1] for c in containers(sb)] == ["running"] * 3

    # Placed in parallel: every insert is sent before any VM is waited on.
    inserts = [i for i, (m, p) in enumerate(up.calls) if m == "POST" and p.endswith("/instances")]
    first_wait = min(i for i, (m, p) in enumerate(up.calls) if p.endswith("/getGuestAttributes"))
    assert len(inserts) == 3 and max(inserts) < first_wait, up.calls

    # The summary: one block per VM, tunnels on distinct local ports, and the fleet's total.
    vms = summary_lines(up.stdout, "VM")
    assert sorted(v.split()[0] for v in vms) == NAMES, vms
    tunnels = summary_lines(up.stdout, "Tunnel")
    ports = sorted(re.search(r"-L (\d+):localhost:", t).group(1) for t in tunnels)
    assert ports == ["8080", "8081", "8082"], tunnels
    fleet = summary_lines(up.stdout, "Fleet")
    assert len(fleet) == 1 and fleet[0].startswith("3 VMs (jupyter-gpu, jupyter-gpu-2, jupyter-gpu-3)"), fleet
    running = float(re.search(r"\$([\d.]+)/hour running", fleet[0]).group(1))
    assert 3 * 0.70 < running < 3 * 0.80, fleet  # three n1-standard-8 + T4 at list price

    # Each VM is its own machine with its own JupyterLab: a cell run through each printed tunnel
    # answers with that VM's host name.
    opens = summary_lines(up.stdout, "Then open")
    assert len(opens) == 3
    for vm_line, tunnel_cmd, open_line in zip(vms, tunnels, opens, strict=True):
        token_cmd = re.search(r"\(token: (.*)\)$", open_line).group(1)
        token = subprocess.run(shlex.split(token_cmd), stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=60, check=True).stdout.strip()
        with tunnel(tunnel_cmd) as port:
            assert run_cell(port, token, "import socket; socket.gethostname()") == repr(vm_line.split()[0])


def test_ray_cluster_forms_and_a_notebook_spreads_tasks(cluster, cluster_sandbox):
    sb, up = cluster_sandbox, cluster
    # Every node carries the cluster's tag; one rule lets only those tags in, on every port.
    rule = sb.api("GET", f"/compute/v1/projects/{sb.project}/global/firewalls/jupyter-gpu-cluster-internal")
    assert rule["sourceTags"] == ["jupyter-gpu-cluster"] and rule["targetTags"] == ["jupyter-gpu-cluster"], rule
    assert not rule.get("sourceRanges"), rule
    for name in NAMES:
        vm = sb.api("GET", f"/compute/v1/projects/{sb.project}/zones/{ZONE}/instances/{name}")
        assert "jupyter-gpu-cluster" in vm["tags"]["items"], vm["tags"]

    assert wait_for_ray_nodes(sb, 3, 120) == 3
    # The dashboard listens on the head's loopback only.
    listening = on_node(sb, NAMES[0], "ss -Hltn 'sport = :8265'").stdout
    assert "127.0.0.1:8265" in listening and "0.0.0.0:8265" not in listening, listening

    # Ray Client listens on the head's internal address (Ray has no loopback option for it), and
    # only the head itself gets through: not a worker of the cluster, not this machine (another
    # host of the network).
    head_ip = nodes(sb)[0]["ip"]
    listening = on_node(sb, NAMES[0], "ss -Hltn 'sport = :10001'").stdout
    assert re.search(r"(^|\s|\[::ffff:)%s\]?:10001\s" % re.escape(head_ip), listening), listening
    probe = f"python3 -c \"import socket; socket.create_connection(('{head_ip}', 10001), timeout=5); print('open')\""
    assert on_node(sb, NAMES[0], probe).stdout.strip() == "open"
    from_worker = on_node(sb, NAMES[1], probe)
    assert from_worker.returncode != 0 and "timed out" in from_worker.stderr, from_worker
    with pytest.raises(TimeoutError):
        socket.create_connection((head_ip, 10001), timeout=5)

    # The summary prints the tunnel to the dashboard and to Ray Client, on the head only.
    ray_lines = summary_lines(up.stdout, "Ray")
    assert len(ray_lines) == 1 and "-L 8265:localhost:8265" in ray_lines[0], ray_lines
    assert f"-L 10001:{head_ip}:10001" in ray_lines[0], ray_lines

    # A notebook on the head, in the Ray kernel, through the printed tunnel: one task per node.
    # The fleet's blocks come in whatever order the hosts finish: take the head's.
    head = [v.split()[0] for v in summary_lines(up.stdout, "VM")].index(NAMES[0])
    tunnel_cmd, open_line = (summary_lines(up.stdout, label)[head] for label in ("Tunnel", "Then open"))
    token_cmd = re.search(r"\(token: (.*)\)$", open_line).group(1)
    token = subprocess.run(shlex.split(token_cmd), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60, check=True).stdout.strip()
    with tunnel(tunnel_cmd) as port:
        assert run_in_kernel(port, token, "ray", SPREAD) == repr(NAMES)


@pytest.mark.usefixtures("cluster", "torch_on_nodes")
def test_cluster_run_runs_a_script_on_every_node(cluster_sandbox, tmp_path):
    sb = cluster_sandbox
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    cluster_file = str(sb.state_dir / "ssh" / "gpu_jupyter_cluster.json")
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "cluster-run"), "--cluster-file", cluster_file,
                          "--no-torch", str(probe)], capture_output=True, text=True, timeout=180,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout + run.stderr
    head_ip = nodes(sb)[0]["ip"]
    for rank, name in enumerate(NAMES):
        line = (f"[{name.ljust(len(NAMES[-1]))}] rank {rank} of 3 on {name}, master {head_ip}:29500, 3 ips,"
                f" skypilot rank {rank}")
        assert line in run.stdout.splitlines(), run.stdout
    assert "3 of 3 nodes succeeded" in run.stderr

    # One node failing fails the command, and says which.
    failed = subprocess.run([sys.executable, str(REPO / "scripts" / "cluster-run"), "--cluster-file", cluster_file,
                             "--no-torch", str(probe), "7"], capture_output=True, text=True, timeout=180,
                            stdin=subprocess.DEVNULL)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "jupyter-gpu-2 exited 7" in failed.stderr and "2 of 3 nodes succeeded" in failed.stderr


@pytest.mark.usefixtures("cluster", "torch_on_nodes")
def test_cluster_run_runs_torch_distributed_on_gloo_across_the_nodes(cluster_sandbox, tmp_path):
    """torchrun on every node at once (cluster-run's default): one process group of three nodes,
    an all_reduce over it, and every rank sees every node's host name."""
    sb = cluster_sandbox
    script = tmp_path / "gloo.py"
    script.write_text(GLOO)
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "cluster-run"), "--cluster-file",
                          str(sb.state_dir / "ssh" / "gpu_jupyter_cluster.json"), str(script)],
                         capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout + run.stderr
    # One GPU per node in the declaration: one process per node, ranks 0-2, 1 + 2 + 3 summed.
    hosts = ",".join(NAMES)
    for rank, name in enumerate(NAMES):
        line = f"[{name.ljust(len(NAMES[-1]))}] gloo rank {rank} of 3 on {name}: all_reduce 6, hosts {hosts}"
        assert line in run.stdout.splitlines(), run.stdout
    assert "3 of 3 nodes succeeded" in run.stderr


@pytest.mark.usefixtures("cluster")
def test_rerun_changes_nothing_and_a_restarted_worker_rejoins_by_itself(cluster_sandbox, cluster_vars):
    sb = cluster_sandbox
    sb.clear_requests()
    again = run_playbook("site.yml", sb, extra_vars=cluster_vars, timeout=900)
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert mutating_calls(sb) == []
    # The nodes, as the first run left them, take the shortcut together, and so does each node's
    # provisioning (its firewall rules and VM read in one step).
    assert took_shortcut(again, NAMES), again
    assert provisioned_by_shortcut(again, NAMES), again

    # Status shows every VM.
    status = run_playbook("playbooks/status.yml", sb)
    assert status.rc == 0, status
    for name in NAMES:
        assert re.search(r"^\s*%s\s+us-central1-a\s+RUNNING" % name, status.stdout, re.M), status.stdout

    # A GCE stop and start of a worker (a host event, the idle agent, make stop/start of one VM).
    path = f"/compute/v1/projects/{sb.project}/zones/{ZONE}/instances/{NAMES[2]}"
    address = sb.api("GET", path)["networkInterfaces"][0]["networkIP"]
    sb.api("POST", path + "/stop")
    deadline = time.monotonic() + 120
    while sb.api("GET", path)["status"] != "TERMINATED" and time.monotonic() < deadline:
        time.sleep(1)
    assert wait_for_ray_nodes(sb, 2, 120) == 2
    sb.api("POST", path + "/start")
    deadline = time.monotonic() + 120
    while sb.api("GET", path)["status"] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(1)
    # It keeps its internal address, as on GCE, and its Ray worker (enabled, Restart=always) finds
    # the head again by itself: no rerun needed.
    assert sb.api("GET", path)["networkInterfaces"][0]["networkIP"] == address
    assert wait_for_ray_nodes(sb, 3, 180) == 3


@pytest.mark.usefixtures("cluster")
def test_stop_stops_every_node(cluster_sandbox, cluster_vars):
    sb = cluster_sandbox
    stopped = run_playbook("playbooks/stop.yml", sb, extra_vars=cluster_vars)
    assert stopped.rc == 0, stopped
    for name in NAMES:
        vm = sb.api("GET", f"/compute/v1/projects/{sb.project}/zones/{ZONE}/instances/{name}")
        assert vm["status"] == "TERMINATED", name
    deadline = time.monotonic() + 90
    while [c.split()[1] for c in containers(sb)] != ["exited"] * 3 and time.monotonic() < deadline:
        time.sleep(1)
    assert [c.split()[1] for c in containers(sb)] == ["exited"] * 3


@pytest.mark.usefixtures("cluster")
def test_down_leaves_nothing(cluster_sandbox, cluster_vars):
    sb = cluster_sandbox
    down = run_playbook("playbooks/destroy.yml", sb, extra_vars=dict(cluster_vars, destroy_confirm="yes"))
    assert down.rc == 0, down
    assert_nothing_left(sb)
    assert "jupyter-gpu-cluster-internal" not in sb.state().get("firewalls", {})
    assert [c for c in containers(sb)] == []
