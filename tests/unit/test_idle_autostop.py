"""Unit tests for the idle-autostop agent (roles/idle_autostop/files/usr/local/bin/idle-autostop).

The decision function is pure, so it is exercised over a table of recorded observations; the
parsers are tested on real-shaped bytes (/api/kernels JSON, nvidia-smi output, /proc/net/tcp);
logins and CPU times come from psutil, faked where the test needs a given terminal.
"""

import importlib.machinery
import importlib.util
import json
import os
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.unprivileged import run_unprivileged
from hypothesis import given, settings
from hypothesis import strategies as st

AGENT = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "idle_autostop", "files",
                     "usr", "local", "bin", "idle-autostop")


def _load_agent():
    loader = importlib.machinery.SourceFileLoader("idle_autostop_agent", AGENT)
    spec = importlib.util.spec_from_loader("idle_autostop_agent", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


ia = _load_agent()

T0 = 1_700_000_000.0  # a fixed "now" for the recorded observations
BOOT = "3f0c1a52-0000-4000-8000-000000000001"


def cfg(**over):
    base = dict(ia.DEFAULTS)
    base.update(idle_minutes=60.0, warn_minutes=5.0, interval_seconds=60.0)
    base.update(over)
    return base


def snap(**over):
    """An idle machine: Jupyter up with one idle kernel, no terminals, no GPU, CPU quiet."""
    base = {
        "boot_id": BOOT,
        "monotonic": 10_000.0,
        "jupyter": {"kernels": [{"id": "k1", "execution_state": "idle",
                                 "last_activity": T0 - 7200, "connections": 1}]},
        "ttys": [],
        "gpu": None,
        "cpu": {"total": 1_000_000 + 12_000, "idle": 900_000 + 11_820, "ncpu": 2},
        "holds": [],
        "maintenance_event": None,
    }
    base.update(over)
    return base


def prev_state(idle_since, last_check=T0 - 60, last_mono=10_000.0 - 60, **over):
    state = {"version": 1, "boot_id": BOOT, "last_check": last_check,
             "last_monotonic": last_mono, "idle_since": idle_since, "warned_at": None,
             "cpu": {"total": 1_000_000, "idle": 900_000}, "maintenance": {"value": "NONE"}}
    state.update(over)
    return state


# ---------------------------------------------------------------------------------------------
# The recorded-input table: (name, snapshot, config, now, previous state, expected)
# expected: kind, action, idle minutes (floor), and a substring of the summary.
# ---------------------------------------------------------------------------------------------
CASES = [
    ("busy kernel",
     snap(jupyter={"kernels": [{"id": "k1", "execution_state": "busy",
                                "last_activity": T0 - 3000, "connections": 0}]}),
     cfg(), T0, prev_state(T0 - 3000), ("busy", "none", 0, "kernel busy (1 of 1)")),
    ("idle kernel, old activity, threshold passed, already warned",
     snap(), cfg(), T0, prev_state(T0 - 3700, warned_at=T0 - 300),
     ("idle", "poweroff", 61, "kernels idle (1, last activity 120 min ago)")),
    ("idle kernel, activity inside the window holds the count",
     snap(jupyter={"kernels": [{"id": "k1", "execution_state": "idle",
                                "last_activity": T0 - 14 * 60, "connections": 1}]}),
     cfg(), T0, prev_state(T0 - 3000), ("idle", "none", 14, "last activity 14 min ago")),
    ("idle kernel, activity just outside the window",
     snap(jupyter={"kernels": [{"id": "k1", "execution_state": "idle",
                                "last_activity": T0 - 61 * 60, "connections": 1}]}),
     cfg(), T0, prev_state(T0 - 90 * 60, warned_at=T0 - 120), ("idle", "poweroff", 61, "")),
    ("tunnel only: no tty, no kernels, nothing keeps it up",
     snap(jupyter={"kernels": []}, ttys=[]),
     cfg(), T0, prev_state(T0 - 3600, warned_at=T0 - 60),
     ("idle", "poweroff", 60, "no kernels, no tty input")),
    ("tty input 2 minutes ago",
     snap(ttys=[{"line": "pts/0", "user": "ana", "last_input": T0 - 120}]),
     cfg(), T0, prev_state(T0 - 3000), ("idle", "none", 2, "tty input 2 min ago")),
    ("open ssh terminal without input for 2 hours does not keep it up",
     snap(ttys=[{"line": "pts/0", "user": "ana", "last_input": T0 - 7200}]),
     cfg(), T0, prev_state(T0 - 3700, warned_at=T0 - 60),
     ("idle", "poweroff", 61, "tty input 120 min ago")),
    ("gpu busy", snap(gpu=[87.0, 0.0]), cfg(), T0, prev_state(T0 - 3000),
     ("busy", "none", 0, "gpu 87%")),
    ("gpu at threshold is not busy", snap(gpu=[10.0]), cfg(), T0, prev_state(T0 - 600),
     ("idle", "none", 10, "gpu 10%")),
    ("cpu busy: one core of two fully used since the last check",
     snap(cpu={"total": 1_012_000, "idle": 906_000, "ncpu": 2}), cfg(), T0,
     prev_state(T0 - 3000), ("busy", "none", 0, "cpu 100%")),
    ("cpu quiet", snap(), cfg(), T0, prev_state(T0 - 600), ("idle", "none", 10, "cpu 3%")),
    ("cpu signal switched off", snap(cpu={"total": 1_012_000, "idle": 900_000, "ncpu": 2}),
     cfg(signals=["jupyter", "tty", "gpu", "hold"]), T0, prev_state(T0 - 600),
     ("idle", "none", 10, "")),
    ("keep-alive active", snap(holds=[{"user": "ana", "until": T0 + 3 * 3600}]), cfg(), T0,
     prev_state(T0 - 3700), ("busy", "none", 0, "hold by ana for 3h00m more")),
    ("keep-alive until released", snap(holds=[{"user": "ana", "until": None}]), cfg(), T0,
     prev_state(T0 - 3700), ("busy", "none", 0, "ana until released")),
    ("keep-alive expired", snap(holds=[{"user": "ana", "until": T0 - 1}]), cfg(), T0,
     prev_state(T0 - 3700, warned_at=T0 - 60), ("idle", "poweroff", 61, "no hold")),
    ("exactly at the threshold powers off",
     snap(), cfg(), T0, prev_state(T0 - 3600, warned_at=T0 - 60), ("idle", "poweroff", 60, "")),
    ("one second before the threshold does not",
     snap(), cfg(), T0, prev_state(T0 - 3599, warned_at=T0 - 60), ("idle", "none", 59, "")),
    ("threshold reached but nobody warned yet: warn first",
     snap(), cfg(), T0, prev_state(T0 - 3700), ("idle", "warn", 61, "warning users")),
    ("entering the warning window warns",
     snap(), cfg(), T0, prev_state(T0 - 56 * 60), ("idle", "warn", 56, "powering off in 4 min")),
    ("warned already: no second warning",
     snap(), cfg(), T0, prev_state(T0 - 57 * 60, warned_at=T0 - 60), ("idle", "none", 57, "")),
    ("no warning configured: straight to poweroff",
     snap(), cfg(warn_minutes=0.0), T0, prev_state(T0 - 3600), ("idle", "poweroff", 60, "")),
    ("first run with no state counts from now",
     snap(), cfg(), T0, None, ("idle", "none", 0, "first check")),
    ("new boot resets the count even with an old idle_since",
     snap(boot_id="another-boot"), cfg(), T0, prev_state(T0 - 86400),
     ("idle", "none", 0, "first check since boot")),
    # Timestamps recorded before a backwards step look recent afterwards: that only delays.
    ("wall clock jumped back 2 h: idle time really elapsed is kept",
     snap(jupyter={"kernels": []}), cfg(), T0 - 7200, prev_state(T0 - 600, last_check=T0 - 60),
     ("idle", "none", 10, "wall clock stepped -7200 s")),
    ("wall clock jumped forward 2 h: no instant poweroff",
     snap(), cfg(), T0 + 7200, prev_state(T0 - 600, last_check=T0 - 60),
     ("idle", "none", 10, "wall clock stepped +7200 s")),
    ("clock backwards without a monotonic reading: count again from now",
     snap(monotonic=None), cfg(), T0 - 7200, prev_state(T0 - 3000, last_check=T0 - 60),
     ("idle", "none", 0, "clock went backwards")),
    ("timer stopped for a day: stale count restarts",
     snap(), cfg(), T0, prev_state(T0 - 90000, last_check=T0 - 86400,
                                   last_mono=10_000.0 - 86400),
     ("idle", "none", 0, "previous check 1440 min ago")),
    ("disabled", snap(), cfg(enabled=False), T0, prev_state(T0 - 7200),
     ("disabled", "none", 0, "disabled")),
    ("jupyter not running is not a reason to stay up",
     snap(jupyter={"unreachable": True}), cfg(), T0, prev_state(T0 - 3600, warned_at=T0 - 60),
     ("idle", "poweroff", 60, "jupyter not running")),
    ("jupyter answering but unreadable is treated as busy",
     snap(jupyter={"error": "HTTP 403"}), cfg(), T0, prev_state(T0 - 3600),
     ("busy", "none", 0, "jupyter unreadable (HTTP 403)")),
    ("kernel activity in the future (skew) counts as now",
     snap(jupyter={"kernels": [{"id": "k1", "execution_state": "idle",
                                "last_activity": T0 + 30, "connections": 1}]}),
     cfg(), T0, prev_state(T0 - 3000), ("idle", "none", 0, "last activity 0 min ago")),
]


@pytest.mark.parametrize("name,snapshot,config,now,state,expected", CASES,
                         ids=[c[0] for c in CASES])
def test_decide_table(name, snapshot, config, now, state, expected):  # noqa: ARG001 (name: the case's id)
    kind, action, idle_min, fragment = expected
    decision = ia.decide(snapshot, config, now, state)
    assert decision["kind"] == kind, decision["summary"]
    assert decision["action"] == action, decision["summary"]
    assert int(decision["idle_seconds"] // 60) == idle_min, decision["summary"]
    assert fragment in decision["summary"], decision["summary"]


def test_summary_is_one_line_with_all_reasons():
    decision = ia.decide(
        snap(jupyter={"kernels": [
            {"id": "a", "execution_state": "idle", "last_activity": T0 - 14 * 60},
            {"id": "b", "execution_state": "idle", "last_activity": T0 - 30 * 60}]}),
        cfg(), T0, prev_state(T0 - 12 * 60))
    assert decision["summary"] == (
        "idle 12/60 min: no hold, kernels idle (2, last activity 14 min ago), no tty input, "
        "gpu n/a, cpu 3%")
    assert "\n" not in decision["summary"]


def test_warn_then_poweroff_sequence_over_checks():
    """Replay a quiet machine minute by minute: warn once at 55 min, power off at 60."""
    config = cfg()
    state = None
    actions = []
    mono = 10_000.0
    for minute in range(0, 63):
        now = T0 + minute * 60
        decision = ia.decide(snap(monotonic=mono + minute * 60,
                                  jupyter={"kernels": []}), config, now, state)
        state = decision["new_state"]
        actions.append((minute, decision["action"]))
    warned = [m for m, a in actions if a == "warn"]
    off = [m for m, a in actions if a == "poweroff"]
    assert warned == [55]
    assert off[0] == 60  # delay from threshold to poweroff: zero intervals when warned in time


def test_activity_resets_warning():
    state = prev_state(T0 - 56 * 60, warned_at=T0 - 60)
    busy = ia.decide(snap(gpu=[90.0]), cfg(), T0, state)
    assert busy["new_state"]["warned_at"] is None
    again = ia.decide(snap(monotonic=10_060.0), cfg(), T0 + 60, busy["new_state"])
    assert again["action"] == "none"
    assert again["idle_seconds"] == 60


def test_disabled_clears_count_so_reenabling_starts_fresh():
    d = ia.decide(snap(), cfg(enabled=False), T0, prev_state(T0 - 7200))
    assert d["new_state"].get("idle_since") is None
    assert ia.status_line(d).startswith("disabled")
    d2 = ia.decide(snap(monotonic=10_060.0), cfg(), T0 + 60, d["new_state"])
    assert d2["action"] == "none" and d2["idle_seconds"] == 0


def test_status_line_formats():
    idle = ia.decide(snap(), cfg(), T0, prev_state(T0 - 12 * 60))
    assert ia.status_line(idle).startswith("idle for 12 min, powering off in 48 min (")
    busy = ia.decide(snap(gpu=[55.0]), cfg(), T0, prev_state(T0 - 600))
    assert ia.status_line(busy) == "busy: gpu 55%"


def test_maintenance_event_notice_and_hook_once():
    config = cfg(maintenance_hook="touch /tmp/ckpt")
    s1 = prev_state(T0 - 60)
    d1 = ia.decide(snap(maintenance_event="TERMINATE_ON_HOST_MAINTENANCE"), config, T0, s1)
    assert "TERMINATE_ON_HOST_MAINTENANCE" in d1["maintenance_notice"]
    assert d1["run_hook"] == "TERMINATE_ON_HOST_MAINTENANCE"
    d2 = ia.decide(snap(maintenance_event="TERMINATE_ON_HOST_MAINTENANCE", monotonic=10_060.0),
                   config, T0 + 60, d1["new_state"])
    assert d2["run_hook"] is None and d2["maintenance_notice"] is None
    # Metadata briefly unreachable: the remembered value stays, no second hook.
    d3 = ia.decide(snap(maintenance_event=None, monotonic=10_120.0), config, T0 + 120,
                   d2["new_state"])
    assert d3["run_hook"] is None
    assert d3["new_state"]["maintenance"]["value"] == "TERMINATE_ON_HOST_MAINTENANCE"
    d4 = ia.decide(snap(maintenance_event="NONE", monotonic=10_180.0), config, T0 + 180,
                   d3["new_state"])
    assert "over" in d4["maintenance_notice"] and d4["run_hook"] is None
    d5 = ia.decide(snap(maintenance_event="MIGRATE_ON_HOST_MAINTENANCE", monotonic=10_240.0),
                   config, T0 + 240, d4["new_state"])
    assert d5["run_hook"] == "MIGRATE_ON_HOST_MAINTENANCE"


def test_maintenance_without_hook_only_logs():
    d = ia.decide(snap(maintenance_event="TERMINATE_ON_HOST_MAINTENANCE"), cfg(), T0,
                  prev_state(T0 - 60))
    assert d["maintenance_notice"] and d["run_hook"] is None


def test_maintenance_tracked_while_disabled():
    d = ia.decide(snap(maintenance_event="TERMINATE_ON_HOST_MAINTENANCE"),
                  cfg(enabled=False, maintenance_hook="true"), T0, prev_state(T0 - 60))
    assert d["run_hook"] == "TERMINATE_ON_HOST_MAINTENANCE"


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------
observation = st.fixed_dictionaries({
    "gpu": st.one_of(st.none(), st.lists(st.floats(0, 100), max_size=4)),
    "kernel_state": st.sampled_from(["idle", "busy", "starting", "dead", None]),
    "kernel_ago": st.floats(-120, 10 * 3600),
    "tty_ago": st.one_of(st.none(), st.floats(-120, 10 * 3600)),
    "hold_in": st.one_of(st.none(), st.floats(-7200, 7200)),
})


def _snapshot_from(obs, now, mono):
    kernels = []
    if obs["kernel_state"]:
        kernels.append({"id": "k", "execution_state": obs["kernel_state"],
                        "last_activity": now - obs["kernel_ago"]})
    ttys = [] if obs["tty_ago"] is None else [{"line": "pts/0", "user": "u",
                                               "last_input": now - obs["tty_ago"]}]
    holds = [] if obs["hold_in"] is None else [{"user": "u", "until": now + obs["hold_in"]}]
    return snap(monotonic=mono, jupyter={"kernels": kernels}, ttys=ttys, gpu=obs["gpu"],
                holds=holds)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(observation, st.floats(1, 600)), min_size=1, max_size=40),
       st.floats(0.5, 120))
