"""The idle agent's cluster signals: ray (the head's dashboard state API), torchrun (a launcher
alive on this node) and cluster (every node serves its own verdict; the cluster powers off as one).

The Ray answers are recorded from a real `ray start --head` (Ray 2.60.0): an idle cluster with a
driver and an idle actor connected, and one with a task and an actor method running. Peers are
real TCP servers on loopback; the peer answer is the agent's own `peer-state` output.
"""

import importlib.machinery
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

AGENT = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "idle_autostop", "files",
                     "usr", "local", "bin", "idle-autostop")


def _load_agent():
    loader = importlib.machinery.SourceFileLoader("idle_autostop_agent_cluster", AGENT)
    spec = importlib.util.spec_from_loader("idle_autostop_agent_cluster", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


ia = _load_agent()

T0 = 1_700_000_000.0
BOOT = "3f0c1a52-0000-4000-8000-000000000002"

# GET /api/v0/tasks?filter_keys=state&filter_predicates=%3D&filter_values=RUNNING&limit=1, Ray 2.60.0.
RAY_IDLE = (b'{"result": true, "msg": "", "data": {"result": {"total": 0, "num_after_truncation": 0, '
            b'"num_filtered": 0, "result": [], "partial_failure_warning": "", "warnings": null}}}')
RAY_RUNNING = (
    b'{"result": true, "msg": "", "data": {"result": {"total": 2, "num_after_truncation": 2, '
    b'"num_filtered": 2, "result": [{"task_id": "e082c90ab8422b00e47a56ad569b58a16dc4292b02000000", '
    b'"attempt_number": 0, "name": "A.slow", "state": "RUNNING", "job_id": "02000000", '
    b'"actor_id": "e47a56ad569b58a16dc4292b02000000", "type": "ACTOR_TASK", '
    b'"func_or_class_name": "A.slow", "parent_task_id": '
    b'"ffffffffffffffffffffffffffffffffffffffff02000000", "node_id": '
    b'"44b6b6a57427b5ee846be16ab1ce7aa0dade898f97cef8824a5452e6", "worker_id": '
    b'"448cac5430965e199566621d21b0bb1bd1f7429e76aa5bd00cd7ac62", "worker_pid": 27857, '
    b'"error_type": null}], "partial_failure_warning": "", "warnings": null}}}')
# The same endpoint asked for a column it does not have.
RAY_BAD_QUERY = (b'{"result": false, "msg": "The given filter column nosuchkey is not supported.", '
                 b'"data": {"result": null}}')


def cfg(**over):
    base = dict(ia.DEFAULTS)
    base.update(idle_minutes=60.0, warn_minutes=5.0, interval_seconds=60.0,
                signals=["hold", "ray", "torchrun", "cluster"])
    base.update(over)
    return base


def snap(**over):
    base = {"boot_id": BOOT, "monotonic": 10_000.0, "holds": [], "cpu": None,
            "maintenance_event": None}
    base.update(over)
    return base


# ---------------------------------------------------------------------------------------------
# ray
# ---------------------------------------------------------------------------------------------
class _Dashboard(BaseHTTPRequestHandler):
    answer: tuple = (200, RAY_IDLE)
    seen: list = []

    def do_GET(self):
        self.seen.append((self.path, dict(self.headers)))
        status, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


@pytest.fixture()
def dashboard():
    _Dashboard.answer = (200, RAY_IDLE)
    _Dashboard.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Dashboard
    server.shutdown()
    server.server_close()


def test_collect_ray_asks_for_running_tasks(dashboard):
    url, handler = dashboard
    assert ia.collect_ray(url, 5.0) == {"running": 0}
    path, headers = handler.seen[0]
    assert path.startswith("/api/v0/tasks?filter_keys=state&filter_predicates=%3D"
                           "&filter_values=RUNNING&limit=1")
    assert "Authorization" not in headers
    handler.answer = (200, RAY_RUNNING)
    # `total` counts every running task, not the one `limit=1` lets through.
    assert ia.collect_ray(url + "/", 5.0) == {"running": 2}


@pytest.mark.parametrize("answer, why", [
    ((200, RAY_BAD_QUERY), "state API error"),
    ((500, b"Internal Server Error"), "HTTP 500"),
    ((200, b"<html>not ray</html>"), ""),
    ((200, b'{"result": true, "data": {"result": {"total": "2", "result": []}}}'), "not a state API"),
    ((200, b'{"result": true, "data": {"result": {"total": 1}}}'), "not a state API"),
    ((200, b"[]"), "not a state API"),
])
def test_collect_ray_unreadable_answers_are_unknown(dashboard, answer, why):
    url, handler = dashboard
    handler.answer = answer
    result = ia.collect_ray(url, 5.0)
    assert set(result) == {"unknown"}
    assert why in result["unknown"]
    decision = ia.decide(snap(ray=result), cfg(), T0, None)
    assert decision["kind"] == "idle"
    assert "ray unknown (" in decision["summary"]


def test_collect_ray_not_running_and_not_loopback(dashboard):
    _url, handler = dashboard
    assert ia.collect_ray("http://127.0.0.1:9", 2.0) == {"unreachable": True}
    assert ia.collect_ray("", 2.0) is None
    # A dashboard off this machine is never asked: anyone could answer there.
    for url in ("http://10.0.0.2:8265", "https://127.0.0.1:8265", "http://ray.example:8265"):
        assert "not a loopback" in ia.collect_ray(url, 2.0)["unknown"]
    assert handler.seen == []


@pytest.mark.parametrize("ray, kind, text", [
    ({"running": 2}, "busy", "ray tasks running (2)"),
    ({"running": 0}, "idle", "no ray task running"),
    ({"unreachable": True}, "idle", "ray not running"),
    ({"unknown": "HTTP 500"}, "idle", "ray unknown (HTTP 500)"),
])
def test_decide_ray(ray, kind, text):
    decision = ia.decide(snap(ray=ray), cfg(), T0, None)
    assert decision["kind"] == kind
    assert text in decision["summary"]
    assert decision["new_state"]["own"]["busy"] == (["ray"] if kind == "busy" else [])


def test_no_ray_dashboard_adds_nothing():
    assert "ray" not in ia.decide(snap(ray=None), cfg(), T0, None)["summary"]


# ---------------------------------------------------------------------------------------------
# torchrun
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cmdline, match", [
    (["/opt/venv/bin/torchrun", "--nnodes=3", "train.py"], True),
    (["torchrun", "--standalone", "--nproc-per-node=2", "t.py"], True),
    # A console script runs as `python /path/torchrun ...`.
    (["/opt/venv/bin/python3", "/opt/venv/bin/torchrun", "--nnodes=2", "t.py"], True),
    (["python3.11", "-u", "-m", "torch.distributed.run", "--nproc-per-node=8", "t.py"], True),
    (["python", "-X", "dev", "-m", "torch.distributed.launch", "t.py"], True),
    (["python3", "-mtorch.distributed.run", "t.py"], True),
    (["python3", "train.py", "--launcher", "torchrun"], False),
    (["python3", "-m", "torch.utils.collect_env"], False),
    (["python3", "-c", "import torch.distributed.run"], False),
    (["vim", "torchrun.sh"], False),
    (["bash", "-c", "torchrun t.py"], False),
    (["sleep", "torchrun"], False),
    ([], False),
])
def test_is_torchrun(cmdline, match):
    assert ia.is_torchrun(cmdline) is match


