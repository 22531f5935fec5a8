"""Unit tests for the trash cleaner that the trash_cleanup role installs on the VMs.

The script is imported as a module straight from the role's files/ directory and run against
trash trees built under tmp_path.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pwd
import stat
import sys
import time
import urllib.parse
from contextlib import nullcontext, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "trash_cleanup" / "files" / "trash_cleanup.py"
_spec = importlib.util.spec_from_file_location("trash_cleanup", SCRIPT)
tc = importlib.util.module_from_spec(_spec)
sys.modules["trash_cleanup"] = tc
_spec.loader.exec_module(tc)

DAY = 86400
IS_ROOT = os.geteuid() == 0


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def make_trash(root: Path) -> Path:
    trash = root / ".local" / "share" / "Trash"
    (trash / "files").mkdir(parents=True)
    (trash / "info").mkdir()
    return trash


def trashinfo(path: str, when: float) -> bytes:
    date = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))
    return ("[Trash Info]\nPath=%s\nDeletionDate=%s\n" % (urllib.parse.quote(path), date)).encode()


def add_entry(
    trash: Path, name: str, *, days_ago: float, content: bytes = b"x" * 5000, tree: dict | None = None
) -> Path:
    """files/NAME (a file, or a directory tree from `tree`) with its info file."""
    target = trash / "files" / name
    if tree is None:
        target.write_bytes(content)
    else:
        build_tree(target, tree)
    (trash / "info" / (name + ".trashinfo")).write_bytes(trashinfo("/home/u/" + name, time.time() - days_ago * DAY))
    return target


def build_tree(base: Path, tree: dict) -> None:
    base.mkdir()
    for name, value in tree.items():
        if isinstance(value, dict):
            build_tree(base / name, value)
        else:
            (base / name).write_bytes(value)


def disk_usage(root: Path) -> int:
    """What `du -sB1` says: st_blocks of every inode under root, hard links counted once."""
    seen = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            st = os.lstat(name)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def clean(
    *paths: Path, days: int = 0, dry_run: bool = False, now: float | None = None, grace: int = tc.ORPHAN_INFO_GRACE_S
) -> dict:
    options = tc.Options(
        older_than_days=days,
        paths=[str(p) for p in paths],
        dry_run=dry_run,
        now=now,
        orphan_info_grace_s=grace,
        list_names=True,
    )
    return tc.Cleaner(options).run()


def snapshot(root: Path) -> dict:
    """Every path under root with its type and content, not following symlinks."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[path] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                found[path] = ("file", Path(path).read_bytes())
            else:
                found[path] = ("dir", None)
    return found


# ---------------------------------------------------------------------------------------------
# trashinfo parsing and ages
# ---------------------------------------------------------------------------------------------


def test_parse_trashinfo_reads_the_trash_info_group():
    data = b"[Trash Info]\nPath=/home/u/my%20notebook.ipynb\nDeletionDate=2004-08-31T22:32:08\n"
    assert tc.parse_trashinfo(data) == {"path": "/home/u/my notebook.ipynb", "deletion_date": "2004-08-31T22:32:08"}


def test_parse_trashinfo_ignores_other_groups_comments_and_junk():
    data = (
        b"# comment\n[Other]\nDeletionDate=1999-01-01T00:00:00\nPath=/wrong\n"
        b"\xff\xfe garbage\n[Trash Info]\nnot a pair\n  Path = rel/a%0Ab \nDeletionDate=2020-02-02T02:02:02\n"
        b"DeletionDate=2030-01-01T00:00:00\n"
    )
    assert tc.parse_trashinfo(data) == {"path": "rel/a\nb", "deletion_date": "2020-02-02T02:02:02"}


def test_parse_trashinfo_missing_keys():
    assert tc.parse_trashinfo(b"") == {"path": None, "deletion_date": None}
    assert tc.parse_trashinfo(b"[Trash Info]\nPath=x\n")["deletion_date"] is None


def test_deletion_timestamp_is_local_time():
    when = time.mktime((2021, 6, 1, 12, 0, 0, 0, 0, -1))
    assert tc.deletion_timestamp("2021-06-01T12:00:00") == pytest.approx(when)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-06-01T12:00:00+00:00", 1622548800.0),
        ("2021-06-01T12:00:00Z", 1622548800.0),
        ("2021-06-01T14:00:00.250+02:00", 1622548800.25),
    ],
)
def test_deletion_timestamp_accepts_offsets(value, expected):
    assert tc.deletion_timestamp(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [None, "", "yesterday", "2021-13-01T00:00:00", "31/08/2004"])
