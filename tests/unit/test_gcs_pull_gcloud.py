"""The gcs_rsync module's `gcloud storage rsync` path, on this machine, against fake-gcs-server.

The Molecule scenario's container has no gcloud (Google's apt repository is out of reach), so it
exercises the gsutil path. Here the module runs on the controller with the host's gcloud, when
there is one; without it these tests skip. When the suite is root the module runs as nobody in a
temporary tree (run_module).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fakegcs import FakeGcs
from tests.support.unprivileged import NOBODY
from tests.support.unprivileged import _give_tree_to as give_tree_to
from conftest import NO_GCLOUD

REPO = Path(__file__).resolve().parents[2]
GCLOUD = shutil.which("gcloud")
pytestmark = pytest.mark.skipif(GCLOUD is None, reason=NO_GCLOUD)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    work = tmp_path_factory.mktemp("fakegcs")
    seed = work / "seed" / "bkt" / "data"
    for i in range(20):
        (seed / "small").mkdir(parents=True, exist_ok=True)
        (seed / "small" / f"s{i:02d}.bin").write_bytes(os.urandom(2048))
    (seed / "skip.tmp").write_bytes(b"scratch")
    (seed / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    with FakeGcs(work / "srv", scheme="http", data_dir=work / "seed") as server:
        yield server


def run_module(gcs, dest, tmp_path, check=False, as_root=False, **args):
    """Run the module through `ansible`. When the suite is root, the module itself runs as
    nobody (become su, Debian's python3) in `tmp_path`, a tree handed to nobody first: whatever
    it writes, deletes or re-owns then meets the kernel's permission checks, not root's reach.
    as_root=True keeps root, for the tests of what root does (they use a stand-in tool)."""
    params = {"src": "gs://bkt/data", "dest": str(dest), "tool": "gcloud", "gcloud_path": GCLOUD,
              "endpoint": gcs.http_url if gcs else None, "exclude": ["*.tmp"],
              "log_file": str(tmp_path / "pull.log"), **args}
    env = dict(os.environ, ANSIBLE_LIBRARY=str(REPO / "plugins/modules"),
               ANSIBLE_MODULE_UTILS=str(REPO / "plugins/module_utils"), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), ANSIBLE_NOCOLOR="1")
    cmd = [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
           "-m", "gcs_rsync", "-a", json.dumps(params)]
    if os.geteuid() == 0 and not as_root:
        give_tree_to(tmp_path, NOBODY, NOBODY)
        env.update(ANSIBLE_REMOTE_TMP=str(tmp_path / ".ansible-module"))
        cmd += ["-b", "--become-method", "su", "--become-user", "nobody",
                "-e", json.dumps({"ansible_become_flags": "-s /bin/sh",
                                  "ansible_python_interpreter": "/usr/bin/python3"})]
    else:
        cmd += ["-e", f"ansible_python_interpreter={sys.executable}"]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_gcloud_pull_is_idempotent_and_sees_changes(gcs, open_tmp_path):
    tmp_path = open_tmp_path
    dest = tmp_path / "dest"
    dest.mkdir()
    dry = run_module(gcs, dest, tmp_path, check=True)
    assert dry["tool"] == "json-api", dry
    assert dry["dry_run"] and dry["changed"] and dry["files_copied"] == 21
    assert dry["bytes_copied"] == 20 * 2048 + 3 * 1024 * 1024
    assert not any(dest.iterdir())

    # A first pull into an empty dest: the module's own download (direct), no tool started.
    first = run_module(gcs, dest, tmp_path)
    assert first["tool"] == "json-api" and first["changed"] is True, first
    assert first["files_copied"] == 21 and first["bytes_copied"] == 20 * 2048 + 3 * 1024 * 1024
    assert not (dest / "skip.tmp").exists()
    assert (dest / "big.bin").read_bytes() == gcs.object_path("bkt", "data/big.bin").read_bytes()
    # Written by the unprivileged module, not by root (run_module).
    assert (dest / "big.bin").stat().st_uid == (NOBODY if os.geteuid() == 0 else os.geteuid())

    second = run_module(gcs, dest, tmp_path)
    assert second["tool"] == "gcloud", second
    assert second["changed"] is False and second["files_copied"] == 0 and second["bytes_copied"] == 0

    # Damage the local copy in place (same size): the checksum compare re-fetches it.
    with open(dest / "small" / "s03.bin", "r+b") as fh:
        fh.write(b"\0\0\0\0")
    (dest / "mine.txt").write_text("user data")
    third = run_module(gcs, dest, tmp_path)
    assert third["copied"] == ["small/s03.bin"] and third["changed"] is True
    assert (dest / "mine.txt").read_text() == "user data"  # never deleted unless asked

    pruned = run_module(gcs, dest, tmp_path, delete_extraneous=True)
    assert pruned["deleted"] == ["mine.txt"] and not (dest / "mine.txt").exists()
    assert "Copying gs://bkt/data/big.bin" in (tmp_path / "pull.log").read_text()


def tree(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every path under root: (size, mode, mtime, uid)."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else 0, p.stat().st_mode,
                                       int(p.stat().st_mtime) if p.is_file() else 0, p.stat().st_uid)
            for p in root.rglob("*")}


def test_the_direct_first_pull_writes_what_gcloud_writes(gcs, open_tmp_path):
    """Same paths, sizes, modes, owners and mtimes as a first `gcloud storage rsync`, so the
    tool's later pulls, by size and mtime (checksum=false) or by checksum, copy nothing."""
    tmp_path = open_tmp_path
    by_api, by_tool = tmp_path / "api", tmp_path / "tool"
    by_api.mkdir()
    by_tool.mkdir()
    api = run_module(gcs, by_api, tmp_path)
    tool = run_module(gcs, by_tool, tmp_path, direct=False)
    assert (api["tool"], tool["tool"]) == ("json-api", "gcloud")
    assert api["files_copied"] == tool["files_copied"] == 21 and api["bytes_copied"] == tool["bytes_copied"]
    assert sorted(api["copied"]) == sorted(tool["copied"])
    assert tree(by_api) == tree(by_tool)
    assert not [p for p in by_api.rglob("*") if p.name.endswith(".gcs_pull")]
    by_mtime = run_module(gcs, by_api, tmp_path, checksum=False)
    assert by_mtime["tool"] == "gcloud" and by_mtime["files_copied"] == 0 and not by_mtime["changed"], by_mtime
    log = (tmp_path / "pull.log").read_text()
    assert "Copying gs://bkt/data/big.bin to file://%s/big.bin" % by_api in log


def test_a_dest_with_files_is_left_to_the_tool(gcs, open_tmp_path):
    tmp_path = open_tmp_path
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    res = run_module(gcs, dest, tmp_path)
    assert res["tool"] == "gcloud" and res["files_copied"] == 21, res
    assert (dest / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("direct", [True, False], ids=["json-api", "gcloud"])
def test_gcloud_missing_bucket_and_corrupt_object(gcs, open_tmp_path, direct):
    tmp_path = open_tmp_path
    dest = tmp_path / "d"
    dest.mkdir()
    missing = run_module(gcs, dest, tmp_path, src="gs://no-such-bucket-x/data", direct=direct)
    assert missing["failed"] and missing["error_kind"] == "missing_bucket"
    assert "bucket does not exist" in missing["msg"]

    gcs.corrupt_object("bkt", "data/small/s07.bin", offset=10)
    try:
        bad = run_module(gcs, dest, tmp_path, include=["small/s07.bin"], direct=direct)
    finally:
        gcs.corrupt_object("bkt", "data/small/s07.bin", offset=10)  # flipped back for the next test
    assert bad["failed"] and bad["error_kind"] == "checksum", bad
    assert bad["tool"] == ("json-api" if direct else "gcloud")
    assert "did not match its stored checksum" in bad["msg"]
    assert not (dest / "small" / "s07.bin").exists()
    assert not [p for p in dest.rglob("*") if p.is_file()], "no partial copy is left behind"