def test_collect_torchrun_finds_a_real_process():
    """A real process whose argv[0] is `torchrun` is found; one that only mentions it is not."""
    launcher = subprocess.Popen(["torchrun", "30"], executable="/bin/sleep")
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "torchrun"])
    try:
        # Popen returns once the child exists, perhaps before its exec: until then its command
        # line is still this Python's.
        for proc, execed in ((launcher, lambda c: c.startswith(b"torchrun\0")),
                             (decoy, lambda c: c.endswith(b"\0torchrun\0"))):
            deadline = time.monotonic() + 30
            while not execed(Path(f"/proc/{proc.pid}/cmdline").read_bytes()):
                assert time.monotonic() < deadline, f"pid {proc.pid} never ran its command"
                time.sleep(0.01)
        found = ia.collect_torchrun()
        assert launcher.pid in found
        assert decoy.pid not in found
        decision = ia.decide(snap(torchrun=found), cfg(), T0, None)
        assert decision["kind"] == "busy"
        assert f"torchrun alive (pid {launcher.pid}" in decision["summary"]
    finally:
        for proc in (launcher, decoy):
            proc.kill()
            proc.wait()
    assert launcher.pid not in ia.collect_torchrun()


class _Proc:
    def __init__(self, pid, cmdline):
        self.info = {"pid": pid, "cmdline": cmdline}