def test_never_powers_off_before_threshold_or_while_busy(steps, idle_minutes):
    """Over any sequence of checks: poweroff only when idle >= threshold, never when busy, and
    only after a warning at an earlier check."""
    config = cfg(idle_minutes=idle_minutes, signals=["jupyter", "tty", "gpu", "hold"])
    now, mono, state = T0, 50_000.0, None
    warned_before = False
    for obs, dt in steps:
        now += dt
        mono += dt
        decision = ia.decide(_snapshot_from(obs, now, mono), config, now, state)
        if decision["action"] == "poweroff":
            assert decision["kind"] == "idle"
            assert decision["idle_seconds"] >= idle_minutes * 60
            assert warned_before
        if decision["kind"] == "busy":
            assert decision["idle_seconds"] == 0
        assert 0 <= decision["idle_seconds"]
        warned_before = decision["new_state"].get("warned_at") is not None and (
            decision["action"] != "none" or warned_before)
        state = json.loads(json.dumps(decision["new_state"]))  # it must survive the state file


@settings(max_examples=100, deadline=None)
@given(st.floats(-10 * 86400, 10 * 86400), st.floats(0, 3000))
def test_clock_steps_never_cause_poweroff(step, idle_so_far):
    """A wall-clock step of any size keeps the idle time that really elapsed."""
    config = cfg(idle_minutes=60.0)
    state = prev_state(T0 - 60 - idle_so_far, last_check=T0 - 60, last_mono=9_940.0)
    decision = ia.decide(snap(jupyter={"kernels": []}), config, T0 + step, state)
    assert decision["action"] in ("none", "warn")
    assert decision["idle_seconds"] <= idle_so_far + 60 + ia.CLOCK_STEP_TOLERANCE_S + 1e-6


