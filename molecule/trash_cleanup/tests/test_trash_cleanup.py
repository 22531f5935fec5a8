"""Verify trash cleanup in a systemd container that stands in for the VM.

prepare.yml planted a hostile trash (links to /etc, /root and other users' files, a Trash entry
that is a link to a directory outside, names with spaces and newlines, a 200-level tree with a link
to /etc at the bottom, a hard link, an entry without its info file, expunged/), a stand-in of the
old root-run cleaner, and saved a snapshot of everything outside the trash. converge ran the role
with trash_cleanup_run_now (7 days, plus /srv/scratch/Trash, bob's).

The tests run in file order: what converge left, then a dry run through playbooks/trash.yml, the
timer's service (bytes reported == drop in du, run as the user), the on-demand playbook for real,
the owner racing its own cleanup, trash the owner cannot empty (a root-owned entry, a Trash behind
a link: the run fails and says so), and the Jupyter drop-in switched on and off.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

# The platform name of .config/molecule/config.yml.
CONTAINER = "trash_cleanup-" + os.environ.get("MOLECULE_DISTRO", "debian12")
FIXTURE = "/usr/local/bin/trash-fixture"
MANIFEST = "/var/lib/trash-fixture/outside.json"
RACE_TURNS = "/var/lib/trash-fixture/race-turns"
ALICE = "/home/alice/.local/share/Trash"
BOB = "/home/bob/.local/share/Trash"
SCRATCH = "/srv/scratch/Trash"
DROP_IN = "/etc/jupyter/service/conf.d/50-trash-cleanup.py"
USERS = {"alice": 1001, "bob": 1002, "carol": 1003, "dave": 1004}
# Everything a cleaner could free: every home and the extra Trash directory.
DU_ROOTS = "/home /srv/scratch"
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(SCENARIO))
RECENT = ["recent dir", "recent.ipynb"]

def listdir(host, path):
    """Names in a directory as a list, whatever characters they hold (newlines included)."""
    out = host.check_output(
        f"python3 -c 'import json, os, sys; print(json.dumps(sorted(os.listdir(sys.argv[1]))))' {path}")
    return json.loads(out)


def disk_usage(host):
    """Bytes in use under the trash-holding trees, as du counts them (hard links once)."""
    out = host.check_output(f"du -sxcB1 {DU_ROOTS}")
    return int(out.splitlines()[-1].split()[0])


def ansible_playbook(playbook, *extra, tmp_path, expect_rc=0):
    """Run a playbook of this repository against the container, as a user would."""
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"[jupyter_vms]\n{CONTAINER} ansible_connection=containers.podman.podman\n")
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, ANSIBLE_ROLES_PATH=os.path.join(REPO, "roles"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    cmd = [os.path.join(bindir, "ansible-playbook"), "-i", str(inventory), playbook, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert proc.returncode == expect_rc, proc.stdout[-4000:] + proc.stderr[-2000:]
    # The yaml callback folds long lines: one space for every run of blanks.
    return " ".join(proc.stdout.split())


def recap(output, failed=0):
    match = re.search(
        rf"{re.escape(CONTAINER)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=0\s+failed={failed}", output)
    assert match, output[-2000:]
    return int(match.group(2))


FREED = re.compile(r"freed (\d+) bytes \(([\d.]+) MiB\) in (\d+) items from (\d+) trash directories of (\w+) "
                   r"\((entries deleted more than \d+ days ago|every entry)\)(; some could not be removed, see above)?")


def freed_lines(text):
    """{user: (bytes, items, trash directories, failed)} from the script's summary lines, the
    first line of each user."""
    found = {}
    for match in FREED.finditer(text):
        freed, mib, user = int(match.group(1)), float(match.group(2)), match.group(5)
        items, dirs = int(match.group(3)), int(match.group(4))
        assert mib == pytest.approx(freed / 1048576, abs=0.051)
        found.setdefault(user, (freed, items, dirs, bool(match.group(7))))
    return found


def journal(host, unit, since):
    return host.check_output(f"journalctl -u {unit} --since @{since} -o cat --no-pager")


def start(host, user):
    """What the user's timer starts; a oneshot, so this returns when the run is over."""
    return host.run(f"systemctl start trash-cleanup@{user}.service")