def test_collect_torchrun_faked_processes(monkeypatch):
    """Processes psutil could not read (cmdline None: a zombie, access denied) are skipped."""
    procs = [_Proc(10, ["python3", "-m", "torch.distributed.run", "t.py"]),
             _Proc(11, None), _Proc(12, ["python3", "t.py"]), _Proc(9, ["torchrun", "t.py"])]
    monkeypatch.setattr(ia.psutil, "process_iter", lambda attrs=None: iter(procs))
    assert ia.collect_torchrun() == [9, 10]
    decision = ia.decide(snap(torchrun=[]), cfg(), T0, None)
    assert "no torchrun" in decision["summary"]


# ---------------------------------------------------------------------------------------------
# cluster: what a node serves
# ---------------------------------------------------------------------------------------------
def _state_after(snapshot, now=T0, config=None, state=None):
    return json.loads(json.dumps(ia.decide(snapshot, config or cfg(), now, state)["new_state"]))


def test_peer_answer_busy_idle_and_unknown():
    config = cfg()
    busy = _state_after(snap(torchrun=[42], holds=[{"user": "ana", "until": None}]))
    # A busy verdict says how old it is: the node was last seen busy at its check, not now.
    assert ia.peer_answer(config, busy, BOOT, T0 + 30) == {
        "idle_autostop": 1, "state": "busy", "signals": ["hold", "torchrun"], "age_seconds": 30.0}
    idle = _state_after(snap(torchrun=[]), now=T0)
    idle = _state_after(snap(torchrun=[], monotonic=10_060.0), now=T0 + 60, state=idle)
    assert ia.peer_answer(config, idle, BOOT, T0 + 90) == {
        "idle_autostop": 1, "state": "idle", "idle_seconds": 90.0}
    assert ia.peer_answer(config, None, BOOT, T0)["why"] == "no check yet"
    assert ia.peer_answer(config, idle, "another-boot", T0 + 90)["why"] == "no check since boot"
    assert ia.peer_answer(config, idle, BOOT, T0 + 3600)["why"] == "checks stopped"
    assert ia.peer_answer(config, idle, BOOT, T0 - 3600)["why"] == "checks stopped"
    assert ia.peer_answer(cfg(enabled=False), idle, BOOT, T0 + 90)["why"] == "disabled"


def test_peer_answer_is_the_nodes_own_verdict_not_its_peers():
    """A node busy only because a peer is serves idle: no recursion, or two idle nodes that
    passed "busy" back and forth would hold each other up for ever."""
    peers = [{"peer": "10.0.0.3", "state": "busy", "signals": ["gpu"]}]
    state = _state_after(snap(torchrun=[], cluster=peers))
    assert ia.decide(snap(torchrun=[], cluster=peers), cfg(), T0, None)["kind"] == "busy"
    answer = ia.peer_answer(cfg(), state, BOOT, T0 + 10)
    assert answer["state"] == "idle"