def test_deletion_timestamp_rejects_garbage(value):
    assert tc.deletion_timestamp(value) is None


def test_is_expired():
    now = 1_000_000_000.0
    assert tc.is_expired(now, now, 0)
    assert tc.is_expired(None, now, 0)
    assert tc.is_expired(now - 7 * DAY, now, 7)
    assert not tc.is_expired(now - 7 * DAY + 1, now, 7)
    assert not tc.is_expired(now + DAY, now, 7)  # a date in the future is kept
    assert not tc.is_expired(None, now, 7)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80))
def test_trashinfo_path_round_trips(path):
    data = ("[Trash Info]\nPath=%s\nDeletionDate=2020-01-01T00:00:00\n" % urllib.parse.quote(path)).encode()
    assert tc.parse_trashinfo(data)["path"] == path


# ---------------------------------------------------------------------------------------------
# age filter
# ---------------------------------------------------------------------------------------------


def test_age_threshold_keeps_recent_entries(tmp_path):
    trash = make_trash(tmp_path)
    add_entry(trash, "old.ipynb", days_ago=40)
    add_entry(trash, "old dir", days_ago=31, tree={"a": b"1" * 9000, "sub": {"b": b"2"}})
    add_entry(trash, "recent.ipynb", days_ago=2)
    result = clean(trash, days=30)
    assert result["entries_removed"] == 2
    assert result["entries_kept"] == 1
    assert sorted(os.listdir(trash / "files")) == ["recent.ipynb"]
    assert sorted(os.listdir(trash / "info")) == ["recent.ipynb.trashinfo"]


def test_zero_days_removes_everything(tmp_path):
    trash = make_trash(tmp_path)
    add_entry(trash, "a", days_ago=0)
    add_entry(trash, "b", days_ago=-3)  # clock skew: a date in the future
    result = clean(trash, days=0)
    assert result["entries_removed"] == 2
    assert os.listdir(trash / "files") == [] and os.listdir(trash / "info") == []


def test_unparseable_date_falls_back_to_info_mtime(tmp_path):
    trash = make_trash(tmp_path)
    (trash / "files" / "a").write_bytes(b"a")
    info = trash / "info" / "a.trashinfo"
    info.write_bytes(b"[Trash Info]\nDeletionDate=whenever\n")
    assert clean(trash, days=10)["entries_kept"] == 1
    old = time.time() - 20 * DAY
    os.utime(info, (old, old))
    assert clean(trash, days=10)["entries_removed"] == 1
    assert not (trash / "files" / "a").exists()


def test_fifo_named_trashinfo_does_not_hang(tmp_path):
    trash = make_trash(tmp_path)
    (trash / "files" / "p").write_bytes(b"p")
    os.mkfifo(trash / "info" / "p.trashinfo")
    result = clean(trash, days=0)
    assert result["entries_removed"] == 1
    assert os.listdir(trash / "info") == []


# ---------------------------------------------------------------------------------------------
# orphans, expunged/, directorysizes
# ---------------------------------------------------------------------------------------------


def test_orphan_files_are_aged_by_when_they_were_moved_in(tmp_path):
    trash = make_trash(tmp_path)
    (trash / "files" / "no-info").write_bytes(b"z" * 100)
    assert clean(trash, days=7)["entries_kept"] == 1
    result = clean(trash, days=7, now=time.time() + 8 * DAY)
    assert result["entries_removed"] == 1
    assert not (trash / "files" / "no-info").exists()


def test_orphan_info_files_wait_for_the_grace_period(tmp_path):
    trash = make_trash(tmp_path)
    fresh = trash / "info" / "being-trashed.trashinfo"
    fresh.write_bytes(trashinfo("/x", time.time()))
    stale = trash / "info" / "gone.trashinfo"
    stale.write_bytes(trashinfo("/y", time.time() - 90 * DAY))
    junk = trash / "info" / "junk-not-trashinfo"
    junk.write_bytes(b"?")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(junk, (old, old))
    result = clean(trash, days=0)
    assert result["trash_dirs"][0]["orphans_removed"] == 2
    assert os.listdir(trash / "info") == ["being-trashed.trashinfo"]