# ---------------------------------------------------------------------------------------------
# Parsers
# ---------------------------------------------------------------------------------------------
def _login(terminal, name, pid, host=""):
    # The fields psutil.users() gives (its suser tuple is private and changes between versions).
    return types.SimpleNamespace(name=name, terminal=terminal, host=host, started=0.0, pid=pid)


def test_collect_ttys_uses_device_atime_and_skips_stale_logins(tmp_path, monkeypatch):
    dev = tmp_path / "dev"
    (dev / "pts").mkdir(parents=True)
    for n in ("0", "1", "ptmx"):
        (dev / "pts" / n).write_text("")
    os.utime(dev / "pts" / "0", (T0 - 300, T0))
    os.utime(dev / "pts" / "1", (T0 - 30, T0))
    # pts/1's login record is stale (its pid is above any pid_max): the pty still counts, as
    # its file owner's, not as the dead login's.
    monkeypatch.setattr(ia.psutil, "users", lambda: [
        _login("pts/0", "ana", os.getpid()), _login("pts/1", "gone", 2**22 + 7), _login(None, "x", 1)])
    ttys = ia.collect_ttys(str(dev / "pts"), dev_dir=str(dev))
    assert [(t["line"], t["user"], t["last_input"]) for t in ttys][0] == ("pts/0", "ana", T0 - 300)
    assert [t["line"] for t in ttys] == ["pts/0", "pts/1"]  # ptmx is not a terminal
    assert (ttys[1]["user"], ttys[1]["last_input"]) == (ia._user_name(os.getuid()), T0 - 30)