def test_peer_answer_carries_nothing_else(tmp_path, capsys):
    """Only busy/idle, signal names and the idle time leave the node: not the Jupyter token,
    not hold owners' names, not the summary."""
    token = "s3cr3t-t0ken-value"
    (tmp_path / "token").write_text(f"JUPYTER_TOKEN={token}\n")
    conf = _write_conf(tmp_path, jupyter_token_file=str(tmp_path / "token"))
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state = _state_after(snap(holds=[{"user": "ana", "until": None}],
                              boot_id=ia.read_boot_id()), now=time.time())
    state["last_decision"]["summary"] += f" {token}"
    (state_dir / "state.json").write_text(json.dumps(state))
    assert ia.main(["--config", conf, "peer-state"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1
    answer = json.loads(out)
    assert answer.pop("age_seconds") < 60
    assert answer == {"idle_autostop": 1, "state": "busy", "signals": ["hold"]}
    assert token not in out and "ana" not in out


# ---------------------------------------------------------------------------------------------
# cluster: reading a peer
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data, expected", [
    (b'{"idle_autostop": 1, "state": "busy", "signals": ["gpu", "ray"], "age_seconds": 41.5}\n',
     {"state": "busy", "signals": ["gpu", "ray"], "age_seconds": 41.5}),
    # An agent that does not say how old its verdict is: as of now.
    (b'{"idle_autostop": 1, "state": "busy", "signals": ["gpu", "ray"]}\n',
     {"state": "busy", "signals": ["gpu", "ray"], "age_seconds": 0.0}),
    (b'{"idle_autostop": 1, "state": "idle", "idle_seconds": 312}',
     {"state": "idle", "idle_seconds": 312.0}),
    (b'{"idle_autostop": 1, "state": "unknown", "why": "disabled"}',
     {"state": "unknown", "why": "disabled"}),
    (b'{"idle_autostop": 1, "state": "unknown", "why": "<script>"}',
     {"state": "unknown", "why": "unknown"}),
])
def test_parse_peer_answer(data, expected):
    assert ia.parse_peer_answer(data) == expected


@pytest.mark.parametrize("data", [
    b"", b"busy", b"[]", b'{"state": "busy", "signals": []}',
    b'{"idle_autostop": 2, "state": "busy", "signals": []}',
    b'{"idle_autostop": 1, "state": "busy", "signals": ["cluster"]}',
    b'{"idle_autostop": 1, "state": "busy", "signals": "gpu"}',
    b'{"idle_autostop": 1, "state": "busy", "signals": ["mining"]}',
    b'{"idle_autostop": 1, "state": "idle", "idle_seconds": -5}',
    b'{"idle_autostop": 1, "state": "busy", "signals": [], "age_seconds": -1}',
    b'{"idle_autostop": 1, "state": "busy", "signals": [], "age_seconds": "3"}',
    b'{"idle_autostop": 1, "state": "busy", "signals": [], "age_seconds": false}',
    b'{"idle_autostop": 1, "state": "busy", "signals": [], "age_seconds": 1e12}',
    b'{"idle_autostop": 1, "state": "idle", "idle_seconds": true}',
    b'{"idle_autostop": 1, "state": "idle", "idle_seconds": NaN}',
    b'{"idle_autostop": 1, "state": "idle", "idle_seconds": Infinity}',
    b'{"idle_autostop": 1, "state": "idle"}',
    b'{"idle_autostop": 1, "state": "asleep"}',
    "{\"idle_autostop\": 1, \"state\": \"idle\", \"idle_seconds\": 1, \"x\": \"\u00e9\"}".encode(),
])
def test_parse_peer_answer_rejects(data):
    with pytest.raises(ValueError):
        ia.parse_peer_answer(data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=10),
                              lambda c: st.lists(c, max_size=3)
                              | st.dictionaries(st.sampled_from(
                                  ["idle_autostop", "state", "signals", "idle_seconds",
                                   "age_seconds", "why"]),
                                  c, max_size=5)).map(lambda v: json.dumps(v).encode())))
