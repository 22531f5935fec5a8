"""Two systemd containers as the nodes of a cluster: the idle_autostop role with each other as
peers. A torchrun launcher on one node keeps both up; once it ends, both power themselves off
together, seen from outside with `podman inspect`.

Minutes long (the role installs python3-psutil with apt in each container), so it runs with the
Molecule scenarios (`pytest -m molecule`). Needs podman and the test image
(scripts/build-test-image).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IMAGE = f"localhost/gpu-jupyter-test:{os.environ.get('MOLECULE_DISTRO', 'debian12')}"
IDLE_S = 30          # idle_autostop_idle_minutes: 0.5
INTERVAL_S = 5       # idle_autostop_check_interval_seconds
WORK_S = 20          # how long the torchrun stand-in runs

pytestmark = pytest.mark.molecule


def _podman(*args, check=True, timeout=120):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture()
def nodes():
    if not shutil.which("podman"):
        pytest.skip("podman is not installed")
    if _podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.skip(f"test image {IMAGE} is missing (scripts/build-test-image)")
    names = [f"idle-autostop-cluster-{os.getpid()}-{n}" for n in ("a", "b")]
    try:
        for name in names:
            _podman("run", "-d", "--name", name, "--ulimit", "nofile=20000:20000",
                    "--ulimit", "nproc=32768:32768", "--systemd=always", IMAGE, "/lib/systemd/systemd")
        ips = [_podman("inspect", "-f", "{{.NetworkSettings.IPAddress}}", n).stdout.strip() for n in names]
        assert all(ips), ips
        for name in names:
            # Held from the start, or a 30 s window would power a node off during the converge.
            _podman("exec", name, "sh", "-c", "mkdir -p /var/lib/idle-autostop/hold.d && chmod 1777 "
                    "/var/lib/idle-autostop/hold.d && : > /var/lib/idle-autostop/hold.d/test")
        yield list(zip(names, ips, strict=True))
    finally:
        for name in names:
            _podman("rm", "-f", "-t", "0", name, check=False)


def _converge(tmp_path: Path, nodes) -> str:
    (a, ip_a), (b, ip_b) = nodes
    inventory = {"all": {"hosts": {a: {"node_ip": ip_a, "peer_ip": ip_b}, b: {"node_ip": ip_b, "peer_ip": ip_a}},
                         "vars": {"ansible_connection": "containers.podman.podman"}}}
    play = [{"name": "Two nodes of a cluster", "hosts": "all", "gather_facts": False,
             "vars": {"idle_autostop_idle_minutes": IDLE_S / 60, "idle_autostop_warn_minutes": 0.05,
                      "idle_autostop_check_interval_seconds": INTERVAL_S,
                      # /proc/stat in a container is the host's: other jobs would look like work.
                      "idle_autostop_signals": ["hold", "torchrun", "cluster"],
                      "idle_autostop_maintenance_url": "",
                      "idle_autostop_cluster_peers": ["{{ peer_ip }}"],
                      "idle_autostop_cluster_listen_address": "{{ node_ip }}"},
             "roles": [{"role": "idle_autostop"}]}]
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
                           str(tmp_path / "play.yml")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def _ask(node: str, peer_ip: str) -> dict:
    code = (f"import socket; s = socket.create_connection(('{peer_ip}', 917), 10); "
            "print(s.makefile().readline(), end='')")
    return json.loads(_podman("exec", node, "python3", "-c", code).stdout)


def _running(node: str) -> bool:
    """Up and not shutting down. The agent's poweroff is the moment that counts: how long
    systemd then takes to stop every unit (up to a stop timeout on a loaded machine) is not."""
    if _podman("inspect", "-f", "{{.State.Running}}", node).stdout.strip() != "true":
        return False
    # is-system-running exits non-zero for any state but "running": its output is what counts;
    # no output means the exec itself was refused, the container going down.
    state = _podman("exec", node, "systemctl", "is-system-running", check=False).stdout.strip()
    return state not in ("", "stopping", "offline")


def test_the_cluster_powers_off_as_one(tmp_path, nodes):
    (a, ip_a), (b, ip_b) = nodes
    _converge(tmp_path, nodes)
    second = _converge(tmp_path, nodes)
    for name in (a, b):
        assert f"{name}" in second and "changed=0" in second.split(name)[-1].splitlines()[0], second[-2000:]

    # Each node answers on its internal address only, with its own signals and their age.
    answer = _ask(a, ip_b)
    assert 0 <= answer.pop("age_seconds") <= 2 * INTERVAL_S, answer
    assert answer == {"idle_autostop": 1, "state": "busy", "signals": ["hold"]}
    listening = _podman("exec", b, "ss", "-Hltn", "sport = :917").stdout.split()
    assert f"{ip_b}:917" in listening, listening
    # Notebook code (an unprivileged account) cannot take the port while the socket is down.
    squat = _podman("exec", b, "sh", "-c", "systemctl stop idle-autostop-peer.socket; "
                    f"setpriv --reuid=nobody --regid=nogroup --clear-groups python3 -c "
                    f"\"import socket; socket.socket().bind(('{ip_b}', 917))\"; "
                    "echo rc=$?; systemctl start idle-autostop-peer.socket", check=False).stdout
    assert "rc=1" in squat, squat

    journals = _follow_checks(a, b)
    try:
        _work_then_idle(a, b, ip_b, journals)
    finally:
        for proc in journals.values():
            if proc.returncode is None:
                proc.kill()
                proc.communicate(timeout=30)


def _follow_checks(*names: str) -> dict[str, subprocess.Popen]:
    """Each node's check lines as they are logged, stamped in seconds since the epoch (the
    containers share this machine's clock): what a failed timing shows."""
    return {name: subprocess.Popen(["podman", "exec", name, "journalctl", "--follow", "--lines=0",
                                    "--output=short-unix", "--identifier=idle-autostop"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for name in names}


def _checks_seen(journals: dict[str, subprocess.Popen], epoch0: float) -> str:
    seen = []
    for name, proc in journals.items():
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        seen.append(f"{name}:")
        seen += [f"  {float(line.split()[0]) - epoch0:6.1f} s {line.split(': ', 1)[-1]}"
                 for line in out.splitlines() if line[:1].isdigit()]
    return "\n".join(seen)


def _work_then_idle(a: str, b: str, ip_b: str, journals: dict[str, subprocess.Popen]) -> None:
    # Work on b only: a torchrun launcher (a real process named torchrun) for WORK_S seconds.
    _podman("exec", "-d", b, "bash", "-c", f"exec -a torchrun sleep {WORK_S}")
    _podman("exec", a, "idle-autostop", "release", "--all")
    _podman("exec", b, "idle-autostop", "release", "--all")
    started = time.monotonic()
    epoch0 = time.time()
    time.sleep(2 * INTERVAL_S)
    status_a = _podman("exec", a, "idle-autostop", "status").stdout
    assert status_a.startswith(f"busy: peer busy: {ip_b} (torchrun)"), status_a

    stopped: dict[str, float] = {}
    while len(stopped) < 2 and time.monotonic() - started < WORK_S + IDLE_S + 120:
        for name in (a, b):
            if name not in stopped and not _running(name):
                stopped[name] = time.monotonic() - started
        time.sleep(1)
    seen = _checks_seen(journals, epoch0)
    assert len(stopped) == 2, f"still running after {time.monotonic() - started:.0f} s: {stopped}\n{seen}"
    # Nobody stops before the work ended and the whole cluster was idle for the window (less a
    # check: a node sees the work end at its next check), and both stop within about a check.
    assert min(stopped.values()) >= WORK_S + IDLE_S - 2 * INTERVAL_S, f"{stopped}\n{seen}"
    assert abs(stopped[a] - stopped[b]) <= 2 * INTERVAL_S + 3, f"{stopped}\n{seen}"