def test_expunged_and_directorysizes(tmp_path):
    trash = make_trash(tmp_path)
    add_entry(trash, "big dir", days_ago=60, tree={"f": b"1" * 4096})
    add_entry(trash, "kept dir", days_ago=1, tree={"f": b"2"})
    (trash / "expunged").mkdir()
    build_tree(trash / "expunged" / "1234", {"half-deleted": b"3" * 8192})
    sizes = trash / "directorysizes"
    sizes.write_bytes(b"4096 1600000000 big%20dir\n1 1600000000 kept%20dir\n7 1600000000 long%20gone\n")
    os.chmod(sizes, 0o640)
    result = clean(trash, days=30)
    report = result["trash_dirs"][0]
    assert report["expunged_removed"] == 1 and report["entries_removed"] == 2
    assert os.listdir(trash / "expunged") == []
    assert sizes.read_bytes() == b"1 1600000000 kept%20dir\n"
    assert stat.S_IMODE(sizes.stat().st_mode) == 0o640
    assert not (trash / "directorysizes.trash-cleanup.tmp").exists()


def test_directorysizes_symlink_is_removed_not_followed(tmp_path):
    trash = make_trash(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"1 1 x\n")
    (trash / "directorysizes").symlink_to(victim)
    clean(trash, days=0)
    assert not os.path.lexists(trash / "directorysizes")
    assert victim.read_bytes() == b"1 1 x\n"


# ---------------------------------------------------------------------------------------------
# symlinks never lead out of the trash
# ---------------------------------------------------------------------------------------------


def test_symlinks_in_the_trash_are_removed_as_links(tmp_path):
    outside = tmp_path / "outside"
    build_tree(outside, {"precious.txt": b"keep me", "dir": {"deep.txt": b"also keep"}})
    home = tmp_path / "home"
    home.mkdir()
    trash = make_trash(home)
    (trash / "files" / "to-dir").symlink_to(outside)
    (trash / "info" / "to-dir.trashinfo").write_bytes(trashinfo("/to-dir", 0))
    (trash / "files" / "to-file").symlink_to(outside / "precious.txt")
    add_entry(trash, "tree", days_ago=99, tree={"inner": {}})
    (trash / "files" / "tree" / "inner" / "up").symlink_to(outside / "dir")
    (trash / "files" / "tree" / "inner" / "dangling").symlink_to(tmp_path / "does-not-exist")
    (trash / "files" / "tree" / "inner" / "rel").symlink_to("../../../../../../outside")
    before = snapshot(outside)
    result = clean(trash, days=0)
    assert result["errors"] == []
    assert result["entries_removed"] == 3
    assert snapshot(outside) == before
    assert os.listdir(trash / "files") == []


def test_hard_link_to_a_file_outside_frees_nothing(tmp_path):
    outside = tmp_path / "keep.bin"
    outside.write_bytes(b"k" * 100_000)
    trash = make_trash(tmp_path / "home")
    os.link(outside, trash / "files" / "hard")
    (trash / "info" / "hard.trashinfo").write_bytes(trashinfo("/hard", 0))
    result = clean(trash, days=0)
    assert outside.read_bytes() == b"k" * 100_000
    assert result["entries_removed"] == 1
    # Only the info file's blocks are freed, not the 100 kB that keep.bin still holds.
    assert result["bytes_freed"] < 100_000


@pytest.mark.parametrize("linked", [".local", "share", "Trash"])
def test_symlinked_path_to_the_trash_is_refused(tmp_path, monkeypatch, linked):
    elsewhere = tmp_path / "elsewhere"
    real_trash = make_trash(elsewhere)
    add_entry(real_trash, "victim", days_ago=100)
    home = tmp_path / "home"
    chain = {
        ".local": home / ".local",
        "share": home / ".local" / "share",
        "Trash": home / ".local" / "share" / "Trash",
    }
    target = {".local": elsewhere / ".local", "share": elsewhere / ".local" / "share", "Trash": real_trash}[linked]
    chain[linked].parent.mkdir(parents=True, exist_ok=True)
    chain[linked].symlink_to(target)
    fake = pwd.struct_passwd(("mallory", "x", os.getuid(), os.getgid(), "", str(home), "/bin/sh"))
    monkeypatch.setattr(tc.pwd, "getpwnam", lambda name: fake)
    before = snapshot(elsewhere)
    result = tc.Cleaner(tc.Options(older_than_days=0, users=["mallory"])).run()
    assert result["trash_dirs"][0]["status"] == "refused"
    assert "symlink" in result["refused"][0]["reason"]
    assert snapshot(elsewhere) == before