def test_collect_ttys_survives_missing_files(tmp_path, monkeypatch):
    monkeypatch.setattr(ia.psutil, "users", lambda: [_login("pts/0", "ana", os.getpid())])
    assert ia.collect_ttys(str(tmp_path / "nopts"), dev_dir=str(tmp_path)) == []


def test_collect_ttys_this_machine():
    """The real utmp through psutil: whatever is logged in, each entry is a line with a time."""
    for tty in ia.collect_ttys():
        assert tty["line"] and tty["last_input"] > 0


def test_parse_kernels_real_payload():
    body = json.dumps([
        {"id": "6d3c", "name": "python3", "last_activity": "2024-05-01T12:00:00.123456Z",
         "execution_state": "busy", "connections": 1},
        {"id": "7e4d", "name": "python3", "last_activity": "2024-05-01T11:00:00Z",
         "execution_state": "idle", "connections": 0},
        {"id": "8f5e", "name": "python3", "execution_state": "starting"},
    ])
    kernels = ia.parse_kernels(body)
    assert kernels[0]["execution_state"] == "busy"
    assert kernels[0]["last_activity"] == pytest.approx(1714564800.123456)
    assert kernels[1]["last_activity"] == 1714561200.0
    assert kernels[2]["last_activity"] is None and kernels[2]["connections"] == 0


