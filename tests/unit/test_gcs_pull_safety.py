"""Hostile inputs for gcs_pull: symlinked or foreign-owned dest, object names that leave dest.
The checks run as the test's own user inside its tmp dir; the module runs as nobody when the
suite is root (test_gcs_pull_gcloud.run_module); symlinks only ever point at other directories
of that tmp dir."""

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
from tests.support.unprivileged import NOBODY, run_unprivileged  # noqa: E402
from conftest import NO_GCLOUD  # noqa: E402

ME = os.getuid()
MYGID = os.getgid()
# Who the module runs as in these tests (run_module drops root to nobody).
RUNNER = NOBODY if ME == 0 else ME


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


# ---- creating dest: descriptors, no-follow, checked as opened ------------------------------
def test_make_dest_creates_parents_with_owner_and_mode(open_tmp_path):
    dest = open_tmp_path / "home" / "data" / "cifar10"
    (open_tmp_path / "home").mkdir()

    def create():  # as nobody when the suite is root: mkdir/chown/chmod meet permission checks
        me, group = os.getuid(), os.getgid()
        assert g.make_dest(str(dest), me, group, 0o750, owner_uid=me) is True
        modes = [stat.S_IMODE(os.stat(p).st_mode) for p in (dest.parent, dest)]
        assert modes == [0o750, 0o750] and os.stat(dest).st_uid == me
        assert g.make_dest(str(dest), me, group, 0o750, owner_uid=me) is False  # idempotent
        os.chmod(dest, 0o777)
        assert g.make_dest(str(dest), me, group, 0o750, owner_uid=me, check=True) is True
        assert stat.S_IMODE(os.stat(dest).st_mode) == 0o777  # check mode changes nothing
        assert g.make_dest(str(dest), me, group, 0o750, owner_uid=me) is True
        assert stat.S_IMODE(os.stat(dest).st_mode) == 0o750

    run_unprivileged(open_tmp_path, create)


def test_make_dest_never_follows_a_component_swapped_after_the_check(open_tmp_path):
    """The check passes, then the owner of a parent swaps it for a symlink: make_dest (what root
    runs next) refuses at that component and creates nothing at the link's target."""
    home = open_tmp_path / "home"
    (home / "data").mkdir(parents=True)
    target = open_tmp_path / "target"      # stands in for /etc: in the temp tree only
    target.mkdir()

    def race():
        me = os.getuid()
        dest = str(home / "data" / "cifar10")
        assert g.dest_problem(dest, me, os.getgid()) is None
        os.rename(home / "data", home / "data.moved")
        os.symlink(target, home / "data")
        with pytest.raises(OSError, match="symlink or non-directory at %s" % (home / "data")):
            g.make_dest(dest, me, os.getgid(), 0o755, owner_uid=me)
        assert list(target.iterdir()) == []

    run_unprivileged(open_tmp_path, race)


def test_make_dest_checks_each_component_as_it_opens_it(open_tmp_path):
    (open_tmp_path / "shared").mkdir()

    def walk():
        os.chmod(open_tmp_path / "shared", 0o777)   # writable by all, no sticky bit
        with pytest.raises(OSError, match="writable by any user"):
            g.make_dest(str(open_tmp_path / "shared" / "dest"), os.getuid(), os.getgid(), 0o755)
        assert not (open_tmp_path / "shared" / "dest").exists()

    run_unprivileged(open_tmp_path, walk)


# ---- the module, with gcloud against fake-gcs-server (skips without gcloud) ------------------
GCLOUD = __import__("shutil").which("gcloud")
needs_gcloud = pytest.mark.skipif(GCLOUD is None, reason=NO_GCLOUD)


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
def test_module_refuses_a_symlinked_dest(gcs, open_tmp_path):
    tmp_path = open_tmp_path
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "dest").symlink_to(real)
    res = run(gcs, tmp_path / "dest", tmp_path)
    assert res["failed"] and res["error_kind"] == "unsafe_dest", res
    assert "symlink at %s" % (tmp_path / "dest") in res["msg"] and "gs://bkt/data" in res["msg"]
    assert not any(real.iterdir())


@needs_gcloud
@pytest.mark.parametrize("name", ["data/../escape1.txt", "data///x/sub/f.txt"])
def test_module_refuses_hostile_object_names(gcs, open_tmp_path, name):
    tmp_path = open_tmp_path
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
def test_module_refuses_a_symlink_planted_inside_dest(gcs, open_tmp_path):
    tmp_path = open_tmp_path
    dest = tmp_path / "d" / "dest"
    elsewhere = tmp_path / "elsewhere"
    dest.mkdir(parents=True)
    elsewhere.mkdir()
    (dest / "sub").symlink_to(elsewhere)
    upload(gcs, "data/sub/f.txt")
    try:
        res = run(gcs, dest, tmp_path, owner=__import__("pwd").getpwuid(RUNNER).pw_name)
    finally:
        delete(gcs, "data/sub/f.txt")
    assert res.get("failed") and res["error_kind"] == "unsafe_object_name", res
    assert "symlink sub inside dest" in res["msg"]
    assert not any(elsewhere.iterdir()) and not (dest / "ok.txt").exists()


@needs_gcloud
def test_module_pulls_and_owns_ordinary_names(gcs, open_tmp_path):
    tmp_path = open_tmp_path
    dest = tmp_path / "d" / "dest"
    dest.mkdir(parents=True)
    res = run(gcs, dest, tmp_path, owner=__import__("pwd").getpwuid(RUNNER).pw_name)
    assert res["changed"] and res["copied"] == ["ok.txt"], res
    assert (dest / "ok.txt").stat().st_uid == RUNNER