def test_parse_peer_answer_never_crashes(data):
    """Whatever a peer sends, the result is a valid verdict or ValueError (unknown), never a
    crash of the check."""
    try:
        result = ia.parse_peer_answer(data)
    except ValueError:
        return
    assert result["state"] in ("busy", "idle", "unknown")


class _Peer:
    """A TCP server on loopback that answers every connection with fixed bytes (or hangs)."""

    def __init__(self, data: bytes | None, host: str = "127.0.0.1", port: int = 0):
        self.data = data
        self.sock = socket.socket()
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.1)
        held = []
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            if self.data is None:
                held.append(conn)  # accept and say nothing
                continue
            with conn:
                conn.sendall(self.data)
        for conn in held:
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture()
def peers():
    started = []

    def start(data, host="127.0.0.1", port=0):
        peer = _Peer(data, host, port)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_query_peer(peers):
    busy = peers(b'{"idle_autostop": 1, "signals": ["torchrun"], "state": "busy"}\n')
    assert ia.query_peer("127.0.0.1", busy.port, 2.0) == {
        "peer": "127.0.0.1", "state": "busy", "signals": ["torchrun"], "age_seconds": 0.0}
    garbage = peers(b"HTTP/1.1 200 OK\r\n\r\nbusy")
    assert ia.query_peer("127.0.0.1", garbage.port, 2.0)["why"] == "unreadable answer"
    flood = peers(b"{" + b" " * 5000 + b"}")
    assert ia.query_peer("127.0.0.1", flood.port, 2.0)["why"] == "answer too long"
    mute = peers(None)
    started = time.monotonic()
    assert ia.query_peer("127.0.0.1", mute.port, 0.5)["why"] == "no answer"
    assert time.monotonic() - started < 2.0
    # Nothing accepts: a stopped VM.
    assert ia.query_peer("127.0.0.1", _free_port(), 1.0) == {"peer": "127.0.0.1",
                                                             "state": "unreachable"}


def test_collect_cluster_asks_every_peer_at_once(peers):
    """Three peers that accept and say nothing cost one timeout, not three (a check must not
    take N timeouts when N nodes hang)."""
    first = peers(None, "127.0.0.2")
    for host in ("127.0.0.3", "127.0.0.4"):
        peers(None, host, first.port)
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    started = time.monotonic()
    answers = ia.collect_cluster(hosts, first.port, 0.5)
    elapsed = time.monotonic() - started
    assert [(a["peer"], a["why"]) for a in answers] == [(h, "no answer") for h in hosts]
    assert elapsed < 1.25  # one after the other: at least 1.5 s
    assert ia.collect_cluster([], 917, 0.5) is None


@pytest.mark.parametrize("peer_states, kind, text", [
    ([{"peer": "10.0.0.3", "state": "busy", "signals": ["gpu", "torchrun"]}], "busy",
     "peer busy: 10.0.0.3 (gpu, torchrun)"),
    ([{"peer": "10.0.0.3", "state": "unreachable"}], "idle", "peers 1 down"),
    ([{"peer": "10.0.0.3", "state": "unknown", "why": "unreadable answer"},
      {"peer": "10.0.0.4", "state": "idle", "idle_seconds": 7200.0}], "idle",
     "peers 1 idle, 1 unknown (10.0.0.3: unreadable answer)"),
])
def test_decide_cluster(peer_states, kind, text):
    decision = ia.decide(snap(cluster=peer_states), cfg(), T0, None)
    assert decision["kind"] == kind
    assert text in decision["summary"]


