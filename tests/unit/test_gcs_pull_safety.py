"""Hostile inputs for gcs_pull: symlinked or foreign-owned dest, object names that leave dest,
and the ownership walk. Everything runs as the test's own user inside its tmp dir; symlinks only
ever point at other directories of that tmp dir."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))

import gcs_rsync_common as g  # noqa: E402
from tests.support.unprivileged import run_unprivileged  # noqa: E402

ME = os.getuid()
MYGID = os.getgid()


# ---- object names ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "/etc/passwd", "//x/sub/f.txt", "a//b", "../escape1.txt", "data/../escape1.txt", "a/..",
    "..", "./a", "a/./b", "a/b/", "a\x00b", "a///",
])
def test_hostile_names_are_refused(name):
    if name == "a/b/":
        assert g.object_name_problem(name) is None  # folder placeholder
        return
    assert g.object_name_problem(name)


@pytest.mark.parametrize("name", ["a", "a/b/c.txt", "..a", "a..b/c", "a/...", "x y/z", "ünï/ç", ""])
def test_ordinary_names_pass(name):
    assert g.object_name_problem(name) is None


_seg = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=8)


@given(st.lists(st.one_of(_seg, st.sampled_from(["", ".", ".."])), min_size=1, max_size=6), st.booleans())
def test_accepted_names_never_leave_dest(segs, absolute):
    name = ("/" if absolute else "") + "/".join(segs)
    dest = "/d/e"
    if g.object_name_problem(name) is None:
        target = os.path.normpath(os.path.join(dest, name))
        assert target == dest or target.startswith(dest + "/")
        # and the path is exactly what was asked: no segment was swallowed by normalisation
        assert target == dest + ("/" + name.rstrip("/") if name.rstrip("/") else "")


def test_inside_problem_refuses_symlink_inside_dest(tmp_path):
    dest = tmp_path / "dest"
    elsewhere = tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    (dest / "sub").symlink_to(elsewhere)
    (dest / "real").mkdir()
    (dest / "real" / "f").symlink_to(elsewhere / "victim")
    assert "symlink sub" in g.inside_problem(str(dest), "sub/f.txt")
    assert "symlink real/f" in g.inside_problem(str(dest), "real/f")
    assert g.inside_problem(str(dest), "real/new/x") is None
    assert g.inside_problem(str(dest), "absent/deeper/x") is None
    assert g.inside_problem(str(dest), "data/../../escape") is not None


# ---- dest -----------------------------------------------------------------------------------
def fake_lstat(table):
    def lstat(path):
        if path not in table:
            raise FileNotFoundError(path)
        mode, uid, gid = table[path]
        return os.stat_result((mode, 0, 0, 0, uid, gid, 0, 0, 0, 0))
    return lstat


D = stat.S_IFDIR
L = stat.S_IFLNK | 0o777
HOME = {"/": (D | 0o755, 0, 0), "/home": (D | 0o755, 0, 0), "/home/jupyter": (D | 0o755, 1000, 1000),
        "/home/jupyter/data": (D | 0o755, 1000, 1000)}


def test_dest_below_the_owners_home_is_fine():
    assert g.dest_problem("/home/jupyter/data/cifar10", 1000, 1000, lstat=fake_lstat(HOME)) is None


def test_symlinked_dest_is_refused():
    table = dict(HOME, **{"/home/jupyter/data/cifar10": (L, 1000, 1000)})
    why = g.dest_problem("/home/jupyter/data/cifar10", 1000, 1000, lstat=fake_lstat(table))
    assert "symlink at /home/jupyter/data/cifar10" in why


def test_symlinked_parent_is_refused():
    table = dict(HOME, **{"/home/jupyter/data": (L, 1000, 1000)})
    assert "symlink at /home/jupyter/data" in g.dest_problem("/home/jupyter/data/x", 1000, lstat=fake_lstat(table))


def test_home_of_someone_else_is_refused():
    if ME == 1000:
        pytest.skip("the test user is uid 1000, trusted as the one running the check")
    why = g.dest_problem("/home/jupyter/data/x", 0, lstat=fake_lstat(HOME))  # the pull's owner is root
    assert "owned by uid 1000" in why and "/home/jupyter" in why


@pytest.mark.parametrize("mode,uid,gid,ok", [
    (0o777, 0, 0, False), (0o1777, 0, 0, True), (0o1777, 1000, 1000, False), (0o775, 0, 0, True),
    (0o775, 0, 1000, True), (0o775, 0, 50, False), (0o755, 50, 0, False), (0o755, 1000, 1000, True),
])
def test_writable_components(mode, uid, gid, ok):
    table = dict(HOME, **{"/srv": (D | mode, uid, gid)})
    why = g.dest_problem("/srv/data", 1000, 1000, lstat=fake_lstat(table))
    assert (why is None) == ok, why


def test_file_in_the_way_and_dotdot():
    table = dict(HOME, **{"/srv": (stat.S_IFREG | 0o644, 0, 0)})
    assert "not a directory" in g.dest_problem("/srv/data", lstat=fake_lstat(table))
    assert "'..'" in g.dest_problem("/srv/../etc/x", lstat=fake_lstat(table))


def test_real_symlink_is_seen_in_a_tmp_tree(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "data").symlink_to(tmp_path / "target")
    why = g.dest_problem(str(tmp_path / "home" / "data" / "cifar10"), ME, MYGID)
    assert "symlink at %s" % (tmp_path / "home" / "data") in why


# ---- ownership walk -------------------------------------------------------------------------
def test_chown_walk_never_follows_symlinks(open_tmp_path, monkeypatch):
    dest = open_tmp_path / "dest"
    outside = open_tmp_path / "outside"
    (dest / "a" / "b").mkdir(parents=True)
    (dest / "a" / "b" / "f.txt").write_text("x")
    outside.mkdir()
    (outside / "victim").write_text("v")
    (dest / "link").symlink_to(outside)
    (dest / "a" / "flink").symlink_to(outside / "victim")
    calls = []
    real_chown, real_fchown = os.chown, os.fchown

    def spy_chown(path, uid, gid, *, dir_fd=None, follow_symlinks=True):
        assert follow_symlinks is False and dir_fd is not None
        calls.append(("chown", path))
        return real_chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def spy_fchown(fd, uid, gid):
        calls.append(("fchown", os.readlink("/proc/self/fd/%d" % fd)))
        return real_fchown(fd, uid, gid)

    monkeypatch.setattr(os, "chown", spy_chown)
    monkeypatch.setattr(os, "fchown", spy_fchown)

    def walk():  # as nobody when the suite runs as root (tests/support/unprivileged.py)
        changed, refused = g.chown_inside(str(dest), [
            "a/b/f.txt", "link/victim", "//x/sub/f.txt", "../outside/victim", "a/flink", "a/b/../../../outside",
        ], os.getuid(), os.getgid())
        assert changed == ["a", "a/b", "a/b/f.txt", "a/flink"]
        assert [r for r, _ in refused] == ["link/victim", "//x/sub/f.txt", "../outside/victim",
                                           "a/b/../../../outside"]
        touched = [p for kind, p in calls if kind == "fchown"]
        assert all(p.startswith(str(dest) + "/") for p in touched), touched
        assert ("chown", "flink") in calls  # the link itself (lchown), never its target

    run_unprivileged(open_tmp_path, walk)


def test_chown_walk_refuses_a_symlinked_dest(open_tmp_path):
    (open_tmp_path / "real").mkdir()
    (open_tmp_path / "real" / "f").write_text("x")
    (open_tmp_path / "dest").symlink_to(open_tmp_path / "real")

    def walk():
        with pytest.raises(OSError):
            g.chown_inside(str(open_tmp_path / "dest"), ["f"], os.getuid(), os.getgid())

    run_unprivileged(open_tmp_path, walk)


# ---- the module, with gcloud against fake-gcs-server (skips without gcloud) ------------------
GCLOUD = __import__("shutil").which("gcloud")
needs_gcloud = pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed on this machine")


class _MemGcs:
    """fake-gcs-server with its memory backend: the filesystem backend cleans object names
    (``data/../x`` becomes ``x``), the memory one keeps them as a bucket writer sent them."""

    def __init__(self, url):
        self.http_url = url


@pytest.fixture(scope="module")
def gcs():
    import json
    import subprocess
    import time
    import urllib.request
    from tests.support.fakegcs import fake_gcs_binary, free_port
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                             "-backend", "memory", "-public-host", f"127.0.0.1:{port}", "-external-url", url,
                             "-log-level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/storage/v1/b", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        urllib.request.urlopen(urllib.request.Request(
            url + "/storage/v1/b", data=json.dumps({"name": "bkt"}).encode(), method="POST",
            headers={"Content-Type": "application/json"}), timeout=10)
        server = _MemGcs(url)
        upload(server, "data/ok.txt", b"fine\n")
        yield server
    finally:
        proc.terminate()
        proc.wait(10)


def upload(gcs, name, data=b"hostile\n"):
    import urllib.parse
    import urllib.request
    url = (f"{gcs.http_url}/upload/storage/v1/b/bkt/o?uploadType=media&name="
           + urllib.parse.quote(name, safe=""))
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def delete(gcs, name):
    import urllib.parse
    import urllib.request
    url = f"{gcs.http_url}/storage/v1/b/bkt/o/" + urllib.parse.quote(name, safe="")
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30):
        pass


def run(gcs, dest, tmp_path, **args):
    from tests.unit.test_gcs_pull_gcloud import run_module
    return run_module(gcs, dest, tmp_path, exclude=[], **args)


@needs_gcloud
def test_module_refuses_a_symlinked_dest(gcs, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "dest").symlink_to(real)
    res = run(gcs, tmp_path / "dest", tmp_path)
    assert res["failed"] and res["error_kind"] == "unsafe_dest", res
    assert "symlink at %s" % (tmp_path / "dest") in res["msg"] and "gs://bkt/data" in res["msg"]
    assert not any(real.iterdir())


@needs_gcloud
@pytest.mark.parametrize("name", ["data/../escape1.txt", "data///x/sub/f.txt"])
def test_module_refuses_hostile_object_names(gcs, tmp_path, name):
    dest = tmp_path / "d" / "dest"
    dest.mkdir(parents=True)
    upload(gcs, name)
    try:
        res = run(gcs, dest, tmp_path)
    finally:
        delete(gcs, name)
    assert res.get("failed") and res["error_kind"] == "unsafe_object_name", (
        res.get("copied"),
        res.get("msg"),
        list(dest.parent.rglob("*")),
    )
    assert repr("gs://bkt/" + name) in res["msg"]
    assert not any(dest.iterdir())
    assert not (dest.parent / "escape1.txt").exists() and not (tmp_path / "x").exists()


@needs_gcloud
def test_module_refuses_a_symlink_planted_inside_dest(gcs, tmp_path):
    dest = tmp_path / "d" / "dest"
    elsewhere = tmp_path / "elsewhere"
    dest.mkdir(parents=True)
    elsewhere.mkdir()
    (dest / "sub").symlink_to(elsewhere)
    upload(gcs, "data/sub/f.txt")
    try:
        res = run(gcs, dest, tmp_path, owner=__import__("pwd").getpwuid(ME).pw_name)
    finally:
        delete(gcs, "data/sub/f.txt")
    assert res.get("failed") and res["error_kind"] == "unsafe_object_name", res
    assert "symlink sub inside dest" in res["msg"]
    assert not any(elsewhere.iterdir()) and not (dest / "ok.txt").exists()


@needs_gcloud
def test_module_pulls_and_owns_ordinary_names(gcs, tmp_path):
    dest = tmp_path / "d" / "dest"
    dest.mkdir(parents=True)
    res = run(gcs, dest, tmp_path, owner=__import__("pwd").getpwuid(ME).pw_name)
    assert res["changed"] and res["copied"] == ["ok.txt"], res
    assert (dest / "ok.txt").stat().st_uid == ME