def outside_snapshot(host):
    return json.loads(host.check_output(f"{FIXTURE} snapshot"))


def assert_outside_untouched(host):
    saved = json.loads(host.file(MANIFEST).content_string)
    now = outside_snapshot(host)
    changed = {p: (saved.get(p), now.get(p)) for p in set(saved) | set(now) if saved.get(p) != now.get(p)}
    assert not changed, changed
    # The link targets themselves, spelled out.
    for path in ("/etc/passwd", "/etc/shadow", "/etc/trash-canary/canary.conf", "/root/secret.txt",
                 "/srv/outside/keep-me.txt", "/srv/outside/nested/also-keep.txt",
                 "/home/bob/private/notes.txt", "/home/alice/keep/hardlinked.dat"):
        assert host.file(path).is_file, path


# --------------------------------------------------------------------------------------------
# What converge installed and cleaned
# --------------------------------------------------------------------------------------------


def test_trash_cli_script_and_templated_units_installed(host):
    assert host.package("trash-cli").is_installed
    script = host.file("/usr/local/bin/trash-cleanup")
    assert script.mode == 0o755 and script.user == "root"
    unit = host.file("/etc/systemd/system/trash-cleanup@.service").content_string
    assert "\nUser=%i\n" in unit and "Type=oneshot" in unit and "CapabilityBoundingSet=\n" in unit
    assert '\nExecStart=/usr/local/bin/trash-cleanup 7 "/srv/scratch/Trash"\n' in unit


def test_old_root_cleaner_is_gone(host):
    for path in ("/etc/systemd/system/trash-cleanup.service", "/etc/systemd/system/trash-cleanup.timer",
                 "/usr/local/sbin/trash-cleanup", "/etc/trash-cleanup"):
        assert not host.file(path).exists, path
    assert host.check_output("systemctl show -p LoadState --value trash-cleanup.timer") == "not-found"
    assert not host.file("/etc/systemd/system/timers.target.wants/trash-cleanup.timer").exists


def test_every_user_has_an_active_timer_running_their_service_as_them(host):
    for user in USERS:
        timer = host.service(f"trash-cleanup@{user}.timer")
        assert timer.is_running and timer.is_enabled, user
        props = host.check_output(f"systemctl show trash-cleanup@{user}.timer -p TimersCalendar -p Persistent "
                                  "-p RandomizedDelayUSec -p NextElapseUSecRealtime")
        assert "OnCalendar=*-*-* 00:00:00" in props
        assert "Persistent=yes" in props and "RandomizedDelayUSec=1h" in props
        assert re.search(r"NextElapseUSecRealtime=\S", props), props
        assert host.check_output(f"systemctl show -p User --value trash-cleanup@{user}.service") == user
    # nobody and root get none.
    units = "systemctl list-units --all --plain --no-legend 'trash-cleanup@*.timer' | awk '{print $1}' | sort"
    assert host.check_output(units) \
        == "\n".join(f"trash-cleanup@{user}.timer" for user in sorted(USERS))


def test_converge_removed_old_entries_and_kept_recent_ones(host):
    assert listdir(host, f"{ALICE}/files") == RECENT
    assert listdir(host, f"{ALICE}/info") == [n + ".trashinfo" for n in RECENT]
    # trash-cli leaves expunged/ alone: the script empties it.
    assert listdir(host, f"{ALICE}/expunged") == []
    assert listdir(host, f"{BOB}/files") == RECENT
    assert listdir(host, f"{SCRATCH}/files") == [] and listdir(host, f"{SCRATCH}/info") == []
    # The trash directories stay, owned by their users.
    assert host.file(f"{ALICE}/files").user == "alice" and host.file(f"{BOB}/info").user == "bob"
    assert host.file(f"{SCRATCH}/files").user == "bob"


def test_nothing_outside_the_trash_changed(host):
    assert_outside_untouched(host)
    # The hard-linked file lost its trash link, not its data.
    assert host.file("/home/alice/keep/hardlinked.dat").size == 600_000
    assert host.check_output("stat -c %h /home/alice/keep/hardlinked.dat") == "1"