def test_a_busy_peer_counts_as_active_at_its_own_check():
    """A peer busy as of its check 50 s ago keeps this node busy, and that moment, not now, is
    where the count starts once the peer's next answer says idle: the two counts agree."""
    state = {"version": 1, "boot_id": BOOT, "last_check": T0 - 60, "last_monotonic": 9_940.0,
             "idle_since": T0 - 3000, "warned_at": None, "own": {"busy": [], "idle_since": T0 - 3000}}
    peer = [{"peer": "10.0.0.3", "state": "busy", "signals": ["torchrun"], "age_seconds": 50.0}]
    decision = ia.decide(snap(cluster=peer), cfg(), T0, state)
    assert decision["kind"] == "busy" and decision["action"] == "none"
    assert decision["new_state"]["idle_since"] == T0 - 50
    # Its own signals busy: now, whatever the peers say.
    decision = ia.decide(snap(cluster=peer, torchrun=[7]), cfg(), T0, state)
    assert decision["new_state"]["idle_since"] == T0
    # The peer, idle since that check, answers 20 s later: both count from T0 - 50.
    state = json.loads(json.dumps(ia.decide(snap(cluster=peer), cfg(), T0, state)["new_state"]))
    peer = [{"peer": "10.0.0.3", "state": "idle", "idle_seconds": 70.0}]
    decision = ia.decide(snap(cluster=peer, monotonic=10_020.0), cfg(), T0 + 20, state)
    assert decision["kind"] == "idle" and round(decision["idle_seconds"]) == 70


def test_an_idle_peer_active_more_recently_moves_the_count():
    """The cluster is idle from the latest moment any node was active: a peer idle for 10 min
    brings a node idle for 50 min back to 10."""
    state = {"version": 1, "boot_id": BOOT, "last_check": T0 - 60, "last_monotonic": 9_940.0,
             "idle_since": T0 - 3000, "warned_at": None, "own": {"busy": [], "idle_since": T0 - 3000}}
    peer = [{"peer": "10.0.0.3", "state": "idle", "idle_seconds": 600.0}]
    decision = ia.decide(snap(cluster=peer), cfg(), T0, state)
    assert round(decision["idle_seconds"]) == 600
    # What this node tells its own peers is its own 50 minutes.
    assert decision["new_state"]["own"]["idle_since"] == T0 - 3000


# ---------------------------------------------------------------------------------------------
# The whole cluster over time: it powers off as one, and never while a node works
# ---------------------------------------------------------------------------------------------
def _simulate(work_until: list[float], offsets: list[float], interval=60.0, idle_minutes=10.0,
              horizon=3 * 3600.0, warn_minutes=1.0):
    """N nodes, node i busy (torchrun) until work_until[i], checking every `interval` with a
    phase offsets[i]; each asks the others' peer_answer(). Returns each node's poweroff time."""
    n = len(work_until)
    config = cfg(idle_minutes=idle_minutes, warn_minutes=warn_minutes, interval_seconds=interval)
    states: list = [None] * n
    off: list = [None] * n
    events = sorted((k * interval + offsets[i], i) for i in range(n)
                    for k in range(int(horizon // interval)))
    for now, i in events:
        if off[i] is not None:
            continue
        answers = []
        for j in range(n):
            if j == i:
                continue
            if off[j] is not None:
                answers.append({"peer": f"n{j}", "state": "unreachable"})
            else:
                answer = ia.peer_answer(config, states[j], BOOT, now)
                answers.append({"peer": f"n{j}", **ia.parse_peer_answer(json.dumps(answer).encode())})
        snapshot = snap(monotonic=now - T0, torchrun=[1] if now < work_until[i] else [],
                        cluster=answers)
        decision = ia.decide(snapshot, config, now, states[i])
        states[i] = json.loads(json.dumps(decision["new_state"]))
        if decision["action"] == "poweroff":
            assert all(now >= w for w in work_until), "powered off while a node was working"
            off[i] = now
    return off


def test_cluster_powers_off_together():
    work_until = [T0 + 1800, T0 + 600, T0 + 3000]
    off = _simulate(work_until, offsets=[T0 + 0, T0 + 20, T0 + 45])
    assert None not in off
    assert max(off) - min(off) <= 60 + 1e-6
    # The whole cluster idle for the window (10 min), counted from the last check that saw the
    # work (a node sees it only at its checks, as a lone VM does), plus at most a warning check
    # and an interval's lag from a peer's last saved state.
    assert min(off) >= max(work_until) + 600 - 60
    assert max(off) <= max(work_until) + 600 + 3 * 60


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 3600), min_size=2, max_size=4), st.floats(0, 59),
       st.sampled_from([0.05, 1.0, 5.0]))