@pytest.mark.parametrize("body", ['{"message": "Forbidden"}', "[1, 2]", "not json"])
def test_parse_kernels_rejects_garbage(body):
    with pytest.raises(ValueError):
        ia.parse_kernels(body)


@given(st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)))
def test_parse_iso8601_matches_jupyter_isoformat(value):
    # jupyter_server._tz.isoformat: value.isoformat() with +00:00 replaced by Z
    text = value.isoformat().replace("+00:00", "Z")
    assert ia.parse_iso8601(text) == pytest.approx(value.timestamp())


@pytest.mark.parametrize("out,expected", [
    ("0\n", [0.0]),
    ("87\n3\n", [87.0, 3.0]),
    ("[N/A]\n45\n", [45.0]),
    ("", []),
    ("100 %\n", [100.0]),
])
def test_parse_nvidia_smi(out, expected):
    assert ia.parse_nvidia_smi(out) == expected


def test_collect_gpu_absent_or_broken(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ia.collect_gpu() is None
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate "
                    "with the NVIDIA driver.\"\nexit 9\n")
    fake.chmod(0o755)
    assert ia.collect_gpu() is None
    fake.write_text("#!/bin/sh\nprintf '12\\n97\\n'\n")
    assert ia.collect_gpu() == [12.0, 97.0]


def test_collect_cpu_this_machine():
    """Seconds from psutil, on the scale _cpu_percent needs: idle within total, every CPU."""
    first = ia.collect_cpu()
    assert first["ncpu"] == os.cpu_count()
    assert 0 < first["idle"] < first["total"]
    busy_until = time.monotonic() + 0.3
    while time.monotonic() < busy_until:
        pass
    second = ia.collect_cpu()
    pct = ia._cpu_percent(second, first)
    # This process kept one core busy: a share of one core near 100 (other load only adds).
    assert pct is not None and pct > 30


@pytest.mark.parametrize("text,token", [
    ("abc123\n", "abc123"),
    ("JUPYTER_TOKEN=s3cret\n", "s3cret"),
    ("# env\nexport JUPYTER_TOKEN='q w'\n", "q w"),
    ('{"IdentityProvider": {"token": "tok"}}', "tok"),
    ('{"ServerApp": {"token": "old"}}', "old"),
    ("", ""),
])
def test_parse_token(text, token):
    assert ia.parse_token(text) == token


@pytest.mark.parametrize("body,value", [
    (b"NONE", "NONE"), (b"TERMINATE_ON_HOST_MAINTENANCE\n", "TERMINATE_ON_HOST_MAINTENANCE"),
    (b"MIGRATE_ON_HOST_MAINTENANCE", "MIGRATE_ON_HOST_MAINTENANCE"),
])
def test_parse_maintenance(body, value):
    assert ia.parse_maintenance(body) == value


def test_parse_maintenance_rejects_html():
    with pytest.raises(ValueError):
        ia.parse_maintenance(b"<html>captive portal</html>")


@pytest.mark.parametrize("text,seconds", [
    ("3h", 10800), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("2d", 172800), ("20", 1200),
    ("forever", None),
])
def test_parse_duration(text, seconds):
    assert ia.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "h", "0m", "3h and then"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        ia.parse_duration(text)


# ---------------------------------------------------------------------------------------------
# Holds: identity is the file's owner; the directory is world-writable, so nothing in it is
# trusted by name, and links are never followed. Everything lives in the test's temp tree.
# ---------------------------------------------------------------------------------------------
ME = os.geteuid()
OTHER = 64_000 if ME != 64_000 else 64_001  # a uid that is not the test's


def _hold_dir(tmp_path):
    hold = tmp_path / "hold"
    hold.mkdir()
    hold.chmod(0o1777)
    return hold


def _chown_or_skip(path, uid):
    try:
        os.chown(path, uid, -1, follow_symlinks=False)
    except PermissionError:
        pytest.skip("needs root to give a temp file another owner")


def test_collect_holds_identity_is_the_owner_not_the_name(tmp_path):
    hold = _hold_dir(tmp_path)
    (hold / "root").write_text(f"{T0 + 60:.0f}\n")   # named after root, made by someone else
    _chown_or_skip(hold / "root", OTHER)
    (hold / "mine").write_text("")
    (hold / ".hold.123.tmp").write_text("1")
    (hold / "junk").write_text("tomorrow")
    holds = sorted(ia.collect_holds(str(hold)), key=lambda h: h["until"] or 0)
    assert holds == [{"user": ia._user_name(ME), "until": None},
                     {"user": ia._user_name(OTHER), "until": T0 + 60}]


def test_squatting_another_users_name_is_not_their_hold(tmp_path):
    hold = _hold_dir(tmp_path)
    victim = ia._user_name(ME)
    (hold / victim).write_text("")       # another user plants a file named after us
    _chown_or_skip(hold / victim, OTHER)
    holds = ia.collect_holds(str(hold))
    assert [h["user"] for h in holds] == [ia._user_name(OTHER)]
    decision = ia.decide(snap(holds=holds), cfg(), T0, prev_state(T0 - 600))
    assert f"hold by {victim} " not in decision["summary"]
    # Our own hold is made beside it, under a fresh name, and theirs is left alone.
    ia.write_hold(str(hold), None)
    users = sorted(h["user"] for h in ia.collect_holds(str(hold)))
    assert users == sorted([victim, ia._user_name(OTHER)])
    assert (hold / victim).exists() and os.stat(hold / victim).st_uid == OTHER