def test_converge_logged_what_each_user_freed(host):
    lines = freed_lines(host.check_output("journalctl -t trash-cleanup -o cat --no-pager"))
    assert set(lines) == set(USERS), lines
    assert lines["alice"][0] > 3_000_000 and lines["bob"][0] > 3_000_000
    # bob's run emptied his home trash and /srv/scratch/Trash.
    assert lines["bob"][2] == 2 and lines["alice"][2] == 1 and lines["carol"][:3] == (0, 0, 0)
    assert not any(line[3] for line in lines.values())


def test_jupyter_drop_in_written_and_jupyter_restarted(host):
    drop_in = host.file(DROP_IN)
    assert drop_in.mode == 0o644 and drop_in.user == "root"
    assert "\nc.FileContentsManager.delete_to_trash = False\n" in drop_in.content_string
    # The drop-in is Python the traitlets loader runs with get_config() in scope.
    value = host.check_output(
        "python3 -c 'import sys, types; c = types.SimpleNamespace(FileContentsManager=types.SimpleNamespace()); "
        "exec(open(sys.argv[1]).read(), {\"get_config\": lambda: c}); "
        "print(c.FileContentsManager.delete_to_trash)' " + DROP_IN)
    assert value == "False"
    before = host.file("/var/lib/trash-fixture/jupyter-invocation").content_string.strip()
    now = host.check_output("systemctl show --property=InvocationID --value jupyter.service")
    assert host.service("jupyter.service").is_running and now and now != before


# --------------------------------------------------------------------------------------------
# More trash, cleaned three ways
# --------------------------------------------------------------------------------------------


def test_check_mode_playbook_reports_and_removes_nothing(host, tmp_path):
    host.check_output(f"{FIXTURE} reseed -2")
    files_before = listdir(host, f"{ALICE}/files")
    du_before = disk_usage(host)
    out = ansible_playbook("playbooks/trash.yml", "--check", tmp_path=tmp_path)
    assert re.search(rf"would empty entries deleted more than 30 days ago from 1 trash directories of alice; "
                     rf"they hold \d+ bytes \([\d.]+ MiB\) in \d+ items now on {re.escape(CONTAINER)}",
                     out), out[-3000:]
    assert recap(out) == 0
    assert disk_usage(host) == du_before
    assert listdir(host, f"{ALICE}/files") == files_before


def test_timer_service_runs_as_the_user_and_frees_exactly_what_it_reports(host):
    du_before = disk_usage(host)
    since = int(time.time()) - 1
    for user in ("alice", "bob"):
        assert start(host, user).rc == 0, journal(host, f"trash-cleanup@{user}.service", since)
        assert host.check_output(f"systemctl show -p Result --value trash-cleanup@{user}.service") == "success"
    lines = {}
    for user in ("alice", "bob"):
        lines.update(freed_lines(journal(host, f"trash-cleanup@{user}.service", since)))
        # The journal's own record of who wrote the line: the user, not root.
        uids = host.check_output(f"journalctl -u trash-cleanup@{user}.service --since @{since} -o json --no-pager "
                                 "| python3 -c 'import json, sys; print(sorted({json.loads(l).get(\"_UID\") "
                                 "for l in sys.stdin if \"freed \" in str(json.loads(l).get(\"MESSAGE\"))}))'")
        assert uids == f"['{USERS[user]}']", (user, uids)
    freed = du_before - disk_usage(host)
    assert lines["alice"][0] + lines["bob"][0] == freed > 4_000_000
    # Entries deleted an hour ago stay.
    assert listdir(host, f"{ALICE}/files") == sorted(RECENT + [n + "-2" for n in RECENT])
    assert_outside_untouched(host)


def test_playbook_cleans_on_demand_and_reports_per_user(host, tmp_path):
    host.check_output(f"{FIXTURE} reseed -3")
    du_before = disk_usage(host)
    # A one-off override: 0 days empties everything, recent entries included.
    out = ansible_playbook("playbooks/trash.yml", "-e", "trash_cleanup_older_than_days=0", tmp_path=tmp_path)
    lines = freed_lines(out)
    assert recap(out) == 1
    assert lines["alice"][0] + lines["bob"][0] == du_before - disk_usage(host) > 4_000_000
    assert f"(every entry) on {CONTAINER}" in out
    assert listdir(host, f"{ALICE}/files") == [] and listdir(host, f"{BOB}/files") == []
    # The installed units did not change: the one-off was only for this run.
    unit = host.file("/etc/systemd/system/trash-cleanup@.service").content_string
    assert "\nExecStart=/usr/local/bin/trash-cleanup 7 " in unit
    assert "every entry" in host.check_output("journalctl -t trash-cleanup -o cat --no-pager")
    assert_outside_untouched(host)