def test_nodes_that_check_together_power_off_at_the_same_check(work, phase, warn_minutes):
    """Nodes whose timers fire at the same moments (VMs booted together) all power off at the
    same check, whatever the warning: none waits a check more for a peer's stale "busy"."""
    work_until = [T0 + w for w in work]
    off = _simulate(work_until, offsets=[T0 + phase] * len(work), warn_minutes=warn_minutes)
    assert None not in off
    assert max(off) == min(off)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 3600), min_size=2, max_size=4),
       st.lists(st.floats(0, 59), min_size=4, max_size=4))
def test_cluster_powers_off_together_always(work, phases):
    work_until = [T0 + w for w in work]
    off = _simulate(work_until, offsets=[T0 + p for p in phases[:len(work)]])
    assert None not in off
    assert max(off) - min(off) <= 60 + 1e-6


# ---------------------------------------------------------------------------------------------
# The CLI: status shows the new signals; peer-state answers
# ---------------------------------------------------------------------------------------------
def _write_conf(tmp_path, **over):
    values = {"idle_minutes": "60", "action": "log", "jupyter_url": "", "maintenance_url": "",
              "signals": "hold ray torchrun cluster", "state_dir": str(tmp_path / "state"),
              "hold_dir": str(tmp_path / "hold"), "pts_dir": str(tmp_path / "pts")}
    values.update(over)
    (tmp_path / "hold").mkdir(exist_ok=True)
    (tmp_path / "hold").chmod(0o1777)
    conf = tmp_path / "idle-autostop.conf"
    conf.write_text("[idle-autostop]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return str(conf)


def test_status_shows_ray_torchrun_and_peers(tmp_path, capsys, monkeypatch, dashboard):
    url, handler = dashboard
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.setattr(ia, "collect_torchrun", list)
    # Nothing listens on 127.0.0.1:917 in the test (a privileged port): a stopped peer.
    conf = _write_conf(tmp_path, ray_dashboard_url=url, cluster_peers="127.0.0.1 ::1")
    assert ia.main(["--config", conf, "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("idle for 0 min")
    assert "no ray task running" in out and "no torchrun" in out and "peers 2 down" in out
    handler.answer = (200, RAY_RUNNING)
    monkeypatch.setattr(ia, "collect_torchrun", lambda: [4242])
    assert ia.main(["--config", conf, "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("busy: ray tasks running (2), torchrun alive (pid 4242)")
    assert ia.main(["--config", conf, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "busy"


@pytest.mark.parametrize("over, message", [
    ({"cluster_peers": "10.0.0.2 not-an-ip"}, "not-an-ip"),
    ({"cluster_port": "8917"}, "cluster_port must be below 1024"),
    ({"signals": "hold slurm"}, "unknown signals: slurm"),
])
def test_bad_cluster_settings_are_refused(tmp_path, capsys, over, message):
    assert ia.main(["--config", _write_conf(tmp_path, **over), "validate"]) == 2
    assert message in capsys.readouterr().err


def test_peer_state_through_a_real_process(tmp_path, peers):
    """The bytes `idle-autostop peer-state` writes, served to query_peer as the socket unit
    would: the reader understands the writer."""
    conf = _write_conf(tmp_path)
    (tmp_path / "state").mkdir()
    state = _state_after(snap(torchrun=[7], boot_id=ia.read_boot_id()), now=time.time())
    (tmp_path / "state" / "state.json").write_text(json.dumps(state))
    out = subprocess.run([sys.executable, "-I", AGENT, "--config", conf, "peer-state"],
                         capture_output=True, check=True, timeout=60).stdout
    peer = peers(out)
    answer = ia.query_peer("127.0.0.1", peer.port, 2.0)
    assert 0 <= answer.pop("age_seconds") < 60
    assert answer == {"peer": "127.0.0.1", "state": "busy", "signals": ["torchrun"]}
