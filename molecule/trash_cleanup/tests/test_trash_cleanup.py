"""Verify trash cleanup in a systemd container that stands in for the VM.

prepare.yml planted a hostile trash (links to /etc, /root and other users' files, a Trash entry
that is a link to a directory outside, names with spaces and newlines, a 200-level tree, root-owned
mode 000 trees, a hard link, symlinked Trash paths) and saved a snapshot of everything outside the
trash. converge ran the role with trash_cleanup_run_now (7 days, plus /srv/scratch/Trash).

The tests run in file order: what converge left, then a dry run through playbooks/trash.yml, the
timer's service (bytes reported == drop in du), the on-demand playbook for real, and the Jupyter
drop-in switched on and off.
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
ALICE = "/home/alice/.local/share/Trash"
BOB = "/home/bob/.local/share/Trash"
SCRATCH = "/srv/scratch/Trash"
DROP_IN = "/etc/jupyter/service/conf.d/50-trash-cleanup.py"
REPORT = "/var/lib/trash-cleanup/last-run.json"
# Everything a cleaner could free: every home and the extra Trash directory.
DU_ROOTS = "/home /srv/scratch"
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(SCENARIO))
RECENT = ["recent dir", "recent.ipynb"]

# Figures handed from one test to the next (the tests tell one story, in file order).
STATE = {}


def listdir(host, path):
    """Names in a directory as a list, whatever characters they hold (newlines included)."""
    out = host.check_output(f"python3 -c 'import json, os, sys; print(json.dumps(sorted(os.listdir(sys.argv[1]))))' {path}")
    return json.loads(out)


def disk_usage(host):
    """Bytes in use under the trash-holding trees, as du counts them (hard links once)."""
    out = host.check_output(f"du -sxcB1 {DU_ROOTS}")
    return int(out.splitlines()[-1].split()[0])


def ansible_playbook(playbook, *extra, tmp_path):
    """Run a playbook of this repository against the container, as a user would."""
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"[jupyter_vms]\n{CONTAINER} ansible_connection=containers.podman.podman\n")
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, ANSIBLE_ROLES_PATH=os.path.join(REPO, "roles"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    cmd = [os.path.join(bindir, "ansible-playbook"), "-i", str(inventory), playbook, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def recap(output):
    match = re.search(rf"{re.escape(CONTAINER)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=0\s+failed=0", output)
    assert match, output[-2000:]
    return int(match.group(2))


def play_figure(output, verb):
    """(bytes, entries) from the play's "freed X MiB (N bytes) in M entries on HOST" line."""
    match = re.search(rf"{verb}\s+([\d.]+)\s+MiB\s+\((\d+)\s+bytes\)\s+in\s+(\d+)\s+entries\s+on\s+{re.escape(CONTAINER)}", output)
    assert match, output[-3000:]
    freed, entries = int(match.group(2)), int(match.group(3))
    assert float(match.group(1)) == pytest.approx(freed / 1048576, abs=0.051)
    return freed, entries


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


def test_cleaner_config_and_units_installed(host):
    script = host.file("/usr/local/sbin/trash-cleanup")
    assert script.mode == 0o755 and script.user == "root"
    config = json.loads(host.file("/etc/trash-cleanup/config.json").content_string)
    assert (config["older_than_days"], config["users"], config["all_users"], config["paths"], config["min_uid"]) == \
        (7, [], True, [SCRATCH], 1000)
    unit = host.file("/etc/systemd/system/trash-cleanup.service").content_string
    assert "Type=oneshot" in unit and "ProtectSystem=full" in unit
    assert "--config /etc/trash-cleanup/config.json --report-file /var/lib/trash-cleanup/last-run.json" in unit


def test_timer_is_active_and_enabled(host):
    timer = host.service("trash-cleanup.timer")
    assert timer.is_running and timer.is_enabled
    props = host.check_output("systemctl show trash-cleanup.timer -p TimersCalendar -p Persistent -p RandomizedDelayUSec -p NextElapseUSecRealtime")
    assert "OnCalendar=*-*-* 00:00:00" in props
    assert "Persistent=yes" in props and "RandomizedDelayUSec=1h" in props
    assert re.search(r"NextElapseUSecRealtime=\S", props), props


def test_converge_removed_old_entries_and_kept_recent_ones(host):
    assert listdir(host, f"{ALICE}/files") == RECENT
    assert listdir(host, f"{ALICE}/info") == [n + ".trashinfo" for n in RECENT]
    assert listdir(host, f"{ALICE}/expunged") == []
    # The cache keeps only the lines of entries still there.
    assert host.file(f"{ALICE}/directorysizes").content_string.split(" ", 2)[2] == "recent%20dir\n"
    assert listdir(host, f"{BOB}/files") == RECENT
    assert listdir(host, f"{SCRATCH}/files") == [] and listdir(host, f"{SCRATCH}/info") == []
    # The trash directories stay, owned by their users.
    assert host.file(f"{ALICE}/files").user == "alice" and host.file(f"{BOB}/info").user == "bob"