def test_planted_symlink_is_not_followed(open_tmp_path):
    hold = _hold_dir(open_tmp_path)
    target = open_tmp_path / "precious"       # inside the temp tree, never a system path
    target.write_text("keep me\n")
    (hold / "ana").symlink_to(target)
    empty = open_tmp_path / "empty"           # reads as "until released" if it were followed
    empty.write_text("")
    (hold / "bo").symlink_to(empty)
    os.mkfifo(hold / "fifo")             # not regular files either: never opened, never removed
    (hold / "subdir").mkdir()
    assert ia.collect_holds(str(hold)) == []   # the link (and its target's owner) is ignored
    ia.write_hold(str(hold), T0 + 60)
    assert target.read_text() == "keep me\n"
    assert [h["until"] for h in ia.collect_holds(str(hold))] == [T0 + 60]
    # release removes regular files only; the link, and what it points to, stay. The removal
    # runs as nobody when the suite is root (tests/support/unprivileged.py).
    def release_all():
        dfd = ia.open_hold_dir(str(hold))
        try:
            ia.remove_holds(dfd, owner=None)
        finally:
            os.close(dfd)

    run_unprivileged(open_tmp_path, release_all)
    assert os.path.islink(hold / "ana") and target.read_text() == "keep me\n"
    assert sorted(os.listdir(hold)) == ["ana", "bo", "fifo", "subdir"]


def test_hard_link_to_another_file_is_not_a_hold(tmp_path):
    hold = _hold_dir(tmp_path)
    other = tmp_path / "someone-elses-empty-file"
    other.write_text("")
    os.link(other, hold / "h")
    assert ia.collect_holds(str(hold)) == []


def test_create_flags_refuse_a_planted_name(tmp_path):
    hold = _hold_dir(tmp_path)
    target = tmp_path / "target"
    target.write_text("x")
    os.symlink(target, hold / "planted")
    dfd = ia.open_hold_dir(str(hold))
    try:
        with pytest.raises(FileExistsError):
            os.open("planted", ia.HOLD_CREATE_FLAGS, 0o644, dir_fd=dfd)
    finally:
        os.close(dfd)
    assert target.read_text() == "x"