@pytest.mark.parametrize("sub", ["files", "info", "expunged"])
def test_symlinked_trash_subdirectory_is_refused(tmp_path, sub):
    victim = tmp_path / "victim"
    build_tree(victim, {"a": b"a"})
    trash = tmp_path / "Trash"
    trash.mkdir()
    (trash / sub).symlink_to(victim)
    result = clean(trash, days=0)
    assert result["trash_dirs"][0]["status"] == "refused"
    assert (victim / "a").read_bytes() == b"a"


def test_explicit_trash_path_that_is_a_symlink_is_refused(tmp_path):
    real = make_trash(tmp_path / "real")
    add_entry(real, "x", days_ago=100)
    (tmp_path / "link").symlink_to(real)
    result = clean(tmp_path / "link", days=0)
    assert result["trash_dirs"][0]["status"] == "refused"
    assert (real / "files" / "x").exists()


def test_home_walk_uses_the_password_database(tmp_path, monkeypatch):
    homes = []
    for name in ("ann", "ben", "nobody-home"):
        home = tmp_path / name
        home.mkdir()
        homes.append(
            pwd.struct_passwd(
                (name, "x", os.getuid() if os.getuid() >= 1000 else 1000 + len(homes), 0, "", str(home), "/bin/sh")
            )
        )
    add_entry(make_trash(tmp_path / "ann"), "a", days_ago=50)
    add_entry(make_trash(tmp_path / "ben"), "b", days_ago=50)
    system = pwd.struct_passwd(("daemon", "x", 1, 1, "", str(tmp_path / "ann"), "/bin/sh"))
    monkeypatch.setattr(tc.pwd, "getpwall", lambda: [system] + homes)
    monkeypatch.setattr(
        tc,
        "_open_trash_for_home",
        lambda home, uid: os.open(os.path.join(home, *tc.TRASH_RELATIVE), os.O_RDONLY | os.O_DIRECTORY),
    )
    result = tc.Cleaner(tc.Options(older_than_days=30)).run()
    assert [t["status"] for t in result["trash_dirs"]] == ["cleaned", "cleaned", "absent"]
    assert result["entries_removed"] == 2


# ---------------------------------------------------------------------------------------------
# hostile shapes: deep trees, unreadable files, odd names
# ---------------------------------------------------------------------------------------------


def test_deep_tree_is_removed_without_recursion(tmp_path):
    trash = make_trash(tmp_path)
    add_entry(trash, "deep", days_ago=100, tree={})
    fd = os.open(trash / "files" / "deep", os.O_RDONLY)
    fds = [fd]
    for _ in range(1500):  # deeper than Python's recursion limit
        os.mkdir("d", dir_fd=fds[-1])
        nfd = os.open("d", os.O_RDONLY, dir_fd=fds[-1])
        os.close(fds.pop())
        fds.append(nfd)
    with os.fdopen(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fds[-1]), "wb") as handle:
        handle.write(b"b" * 10)
    os.close(fds.pop())
    result = clean(trash, days=0)
    assert result["errors"] == []
    assert result["inodes_removed"] == 1 + 1500 + 1 + 1  # deep/, 1500 d/, bottom, info file
    assert os.listdir(trash / "files") == []


def test_too_deep_is_reported_not_crashed(tmp_path, monkeypatch):
    monkeypatch.setattr(tc, "_max_depth", lambda: 20)
    trash = make_trash(tmp_path)
    path = trash / "files" / "deep"
    add_entry(trash, "deep", days_ago=100, tree={})
    for _ in range(30):
        path = path / "d"
        path.mkdir()
    result = clean(trash, days=0)
    assert result["entries_removed"] == 0
    assert any("deeper than 20 levels" in e for e in result["errors"])
    # The entry stays complete (info file too), so a later run can still age it.
    assert (trash / "info" / "deep.trashinfo").exists()