def test_nothing_outside_the_trash_changed(host):
    assert_outside_untouched(host)
    # The hard-linked file lost its trash link, not its data.
    assert host.file("/home/alice/keep/hardlinked.dat").size == 600_000
    assert host.check_output("stat -c %h /home/alice/keep/hardlinked.dat") == "1"


def test_symlinked_trash_directories_are_refused_and_left_alone(host):
    # carol's ~/.local/share and dave's Trash/files are links: nothing behind them goes.
    assert listdir(host, "/srv/decoy-share/Trash/files") == ["victim.txt"]
    assert host.file("/home/dave/.local/share/Trash/files").linked_to == "/etc"
    assert host.file("/home/dave/.local/share/Trash/info/passwd.trashinfo").exists
    # converge's clean logged its summary to the journal (--syslog).
    lines = host.check_output("journalctl -t trash-cleanup -o cat --no-pager").splitlines()
    first = next(line for line in lines if line.startswith("freed "))
    assert re.fullmatch(r"freed \d+ bytes \([\d.]+ MiB\) in \d+ entries from 3 trash directories; "
                        r"4 entries kept \(newer than 7 days\), 2 refused, 0 errors", first), first


def test_jupyter_drop_in_written_and_jupyter_restarted(host):
    drop_in = host.file(DROP_IN)
    assert drop_in.mode == 0o644 and drop_in.user == "root"
    assert "\nc.FileContentsManager.delete_to_trash = False\n" in drop_in.content_string
    # The drop-in is Python the traitlets loader runs with get_config() in scope.
    value = host.check_output(
        "python3 -c 'import sys, types; c = types.SimpleNamespace(FileContentsManager=types.SimpleNamespace()); "
        "exec(open(sys.argv[1]).read(), {\"get_config\": lambda: c}); print(c.FileContentsManager.delete_to_trash)' " + DROP_IN)
    assert value == "False"
    before = host.file("/var/lib/trash-fixture/jupyter-invocation").content_string.strip()
    now = host.check_output("systemctl show --property=InvocationID --value jupyter.service")
    assert host.service("jupyter.service").is_running and now and now != before


# --------------------------------------------------------------------------------------------
# More trash, cleaned three ways
# --------------------------------------------------------------------------------------------


def test_check_mode_playbook_predicts_and_removes_nothing(host, tmp_path):
    host.check_output(f"{FIXTURE} reseed -2")
    files_before = listdir(host, f"{ALICE}/files")
    du_before = disk_usage(host)
    out = ansible_playbook("playbooks/trash.yml", "--check", tmp_path=tmp_path)
    predicted, entries = play_figure(out, "would free")
    assert predicted > 5_000_000 and entries == 12
    assert recap(out) == 1  # would change
    assert disk_usage(host) == du_before
    assert listdir(host, f"{ALICE}/files") == files_before
    STATE["predicted"] = predicted


def test_timer_service_frees_exactly_what_it_reports(host):
    du_before = disk_usage(host)
    since = int(time.time()) - 1
    # What the timer starts; a oneshot, so this returns when the run is over.
    host.check_output("systemctl start trash-cleanup.service")
    freed = du_before - disk_usage(host)
    report = json.loads(host.file(REPORT).content_string)
    assert report["bytes_freed"] == freed == STATE["predicted"]
    assert report["errors"] == [] and len(report["refused"]) == 2
    journal = host.check_output(f"journalctl -u trash-cleanup.service --since @{since} -o cat --no-pager")
    assert f"freed {freed} bytes (" in journal
    assert host.check_output("systemctl show -p Result --value trash-cleanup.service") == "success"
    # Entries deleted an hour ago stay.
    assert listdir(host, f"{ALICE}/files") == sorted(RECENT + [n + "-2" for n in RECENT])
    assert_outside_untouched(host)


def test_playbook_cleans_on_demand_and_reports_per_host(host, tmp_path):
    host.check_output(f"{FIXTURE} reseed -3")
    du_before = disk_usage(host)
    # A one-off override: 0 days empties everything, recent entries included.
    out = ansible_playbook("playbooks/trash.yml", "-e", "trash_cleanup_older_than_days=0", tmp_path=tmp_path)
    freed, entries = play_figure(out, "freed")
    assert recap(out) == 1
    assert freed == du_before - disk_usage(host) and freed > 5_000_000
    assert entries == 12 + 4 * len(RECENT)
    assert listdir(host, f"{ALICE}/files") == [] and listdir(host, f"{BOB}/files") == []
    assert "refused /home/carol/.local/share/Trash: " in out
    # The installed configuration did not change: the one-off was only for this run.
    assert json.loads(host.file("/etc/trash-cleanup/config.json").content_string)["older_than_days"] == 7
    assert f"freed {freed} bytes (" in host.check_output("journalctl -t trash-cleanup -o cat --no-pager")
    assert_outside_untouched(host)


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
