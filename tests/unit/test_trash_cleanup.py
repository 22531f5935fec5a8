"""The trash_cleanup script around trash-empty: exit codes, refusals, bytes freed.

trash-empty itself is a stub here (it records how it was called and removes what a real one would
for the trees built below), so these tests need no trash-cli: the real one runs in the Molecule
scenario. Every tree is a temporary directory of the test, handed to `nobody` when the suite runs
as root (tests/support/unprivileged.py); the script itself refuses root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.unprivileged import run_unprivileged

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "trash_cleanup" / "files" / "trash-cleanup"
OLD = "2020-01-02T03:04:05"

# Records its arguments and XDG_DATA_HOME, then does what the test asks through STUB_MODE:
# "rm" removes files/old and info/old.trashinfo of the trash it was given; "fail" prints what
# trash-cli 0.17 prints when a removal fails, and exits 0 as it does.
STUB = """#!/bin/sh
printf '%s|%s\\n' "$XDG_DATA_HOME" "$*" >> "$STUB_LOG"
case $STUB_MODE in
  rm) rm -f "$XDG_DATA_HOME/Trash/files/old" "$XDG_DATA_HOME/Trash/info/old.trashinfo" ;;
  fail) echo "trash-empty: cannot remove $XDG_DATA_HOME/Trash/files/old" >&2 ;;
esac
exit 0
"""


def make_tree(base: Path) -> dict:
    home = base / "home"
    trash = home / ".local" / "share" / "Trash"
    for sub in ("files", "info", "expunged/half-gone"):
        (trash / sub).mkdir(parents=True)
    (trash / "files" / "old").write_bytes(os.urandom(300_000))
    (trash / "info" / "old.trashinfo").write_text(f"[Trash Info]\nPath=/x/old\nDeletionDate={OLD}\n")
    (trash / "expunged" / "half-gone" / "part").write_bytes(os.urandom(50_000))
    extra = base / "data" / "Trash"
    (extra / "files").mkdir(parents=True)
    (extra / "info").mkdir()
    (extra / "files" / "old").write_bytes(os.urandom(100_000))
    (extra / "info" / "old.trashinfo").write_text(f"[Trash Info]\nPath=/x/old\nDeletionDate={OLD}\n")
    bindir = base / "bin"
    bindir.mkdir()
    (bindir / "trash-empty").write_text(STUB)
    (bindir / "trash-empty").chmod(0o755)
    # A copy inside the tree: the checkout may sit where the unprivileged user cannot read.
    shutil.copyfile(SCRIPT, bindir / "trash-cleanup")
    return {"home": str(home), "trash": str(trash), "extra": str(extra), "bin": str(bindir),
            "log": str(base / "stub.log"), "script": str(bindir / "trash-cleanup")}


def run(tree: dict, *args: str, mode: str = "rm") -> tuple[int, str, str, list[str]]:
    env = {
        "HOME": tree["home"],
        "PATH": tree["bin"] + ":/usr/bin:/bin",
        "STUB_MODE": mode,
        "STUB_LOG": tree["log"],
        # Stands for systemd's journal: the script then logs to stdout only, not to this machine's log.
        "JOURNAL_STREAM": "8:1",
    }
    proc = subprocess.run(["/bin/sh", tree["script"], *args], capture_output=True, text=True, env=env, timeout=60)
    calls = Path(tree["log"]).read_text().splitlines() if os.path.exists(tree["log"]) else []
    return proc.returncode, proc.stdout, proc.stderr, calls


def du(path: str) -> int:
    return int(subprocess.run(["du", "-sxB1", path], capture_output=True, text=True, check=True).stdout.split()[0])


def test_empties_home_extra_and_expunged_and_reports_the_drop_in_du(open_tmp_path):
    tree = make_tree(open_tmp_path)

    def clean():
        before = du(tree["trash"]) + du(tree["extra"])
        rc, out, err, calls = run(tree, "30", tree["extra"], "/")
        after = du(tree["trash"]) + du(tree["extra"])
        return rc, out, err, calls, before - after, os.listdir(tree["trash"] + "/expunged")

    rc, out, err, calls, dropped, expunged = run_unprivileged(open_tmp_path, clean)
    assert (rc, err) == (0, ""), err
    # The home trash through HOME, the extra one as the Trash of a data home of its own; "/" is
    # not the caller's, so it is left to its owner.
    assert calls[0] == tree["home"] + "/.local/share|30"
    assert len(calls) == 2 and calls[1].endswith("|30") and calls[1] != calls[0]
    assert expunged == []
    user = out.split(" of ")[1].split()[0]
    assert out == (f"freed {dropped} bytes ({dropped / 1048576:.1f} MiB) in 5 items from 2 trash directories of {user} "
                   "(entries deleted more than 30 days ago)\n")
    assert dropped >= 450_000


def test_zero_days_calls_trash_empty_without_an_age(open_tmp_path):
    tree = make_tree(open_tmp_path)
    rc, out, _, calls = run_unprivileged(open_tmp_path, lambda: run(tree, "0"))
    assert rc == 0 and calls == [tree["home"] + "/.local/share|"]
    assert "(every entry)" in out


def test_a_removal_trash_empty_reports_on_stderr_fails_the_run(open_tmp_path):
    tree = make_tree(open_tmp_path)
    rc, out, err, _ = run_unprivileged(open_tmp_path, lambda: run(tree, "30", mode="fail"))
    assert rc == 1
    assert f"trash-empty: cannot remove {tree['home']}/.local/share/Trash/files/old" in err
    assert out.endswith("; some could not be removed, see above\n")


def test_a_trash_behind_a_link_is_refused_and_not_emptied(open_tmp_path):
    tree = make_tree(open_tmp_path)
    files = Path(tree["trash"]) / "files"
    files.rename(open_tmp_path / "elsewhere")
    files.symlink_to(open_tmp_path / "elsewhere")
    rc, _, err, calls = run_unprivileged(open_tmp_path, lambda: run(tree, "30"))
    assert rc == 1
    assert f"refusing {tree['trash']}: {files} is a symbolic link" in err
    # trash-cli ran for the volumes' trash only, with a data home that has no Trash.
    assert len(calls) == 1 and not calls[0].startswith(tree["home"])
    assert (open_tmp_path / "elsewhere" / "old").exists()


def test_dry_run_removes_nothing(open_tmp_path):
    tree = make_tree(open_tmp_path)
    rc, out, _, calls = run_unprivileged(open_tmp_path, lambda: run(tree, "--dry-run", "7"))
    assert rc == 0 and calls == []
    assert out.startswith("would empty entries deleted more than 7 days ago from 1 trash directories of ")
    assert (Path(tree["trash"]) / "files" / "old").exists()


def test_bad_usage_is_refused(open_tmp_path):
    tree = make_tree(open_tmp_path)
    for args in ([], ["thirty"], ["-1"]):
        rc, _, err, calls = run_unprivileged(open_tmp_path, lambda args=args: run(tree, *args))
        assert rc == 2 and err.startswith("usage: trash-cleanup") and calls == []


def test_refuses_to_run_as_root(open_tmp_path):
    if os.geteuid() != 0:
        return  # only root can show it; the stub stands in for trash-empty either way
    tree = make_tree(open_tmp_path)
    rc, _, err, calls = run(tree, "30")
    assert rc == 2 and "refusing to run as root" in err
    assert calls == [] and (Path(tree["trash"]) / "files" / "old").exists()