@pytest.mark.skipif(not IS_ROOT, reason="only root can clean files their owner cannot read")
def test_unreadable_root_owned_tree_is_removed(tmp_path):
    trash = make_trash(tmp_path)
    add_entry(trash, "locked", days_ago=100, tree={"inner": {"secret": b"s" * 3000}})
    locked = trash / "files" / "locked"
    os.chmod(locked / "inner" / "secret", 0)
    os.chmod(locked / "inner", 0)
    os.chmod(locked, 0)
    used = disk_usage(tmp_path)
    result = clean(trash, days=0)
    assert result["errors"] == []
    assert not os.path.lexists(locked)
    assert used - disk_usage(tmp_path) == result["bytes_freed"]


_name_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")
_names = st.text(alphabet=_name_chars, min_size=1, max_size=40).filter(
    lambda n: n not in (".", "..") and len(n.encode("utf-8", "surrogateescape")) <= 200
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.sets(_names, min_size=1, max_size=6))
def test_any_names_are_cleaned(tmp_path_factory, names):
    root = tmp_path_factory.mktemp("names")
    trash = make_trash(root)
    outside = root / "outside"
    outside.write_bytes(b"o")
    for i, name in enumerate(sorted(names)):
        if i % 2:
            add_entry(trash, name, days_ago=10, tree={name: b"n" * i, "up": {}})
            (trash / "files" / name / "up" / name).symlink_to(outside)
        else:
            add_entry(trash, name, days_ago=10)
    sizes = "".join("1 1 %s\n" % urllib.parse.quote(n) for n in names).encode()
    (trash / "directorysizes").write_bytes(sizes)
    result = clean(trash, days=1)
    assert result["errors"] == []
    assert result["entries_removed"] == len(names)
    assert os.listdir(trash / "files") == [] and os.listdir(trash / "info") == []
    assert (trash / "directorysizes").read_bytes() == b""
    assert outside.read_bytes() == b"o"
    json.dumps(result)  # any name must survive JSON


def test_non_utf8_names(tmp_path):
    trash = make_trash(tmp_path)
    raw = b"caf\xe9 \n notebook"
    os.close(os.open(os.fsencode(trash / "files") + b"/" + raw, os.O_WRONLY | os.O_CREAT, 0o600))
    result = clean(trash, days=0)
    assert result["entries_removed"] == 1
    assert os.listdir(trash / "files") == []
    text = json.dumps(result, ensure_ascii=True)
    assert "\\udce9" in text


# ---------------------------------------------------------------------------------------------
# byte accounting and dry run
# ---------------------------------------------------------------------------------------------


def hostile_trash(root: Path) -> Path:
    trash = make_trash(root / "home")
    add_entry(trash, "a.bin", days_ago=40, content=os.urandom(123_457))
    add_entry(trash, "dir with spaces", days_ago=40, tree={"x": b"x" * 70_000, "y": {"z": b"z" * 10}, "empty": {}})
    add_entry(trash, "line\nbreak", days_ago=40, content=b"")
    add_entry(trash, "recent", days_ago=1, content=b"r" * 50_000)
    os.link(trash / "files" / "a.bin", trash / "files" / "dir with spaces" / "hardlink-inside")
    # Escape targets live under the test's own tmp dir, never at real system paths: these tests
    # run as root, and a broken cleaner must only be able to damage tmp_path.
    outside = root / "outside"
    build_tree(outside, {"keep": b"k" * 5000})
    (trash / "files" / "dir with spaces" / "sym").symlink_to(outside)
    return trash


def test_bytes_freed_equals_drop_in_disk_usage(tmp_path):
    trash = hostile_trash(tmp_path)
    before = disk_usage(tmp_path)
    result = clean(trash, days=30)
    after = disk_usage(tmp_path)
    assert result["entries_removed"] == 3 and result["entries_kept"] == 1
    assert result["bytes_freed"] == before - after
    assert result["bytes_freed"] > 200_000
    assert result["apparent_bytes_freed"] >= 123_457 + 70_010