def test_another_user_cannot_create_or_replace_my_hold(tmp_path):
    """As another uid (a forked child, through an inherited fd on the temp hold dir)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another uid")
    hold = _hold_dir(tmp_path)
    ia.write_hold(str(hold), None)
    (mine,) = os.listdir(hold)
    dfd = ia.open_hold_dir(str(hold))
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        results = []
        try:
            os.setgroups([])
            os.setresgid(OTHER, OTHER, OTHER)
            os.setresuid(OTHER, OTHER, OTHER)
            for attempt in (lambda: os.unlink(mine, dir_fd=dfd),
                            lambda: os.open(mine, ia.HOLD_CREATE_FLAGS, 0o644, dir_fd=dfd),
                            lambda: os.rename("x", mine, src_dir_fd=dfd, dst_dir_fd=dfd)):
                try:
                    os.close(os.open("x", ia.HOLD_CREATE_FLAGS, 0o644, dir_fd=dfd)) \
                        if not results else None
                    attempt()
                    results.append("done")
                except OSError as exc:
                    results.append(exc.__class__.__name__)
            ia.remove_holds(dfd, owner=OTHER)
        finally:
            os.write(write_end, json.dumps(results).encode())
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    results = json.loads(os.read(read_end, 4096) or b"[]")
    os.close(read_end)
    os.close(dfd)
    assert results == ["PermissionError", "FileExistsError", "PermissionError"]
    assert os.listdir(hold) == [mine] and os.stat(hold / mine).st_uid == 0
    assert ia.collect_holds(str(hold)) == [{"user": "root", "until": None}]


def test_write_hold_replaces_only_own_hold(tmp_path):
    hold = _hold_dir(tmp_path)
    ia.write_hold(str(hold), T0 + 60)
    ia.write_hold(str(hold), T0 + 120)
    assert ia.collect_holds(str(hold)) == [{"user": ia._user_name(ME), "until": T0 + 120}]
    assert len(os.listdir(hold)) == 1


def test_unsafe_hold_dir_is_refused(tmp_path):
    hold = tmp_path / "hold"
    hold.mkdir()
    hold.chmod(0o777)                    # world-writable without the sticky bit
    with pytest.raises(PermissionError):
        ia.write_hold(str(hold), None)
    (hold / "x").write_text("")
    assert ia.collect_holds(str(hold)) == []
    (tmp_path / "sub").mkdir()
    real = _hold_dir(tmp_path / "sub")
    link = tmp_path / "hold-link"
    link.symlink_to(real)                # the directory itself may not be a link
    with pytest.raises(OSError):
        ia.write_hold(str(link), None)


def test_load_config_reads_ini_and_env(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("# managed\n[idle-autostop]\nenabled = false\nidle_minutes = 1.5\n"
                    "signals = jupyter, tty\naction = log\nmaintenance_hook = sync; echo hi\n")
    c = ia.load_config(str(conf), environ={"IDLE_AUTOSTOP_METADATA_URL": "http://127.0.0.1:1/x"})
    assert c["enabled"] is False and c["idle_minutes"] == 1.5
    assert c["signals"] == ["jupyter", "tty"] and c["action"] == "log"
    assert c["maintenance_hook"] == "sync; echo hi"
    assert c["maintenance_url"] == "http://127.0.0.1:1/x"
    conf.write_text("[idle-autostop]\naction = explode\n")
    with pytest.raises(ValueError):
        ia.load_config(str(conf), environ={})


# ---------------------------------------------------------------------------------------------
# HTTP collectors against a local server (loopback only)
# ---------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def do_GET(self):
        self.seen.append((self.path, dict(self.headers)))
        status, body = self.routes.get(self.path.split("?")[0], (404, b"nope"))
        if status == "hang":
            time.sleep(3)
            status, body = 200, b"NONE"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


@pytest.fixture()
def http_server():
    _Handler.routes = {}
    _Handler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Handler
    server.shutdown()
    server.server_close()


def test_collect_jupyter_sends_token_and_does_not_track_activity(http_server, tmp_path):
    url, handler = http_server
    handler.routes["/api/kernels"] = (200, json.dumps([
        {"id": "k", "execution_state": "idle", "last_activity": "2024-05-01T12:00:00Z",
         "connections": 1}]).encode())
    token = tmp_path / "token"
    token.write_text("JUPYTER_TOKEN=t0k\n")
    result = ia.collect_jupyter(url, str(token), 2.0, **_OWNER_IS_ME)
    assert result["kernels"][0]["execution_state"] == "idle"
    path, headers = handler.seen[0]
    assert path == "/api/kernels?no_track_activity=1"
    assert headers["Authorization"] == "token t0k"


def test_collect_jupyter_errors(http_server, tmp_path):
    url, handler = http_server
    handler.routes["/api/kernels"] = (403, b'{"message": "Forbidden"}')
    assert ia.collect_jupyter(url, "", 2.0, **_OWNER_IS_ME) == {"error": "HTTP 403"}
    assert ia.collect_jupyter(url, str(tmp_path / "missing"), 2.0,
                              **_OWNER_IS_ME)["error"].startswith("token")
    # Nothing listening: Jupyter is simply not running.
    assert ia.collect_jupyter("http://127.0.0.1:9", "", 2.0) == {"unreachable": True}
    assert ia.collect_jupyter("", "", 2.0) is None


# The test's own server is "the Jupyter service" when the expected user is the test's own uid.
_OWNER_IS_ME = {"service_user": str(os.geteuid()), "service_unit": ""}


def _other_user():
    import pwd
    for name in ("nobody", "daemon"):
        try:
            if pwd.getpwnam(name).pw_uid != os.geteuid():
                return name
        except KeyError:
            continue
    return str(OTHER)


def test_token_not_sent_to_a_port_held_by_another_uid(http_server, tmp_path):
    """Jupyter down, someone else on its port: no connection, no token, jupyter unknown."""
    url, handler = http_server
    handler.routes["/api/kernels"] = (200, json.dumps([
        {"id": "k", "execution_state": "busy", "last_activity": "2024-05-01T12:00:00Z"}]).encode())
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    result = ia.collect_jupyter(url, str(token), 2.0, service_user=_other_user(),
                                service_unit="")
    assert "unverified" in result and "held by uid" in result["unverified"]
    assert handler.seen == []            # never connected: the token stayed here
    decision = ia.decide(snap(jupyter=result), cfg(), T0, prev_state(T0 - 600))
    assert decision["kind"] == "idle" and "jupyter unknown (port owner not verified" in \
        decision["summary"]


def test_token_sent_when_the_owner_matches(http_server, tmp_path):
    url, handler = http_server
    handler.routes["/api/kernels"] = (200, b"[]")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert ia.collect_jupyter(url, str(token), 2.0, **_OWNER_IS_ME) == {"kernels": []}
    assert handler.seen[0][1]["Authorization"] == "token s3cret"


@pytest.mark.usefixtures("http_server")
def test_non_loopback_url_is_never_sent_the_token():
    assert "unverified" in ia.collect_jupyter("http://192.0.2.1:8080", "", 0.5, **_OWNER_IS_ME)


def _fake_proc(tmp_path, sock_uid, pid_uid, cgroup, address="0100007F", port=8080, inode=4242):
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (proc / "net" / "tcp").write_text(
        head + f"   0: {address}:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 "
        f"00000000 {sock_uid:5d}        0 {inode} 1 0000000000000000 100 0 0 10 0\n")
    (proc / "net" / "tcp6").write_text(head)
    pid = proc / "777"
    (pid / "fd").mkdir(parents=True)
    os.symlink(f"socket:[{inode}]", pid / "fd" / "5")
    (pid / "status").write_text(f"Name:\tjupyter-lab\nUid:\t{pid_uid}\t{pid_uid}\t{pid_uid}\t{pid_uid}\n")
    (pid / "cgroup").write_text(f"0::{cgroup}\n")
    return str(proc)


def test_verify_listener_fake_proc(tmp_path):
    ok = _fake_proc(tmp_path / "a", 1000, 1000, "/system.slice/jupyter.service")
    assert ia.verify_listener("127.0.0.1", 8080, "1000", "jupyter.service", ok) == ([4242], None)
    assert ia.verify_listener("127.0.0.1", 8081, "1000", "jupyter.service", ok) == ([], "none")
    other_uid = _fake_proc(tmp_path / "b", 1001, 1001, "/system.slice/jupyter.service")
    assert "uid 1001" in ia.verify_listener("127.0.0.1", 8080, "1000", "", other_uid)[1]
    # Right uid (the notebook's account) but outside the unit: a notebook's own listener.
    stray = _fake_proc(tmp_path / "c", 1000, 1000, "/user.slice/user-1000.slice/session-3.scope")
    problem = ia.verify_listener("127.0.0.1", 8080, "1000", "jupyter.service", stray)[1]
    assert "session-3.scope, not jupyter.service" in problem
    assert ia.verify_listener("127.0.0.1", 8080, "", "jupyter.service", stray)[1]
    # The socket was made by the service account, but another uid's process holds it now.
    passed_on = _fake_proc(tmp_path / "f", 1000, 1001, "/system.slice/jupyter.service")
    assert "pid 777 of uid [1001]" in ia.verify_listener("127.0.0.1", 8080, "1000", "",
                                                          passed_on)[1]
    # A wildcard listener takes 127.0.0.1 connections too, so it is checked as well.
    wild = _fake_proc(tmp_path / "d", 1001, 1001, "/x.service", address="00000000")
    assert ia.verify_listener("127.0.0.1", 8080, "1000", "", wild)[1]
    elsewhere = _fake_proc(tmp_path / "e", 1001, 1001, "/x.service", address="0101A8C0")
    assert ia.verify_listener("127.0.0.1", 8080, "1000", "", elsewhere) == ([], "none")


def test_load_config_refuses_an_unchecked_jupyter(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("[idle-autostop]\njupyter_service_user =\njupyter_service_unit =\n")
    with pytest.raises(ValueError):
        ia.load_config(str(conf), environ={})
    conf.write_text("[idle-autostop]\njupyter_service_user = ana\njupyter_service_unit = lab.service\n")
    c = ia.load_config(str(conf), environ={})
    assert (c["jupyter_service_user"], c["jupyter_service_unit"]) == ("ana", "lab.service")


def test_collect_maintenance(http_server):
    url, handler = http_server
    handler.routes["/mev"] = (200, b"TERMINATE_ON_HOST_MAINTENANCE")
    handler.routes["/slow"] = ("hang", b"")
    assert ia.collect_maintenance(url + "/mev", 1.0) == "TERMINATE_ON_HOST_MAINTENANCE"
    assert handler.seen[0][1]["Metadata-Flavor"] == "Google"
    started = time.monotonic()
    assert ia.collect_maintenance(url + "/slow", 0.5) is None  # short timeout, quietly
    assert time.monotonic() - started < 2.5
    assert ia.collect_maintenance("http://127.0.0.1:9/x", 0.5) is None
    assert ia.collect_maintenance(url + "/missing", 0.5) is None


def test_default_metadata_url_skipped_off_gce(monkeypatch):
    monkeypatch.setattr(ia, "on_gce", lambda *a: False)
    started = time.monotonic()
    assert ia.collect_maintenance(ia.GCE_METADATA_URL, 1.0) is None
    assert time.monotonic() - started < 0.1


# ---------------------------------------------------------------------------------------------
# The command line, end to end, with state and holds in a temp dir and action "log"
# ---------------------------------------------------------------------------------------------
def _write_conf(tmp_path, **over):
    values = {"idle_minutes": "60", "action": "log", "jupyter_url": "",
              "maintenance_url": "", "signals": "jupyter tty gpu hold",
              "state_dir": str(tmp_path / "state"), "hold_dir": str(tmp_path / "hold"),
              "pts_dir": str(tmp_path / "pts")}
    values.update(over)
    (tmp_path / "hold").mkdir(exist_ok=True)
    (tmp_path / "hold").chmod(0o1777)
    conf = tmp_path / "idle-autostop.conf"
    conf.write_text("[idle-autostop]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return str(conf)


def test_cli_check_status_hold_release(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi, no wall
    monkeypatch.setattr(ia.psutil, "users", list)  # nobody logged in, whatever this machine has
    conf = _write_conf(tmp_path)
    assert ia.main(["--config", conf, "check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("idle 0/60 min: no hold, jupyter n/a, no tty input, gpu n/a")
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["last_decision"]["kind"] == "idle"
    assert ia.main(["--config", conf, "status"]) == 0
    assert capsys.readouterr().out.startswith("idle for 0 min, powering off in 60 min")
    assert ia.main(["--config", conf, "hold", "3h"]) == 0
    capsys.readouterr()
    assert ia.main(["--config", conf, "status"]) == 0
    assert "busy: hold by" in capsys.readouterr().out
    assert ia.main(["--config", conf, "release"]) == 0
    capsys.readouterr()
    assert ia.main(["--config", conf, "status"]) == 0
    assert capsys.readouterr().out.startswith("idle for")
    assert ia.main(["--config", conf, "hold", "soon"]) == 2


def test_cli_disabled_status(tmp_path, capsys):
    conf = _write_conf(tmp_path, enabled="false")
    assert ia.main(["--config", conf, "status"]) == 0
    assert capsys.readouterr().out.startswith("disabled:")