# --------------------------------------------------------------------------------------------
# The owner attacks its own cleanup
# --------------------------------------------------------------------------------------------


def test_owner_racing_the_cleanup_reaches_nothing_outside(host):
    # alice swaps an old entry, and a directory inside it, for links to /etc, /root and bob's files
    # while her cleanup runs again and again.
    host.check_output(f"systemd-run --quiet --collect --unit=trash-race {FIXTURE} race 10")
    runs = 0
    # Every run starts while the racer is at it (a run can take the whole race on a busy machine).
    while host.run("systemctl is-active --quiet trash-race.service").rc == 0:
        start(host, "alice")
        runs += 1
    turns = int(host.file(RACE_TURNS).content_string)
    assert runs >= 1 and turns >= 20, (runs, turns)
    assert_outside_untouched(host)
    host.check_output(f"rm -rf '{ALICE}/files/race entry' '{ALICE}/race spare' '{ALICE}/info/race entry.trashinfo'")


def test_what_the_owner_cannot_remove_fails_the_run_and_stays(host, tmp_path):
    host.check_output(f"{FIXTURE} refused")
    since = int(time.time()) - 1
    expected = {
        "alice": "cannot remove /home/alice/.local/share/Trash/files/root-locked",
        "carol": "refusing /home/carol/.local/share/Trash: /home/carol/.local/share is a symbolic link",
        "dave": "refusing /home/dave/.local/share/Trash: /home/dave/.local/share/Trash/files is a symbolic link",
    }
    try:
        for user, message in expected.items():
            assert start(host, user).rc != 0, user
            assert host.check_output(f"systemctl show -p Result --value trash-cleanup@{user}.service") == "exit-code"
            assert message in journal(host, f"trash-cleanup@{user}.service", since), user
        # The play fails too, naming what could not be done.
        out = ansible_playbook("playbooks/trash.yml", tmp_path=tmp_path, expect_rc=2)
        recap(out, failed=1)
        for message in expected.values():
            assert message in out, message
        # Root would have removed it; alice cannot.
        assert host.file(f"{ALICE}/files/root-locked/blob.bin").exists
        assert listdir(host, "/srv/decoy-share/Trash/files") == ["victim.txt"]
        assert host.file("/etc/passwd").is_file
        assert_outside_untouched(host)
    finally:
        host.check_output(f"{FIXTURE} unrefuse")
    for user in expected:
        assert start(host, user).rc == 0, user


# --------------------------------------------------------------------------------------------
# The Jupyter setting switched, with no Jupyter unit to restart
# --------------------------------------------------------------------------------------------


def test_drop_in_follows_the_setting_without_a_jupyter_unit(host, tmp_path):
    invocation = host.check_output("systemctl show --property=InvocationID --value jupyter.service")
    converge = os.path.join(SCENARIO, "converge.yml")
    # Only the Jupyter part of the role (its tag), to keep the scenario short.
    extra = ["--tags", "trash_cleanup_jupyter", "-e", "trash_cleanup_jupyter_service=no-such-jupyter.service"]
    out = ansible_playbook(converge, "-e", "trash_cleanup_jupyter_delete_to_trash=true", *extra, tmp_path=tmp_path)
    assert recap(out) == 1
    assert "\nc.FileContentsManager.delete_to_trash = True\n" in host.file(DROP_IN).content_string
    out = ansible_playbook(converge, "-e", '{"trash_cleanup_jupyter_delete_to_trash": null}', *extra, tmp_path=tmp_path)
    assert recap(out) == 1
    assert not host.file(DROP_IN).exists
    # The restart handler looked for no-such-jupyter.service, found none, and restarted nothing.
    assert host.check_output("systemctl show --property=InvocationID --value jupyter.service") == invocation