def test_dry_run_changes_nothing_and_predicts_the_real_run(tmp_path):
    trash = hostile_trash(tmp_path)
    before = snapshot(tmp_path)
    dry = clean(trash, days=30, dry_run=True)
    assert snapshot(tmp_path) == before
    assert dry["dry_run"] is True
    real = clean(trash, days=30)
    for key in ("bytes_freed", "apparent_bytes_freed", "entries_removed", "entries_kept", "inodes_removed"):
        assert dry[key] == real[key], key
    again = clean(trash, days=30)
    assert again["entries_removed"] == 0 and again["bytes_freed"] == 0


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = tc.main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_main_json_and_report_file(tmp_path):
    trash = hostile_trash(tmp_path)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"older_than_days": 30, "paths": [str(trash)]}))
    rc, out, err = run_main(["--config", str(config), "--json", "--dry-run"])
    assert rc == 0
    dry = json.loads(out)
    assert dry["dry_run"] and dry["entries_removed"] == 3
    assert err.strip().splitlines()[-1].startswith("would free %d bytes" % dry["bytes_freed"])
    report = tmp_path / "last-run.json"
    rc, out, _ = run_main(["--config", str(config), "--report-file", str(report)])
    assert rc == 0
    saved = json.loads(report.read_text())
    assert out.strip().splitlines()[-1] == tc.summary_line(saved)
    assert saved["bytes_freed"] == dry["bytes_freed"]


def test_main_cli_overrides_config(tmp_path):
    trash = hostile_trash(tmp_path)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"older_than_days": 30, "paths": [str(trash)]}))
    rc, out, _ = run_main(["--config", str(config), "--older-than-days", "0", "--json"])
    assert rc == 0 and json.loads(out)["entries_removed"] == 4


@pytest.mark.parametrize(
    "argv",
    [
        ["--older-than-days", "-1", "--path", "/tmp/x"],
        ["--path", "relative/Trash"],
        ["--config", "/nonexistent/trash.json"],
    ],
)
def test_main_rejects_bad_settings(argv):
    with pytest.raises(SystemExit) if "--config" in argv else nullcontext():
        rc, _, _ = run_main(argv)
        assert rc == 2


def _fake_homes(tmp_path, monkeypatch, names):
    """Accounts whose homes are under tmp_path (never the host's real homes)."""
    accounts = []
    for i, name in enumerate(names):
        home = tmp_path / name
        home.mkdir()
        add_entry(make_trash(home), name + "-old", days_ago=50)
        accounts.append(pwd.struct_passwd((name, "x", 1000 + i, 0, "", str(home), "/bin/sh")))
    monkeypatch.setattr(tc.pwd, "getpwall", lambda: accounts)
    monkeypatch.setattr(
        tc,
        "_open_trash_for_home",
        lambda home, uid: os.open(os.path.join(home, *tc.TRASH_RELATIVE), os.O_RDONLY | os.O_DIRECTORY),
    )
    return accounts


def test_all_users_cleans_homes_and_extra_paths(tmp_path, monkeypatch):
    _fake_homes(tmp_path, monkeypatch, ["ann", "ben"])
    extra = make_trash(tmp_path / "data")
    add_entry(extra, "big", days_ago=50)
    only_paths = tc.Cleaner(tc.Options(older_than_days=30, paths=[str(extra)])).targets()
    assert [t[0] for t in only_paths] == [str(extra)]
    result = tc.Cleaner(tc.Options(older_than_days=30, paths=[str(extra)], all_users=True)).run()
    assert [t["user"] for t in result["trash_dirs"]] == ["ann", "ben", None]
    assert result["entries_removed"] == 3


def test_main_no_config_ignores_the_config_file(tmp_path, monkeypatch):
    _fake_homes(tmp_path, monkeypatch, ["ann"])
    extra = make_trash(tmp_path / "data")
    add_entry(extra, "big", days_ago=50)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"older_than_days": 1000, "paths": [str(extra)]}))
    monkeypatch.setattr(tc, "DEFAULT_CONFIG", str(config))
    # The default config file (older_than_days 1000) would keep everything.
    rc, out, _ = run_main(["--json", "--dry-run", "--path", str(extra)])
    assert rc == 0 and json.loads(out)["entries_kept"] == 1
    rc, out, _ = run_main(
        ["--no-config", "--json", "--dry-run", "--path", str(extra), "--all-users", "--older-than-days", "30"]
    )
    result = json.loads(out)
    assert rc == 0 and result["entries_removed"] == 2 and result["entries_kept"] == 0
    assert run_main(["--no-config", "--config", str(config)])[0] == 2


def test_all_users_must_be_a_boolean():
    with pytest.raises(TypeError):
        tc.Options(all_users="yes")
