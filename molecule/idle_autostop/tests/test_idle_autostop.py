"""Verify idle auto-stop in a systemd container that stands in for the VM.

The tests run in file order and tell one story: held up while converging, a running cell keeps
it up past the idle window, then a user hold does, a maintenance notice runs the hook once,
disabling stops everything, and re-enabling lets the idle container power itself off, observed
from outside with `podman inspect`. That last test ends the instance, so it comes last.
"""

import json
import os
import re
import subprocess
import sys
import time


CONTAINER = "idle_autostop-debian12"
IDLE_S = 15          # idle_autostop_idle_minutes: 0.25
INTERVAL_S = 5       # idle_autostop_check_interval_seconds
# Long enough that, without the thing keeping it up, the container would have powered off.
PAST_THRESHOLD_S = IDLE_S + 3 * INTERVAL_S
JUPYTER = "http://127.0.0.1:8080"
TOKEN_FILE = "/etc/jupyter/service/token"
JUPYTER_PY = "/opt/jupyter/venv/bin/python"
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(SCENARIO))
METADATA_FILE = "/srv/metadata/computeMetadata/v1/instance/maintenance-event"


def podman_state():
    out = subprocess.run(["podman", "inspect", "-f", "{{.State.Status}}", CONTAINER],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def journal_since(host, since):
    return host.check_output(f"journalctl -u idle-autostop.service -o cat --since @{int(since)}")


def status(host):
    return host.check_output("idle-autostop status")


def summary(host):
    """The whole reasoning of a live check (status prints only the busy reasons when held)."""
    return json.loads(host.check_output("idle-autostop status --json"))["summary"]


def converge(**extra):
    """Rerun the scenario's converge playbook against the container with overrides."""
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, ANSIBLE_ROLES_PATH=os.path.join(REPO, "roles"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    cmd = [os.path.join(bindir, "ansible-playbook"), "-i", f"{CONTAINER},",
           "-c", "containers.podman.podman", os.path.join(SCENARIO, "converge.yml")]
    for key, value in extra.items():
        cmd += ["-e", f"{key}={value}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.stdout


def recap_changed(out):
    """The changed count of the play recap (one host)."""
    counts = re.findall(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)\s", out, re.M)
    assert len(counts) == 1, out[-2000:]
    return int(counts[0])


def changed_tasks(out):
    """Names of the tasks and handlers that reported `changed`, in order."""
    names = []
    for block in re.split(r"^(?:TASK|RUNNING HANDLER) \[", out, flags=re.M)[1:]:
        name, _, body = block.partition("]")
        if re.search(r"^changed: ", body, re.M):
            names.append(name)
    return names


def test_agent_timer_and_config_installed(host):
    agent = host.file("/usr/local/bin/idle-autostop")
    assert agent.mode == 0o755 and agent.user == "root"
    timer = host.service("idle-autostop.timer")
    assert timer.is_enabled and timer.is_running
    unit = host.file("/etc/systemd/system/idle-autostop.timer").content_string
    assert "OnUnitActiveSec=5s" in unit and "AccuracySec=1s" in unit
    assert host.file("/var/lib/idle-autostop/hold.d").mode == 0o1777
    conf = host.file("/etc/idle-autostop/idle-autostop.conf").content_string
    assert "idle_minutes = 0.25" in conf and "jupyter_token_file = /etc/jupyter/service/token" in conf
    assert "configuration OK: enabled" in host.check_output("idle-autostop validate")
    # The timer is really firing and deciding.
    time.sleep(2 * INTERVAL_S)
    # prepare.yml wrote the hold file as root: a hold is its owner's, whatever its name.
    assert "busy: hold by root until released" in journal_since(host, time.time() - 60)
    conf = host.file("/etc/idle-autostop/idle-autostop.conf").content_string
    assert "jupyter_service_user = jupyter" in conf
    assert "jupyter_service_unit = jupyter.service" in conf


def test_token_never_goes_to_another_listener(host):
    """Jupyter down, another account on its port: no request reaches it, jupyter is unknown."""
    assert "jupyter unknown" not in summary(host)  # verified while it runs
    host.run_expect([0], "systemctl stop jupyter.service")
    try:
        host.run_expect([0], "systemd-run --unit=fake-jupyter --uid=nobody "
                             "/usr/bin/python3 -m http.server 8080 --bind 127.0.0.1 --directory /")
        time.sleep(2)
        host.run_expect([0], "systemctl start idle-autostop.service")
        out = summary(host)
        assert "jupyter unknown (port owner not verified: 127.0.0.1:8080 is held by uid" in out
        assert "GET" not in host.check_output("journalctl -u fake-jupyter -o cat")
        # Same account as Jupyter, but outside its unit (a notebook's own server): unknown too.
        host.run_expect([0], "systemctl stop fake-jupyter")
        host.run_expect([0], "systemd-run --unit=fake-jupyter2 --uid=jupyter "
                             "/usr/bin/python3 -m http.server 8080 --bind 127.0.0.1 --directory /")
        time.sleep(2)
        assert "fake-jupyter2.service, not jupyter.service" in summary(host)
        assert "GET" not in host.check_output("journalctl -u fake-jupyter2 -o cat")
    finally:
        host.run("systemctl stop fake-jupyter fake-jupyter2")
        host.run_expect([0], "systemctl start jupyter.service")
    deadline = time.time() + 60
    while time.time() < deadline and "no kernels" not in summary(host):
        time.sleep(2)
    assert "no kernels" in summary(host)


def test_hold_files_are_owned_not_named(host):
    """A file named after another user is the writer's hold; a planted link is not followed."""
    hold_dir = "/var/lib/idle-autostop/hold.d"
    # The link points at a root-owned empty file: followed, it would read as root's hold.
    host.run_expect([0], "install -m 0644 /dev/null /var/tmp/hold-target")
    host.run_expect([0], "idle-autostop release --all && "
                         f"runuser -u nobody -- sh -c ': > {hold_dir}/jupyter'")
    host.run_expect([0], f"runuser -u nobody -- ln -s /var/tmp/hold-target {hold_dir}/root")
    out = summary(host)
    host.run_expect([0], "idle-autostop hold forever")  # the scenario's hold by root again
    assert "hold by nobody until released" in out
    assert "jupyter until released" not in out and "root until released" not in out
    host.run_expect([0], "runuser -u jupyter -- idle-autostop hold 1m")
    assert host.file(f"{hold_dir}/jupyter").user == "nobody"  # not replaced
    assert "jupyter for" in summary(host)
    host.run_expect([0], "runuser -u jupyter -- idle-autostop release")
    host.run_expect([0], "runuser -u nobody -- idle-autostop release")
    assert host.file(f"{hold_dir}/root").is_symlink  # release never touches a link
    host.run_expect([0], "idle-autostop release --all && idle-autostop hold forever")
    assert host.file("/var/tmp/hold-target").exists and host.file(f"{hold_dir}/root").is_symlink
    host.run_expect([0], f"rm -f {hold_dir}/root")


def test_running_cell_keeps_the_vm_up(host):
    subprocess.run(["podman", "cp", os.path.join(SCENARIO, "files", "run_cell.py"),
                    f"{CONTAINER}:/tmp/run_cell.py"], check=True)
    kernel = host.check_output(
        f"{JUPYTER_PY} /tmp/run_cell.py {JUPYTER} {TOKEN_FILE} start 'import time; time.sleep(600)'")
    host.run_expect([0], f"echo {kernel} > /tmp/kernel-id")
    host.run_expect([0], "idle-autostop release --all")  # only the running cell is left
    started = time.time()
    time.sleep(PAST_THRESHOLD_S)
    assert podman_state() == "running"
    assert status(host).startswith("busy: kernel busy (1 of 1)")
    log = journal_since(host, started)
    assert "busy: kernel busy (1 of 1)" in log
    assert "idle threshold reached" not in log


def test_user_hold_keeps_the_vm_up(host):
    # As the notebook's own account (no sudo), the way `!idle-autostop hold 3h` runs in a cell.
    out = host.check_output("runuser -u jupyter -- idle-autostop hold 10m")
    assert out.startswith("held by jupyter until")
    kernel = host.check_output("cat /tmp/kernel-id")
    host.run_expect([0], f"{JUPYTER_PY} /tmp/run_cell.py {JUPYTER} {TOKEN_FILE} shutdown {kernel}")
    started = time.time()
    time.sleep(PAST_THRESHOLD_S)
    assert podman_state() == "running"
    assert status(host).startswith("busy: hold by jupyter for 9 min more") or \
        status(host).startswith("busy: hold by jupyter for 10 min more")
    log = journal_since(host, started)
    assert "no kernels" in log and "idle threshold reached" not in log


def test_maintenance_notice_runs_the_hook_once(host):
    host.run_expect([0], f"printf TERMINATE_ON_HOST_MAINTENANCE > {METADATA_FILE}")
    started = time.time()
    time.sleep(3 * INTERVAL_S)
    hook_log = host.file("/var/tmp/maintenance-hook.log")
    assert hook_log.exists
    assert hook_log.content_string.splitlines() == ["TERMINATE_ON_HOST_MAINTENANCE"]
    log = journal_since(host, started)
    assert "GCE host maintenance notice: TERMINATE_ON_HOST_MAINTENANCE (was NONE)" in log
    assert "GCE maintenance event pending" in status(host)
    host.run_expect([0], f"printf NONE > {METADATA_FILE}")
    time.sleep(2 * INTERVAL_S)
    assert "maintenance event over" in journal_since(host, started)


def test_disabled_stops_the_timer_and_never_powers_off(host):
    converge(idle_autostop_enabled="false")
    timer = host.service("idle-autostop.timer")
    assert not timer.is_enabled and not timer.is_running
    assert host.file("/usr/local/bin/idle-autostop").exists  # files stay
    assert status(host).startswith("disabled:")
    host.run_expect([0], "runuser -u jupyter -- idle-autostop release")
    # Idle, no hold, and a check run by hand: a disabled agent does nothing.
    started = time.time()
    host.run_expect([0], "systemctl start idle-autostop.service")
    time.sleep(IDLE_S + INTERVAL_S)
    host.run_expect([0], "systemctl start idle-autostop.service")
    assert podman_state() == "running"
    assert "idle threshold reached" not in journal_since(host, started)


def test_idle_vm_powers_itself_off(host):
    """Last: re-enable; with nothing going on the container stops within the window + checks."""
    out = converge()
    # Re-enabling changes exactly two things (every recap has a "changed=" field: the count and
    # the tasks are what tell).
    assert recap_changed(out) == 2, out[-3000:]
    assert changed_tasks(out) == ["idle_autostop : Install | Write the agent configuration",
                                  "idle_autostop : Service | Start and enable the timer"], out[-3000:]
    enabled_at = time.time()
    # An SSH-less, kernel-less, hold-less machine: idle from the first check.
    # Two facts, two clocks: the agent decides within the window plus a few checks; systemd's
    # shutdown then takes as long as it takes on a loaded machine (its stop timeout is 90 s).
    decide_by = enabled_at + IDLE_S + 6 * INTERVAL_S + 30
    last_log = ""
    decided_at = None
    while time.time() < decide_by and podman_state() == "running":
        res = host.run("journalctl -u idle-autostop.service -o cat --since @%d" % int(enabled_at))
        if res.rc == 0 and res.stdout:
            last_log = res.stdout
        if "idle threshold reached: poweroff" in last_log:
            decided_at = time.time()
            break
        time.sleep(1)
    state = podman_state()
    assert decided_at is not None or state != "running", \
        f"no power-off decision {time.time() - enabled_at:.0f} s after re-enabling:\n{last_log}"
    shutdown_by = time.time() + 120
    while time.time() < shutdown_by and state == "running":
        time.sleep(1)
        state = podman_state()
    stopped_after = time.time() - enabled_at
    assert state in ("exited", "stopped"), f"still {state} after {stopped_after:.0f} s:\n{last_log}"
    print(f"powered off {stopped_after:.0f} s after re-enabling (window {IDLE_S} s)")
    assert "warning users: powering off in" in last_log
    assert stopped_after >= IDLE_S
