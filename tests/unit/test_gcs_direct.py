"""gcs_rsync's own download (module_utils/gcs_direct.py): which pulls it takes, the mtimes it
gives, and what it does when the server misbehaves, against a small local server.

The download writes, renames and deletes files: every run of it here is in a temporary tree and,
when the suite is root, in a child that has dropped to nobody (tests/support/unprivileged.py).
What root does with it (drop to the pull's owner first) is tested in a container: molecule/gcs_pull."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.support.httpserver import serve
from tests.support.unprivileged import NOBODY, run_unprivileged

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))

import gcs_direct  # noqa: E402


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def item(name: str, data: bytes = b"x", **extra) -> dict:
    doc = {"name": name, "size": str(len(data)), "md5Hash": md5(data), "generation": "7",
           "timeCreated": "2026-11-30T10:20:30.456Z"}
    doc.update(extra)
    return doc


def test_mtime_comes_from_the_objects_metadata_then_its_creation_time():
    assert gcs_direct.object_mtime(item("a", metadata={"goog-reserved-file-mtime": "1700000000"})) == 1700000000
    created = gcs_direct.object_mtime(item("a"))
    assert created == 1796034030  # 2026-11-30T10:20:30Z, whole seconds as gcloud stores it
    assert gcs_direct.object_mtime(item("a", metadata={"goog-reserved-file-mtime": "soon"})) == created
    assert gcs_direct.object_mtime({"name": "a"}) is None


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (item("data/c.bin", md5Hash=None, crc32c="AAAAAA=="), "no md5"),
        (item("data/z.csv", contentEncoding="gzip"), "gzip-encoded"),
        (item("data/folder/"), "folder placeholder"),
        (item("data/", data=b""), "folder placeholder"),
        (item("data/t", timeCreated=None), "no generation or creation time"),
        (dict(item("data/huge.bin"), size=str(128 << 20)), "large enough for gcloud's sliced download"),
    ],
)
def test_what_the_download_leaves_to_the_tool(doc, why):
    entries = [gcs_direct.entry(dict(item("data/ok.bin"), size=str((128 << 20) - 1)), "data/"),
               gcs_direct.entry(doc, "data/")]
    assert why in gcs_direct.direct_problem(entries, "http://127.0.0.1:1")
    assert gcs_direct.direct_problem(entries[:1], "http://127.0.0.1:1") is None


def test_a_proxy_for_the_endpoint_leaves_the_pull_to_the_tool(monkeypatch):
    entries = [gcs_direct.entry(item("data/ok.bin"), "data/")]
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert "proxy" in gcs_direct.direct_problem(entries, "https://storage.googleapis.com")
    monkeypatch.setenv("no_proxy", "storage.googleapis.com")
    assert gcs_direct.direct_problem(entries, "https://storage.googleapis.com") is None


BLOBS = {"data/ok.bin": os.urandom(300_000), "data/sub/flaky.bin": b"eventually", "data/bad.bin": b"as stored",
         "data/gone.bin": b"replaced", "data/auth.bin": b"needs a fresh token"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the download expects
    hits: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        name = urllib.parse.unquote(url.path.split("/o/", 1)[1])
        hits = type(self).hits
        hits[name] = hits.get(name, 0) + 1
        status, body = 200, BLOBS.get(name, b"")
        if query.get("alt") != ["media"] or query.get("generation") != ["7"] or name == "data/gone.bin":
            status, body = 404, b'{"error": {"code": 404}}'
        elif name == "data/sub/flaky.bin" and hits[name] == 1:
            status, body = 503, b"try later"
        elif name == "data/bad.bin":
            body = b"as st0red"  # bit rot under the server: the stored md5 no longer matches
        elif name == "data/auth.bin" and self.headers.get("Authorization") != "Bearer fresh":
            status, body = 401, b'{"error": {"code": 401, "message": "expired"}}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    with serve(_Handler) as url:
        yield url


def fetch(server, tmp_path, names, umask=0o022, **kwargs):
    """The download of `names` into tmp_path/dest, as nobody when the suite is root; returns its
    result with the number of token refreshes it made (`refreshes`)."""
    _Handler.hits.clear()
    entries = [gcs_direct.entry(item(n, BLOBS[n], metadata={"goog-reserved-file-mtime": "1600000000"}), "data/")
               for n in names]
    log = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    refreshes = []
    if kwargs.pop("refresh", False):
        kwargs["refresh_token"] = lambda: refreshes.append(1) or "fresh"

    def download():
        old = os.umask(umask)
        try:
            fetcher = gcs_direct.Fetcher(server, "bkt", str(tmp_path / "dest"), threads=3, retries=2, log_fd=log,
                                         **kwargs)
            return dict(fetcher.run(entries), refreshes=len(refreshes))
        finally:
            os.umask(old)

    try:
        return run_unprivileged(tmp_path, download)
    finally:
        os.close(log)


def leftovers(tmp_path):
    return [p.name for p in (tmp_path / "dest").rglob("*.gcs_pull")]


def test_objects_land_whole_with_the_umask_mode_and_the_objects_mtime(server, open_tmp_path):
    tmp_path = open_tmp_path
    out = fetch(server, tmp_path, ["data/ok.bin", "data/sub/flaky.bin"], umask=0o027)
    assert out["errors"] == [] and sorted(out["copied"]) == ["ok.bin", "sub/flaky.bin"]
    assert out["bytes"] == len(BLOBS["data/ok.bin"]) + len(b"eventually")
    got = tmp_path / "dest" / "ok.bin"
    assert got.read_bytes() == BLOBS["data/ok.bin"]
    assert stat.S_IMODE(got.stat().st_mode) == 0o640 and int(got.stat().st_mtime) == 1600000000
    assert got.stat().st_uid == (NOBODY if os.geteuid() == 0 else os.geteuid()), "written by nobody, not root"
    assert (tmp_path / "dest" / "sub" / "flaky.bin").read_bytes() == b"eventually"
    assert _Handler.hits["data/sub/flaky.bin"] == 2, "a 503 is retried"
    log = (tmp_path / "log").read_text()
    assert "Copying gs://bkt/data/ok.bin to file://%s" % got in log
    writer = (NOBODY, NOBODY) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    assert "=== writing as uid %d gid %d\n" % writer in log
    assert leftovers(tmp_path) == []


def test_a_body_that_does_not_match_its_md5_is_not_kept(server, open_tmp_path):
    tmp_path = open_tmp_path
    out = fetch(server, tmp_path, ["data/bad.bin"])
    assert [e[:2] for e in out["errors"]] == [("bad.bin", "checksum")], out
    assert "the bucket says 9 bytes with md5 %s" % md5(b"as stored") in out["errors"][0][2]
    assert not (tmp_path / "dest" / "bad.bin").exists() and leftovers(tmp_path) == []
    assert _Handler.hits["data/bad.bin"] == 1, "a checksum mismatch is not retried"


def test_an_object_replaced_after_the_listing_is_named(server, open_tmp_path):
    tmp_path = open_tmp_path
    out = fetch(server, tmp_path, ["data/gone.bin"])
    assert [e[:2] for e in out["errors"]] == [("gone.bin", "changed_during_pull")]
    assert "generation 7" in out["errors"][0][2]


def test_an_expired_token_is_refreshed_once(server, open_tmp_path):
    tmp_path = open_tmp_path
    denied = fetch(server, tmp_path, ["data/auth.bin"], headers={"Authorization": "Bearer old"})
    assert [e[:2] for e in denied["errors"]] == [("auth.bin", "permission")]
    out = fetch(server, tmp_path, ["data/auth.bin"], headers={"Authorization": "Bearer old"}, refresh=True)
    assert out["errors"] == [] and out["refreshes"] == 1
    assert (tmp_path / "dest" / "auth.bin").read_bytes() == b"needs a fresh token"


def test_an_unreachable_endpoint_fails_after_its_retries(open_tmp_path):
    from tests.support.fakegcs import free_port

    entries = [gcs_direct.entry(item("data/ok.bin"), "data/")]
    url = "http://127.0.0.1:%d" % free_port()
    fetcher = gcs_direct.Fetcher(url, "bkt", str(open_tmp_path), retries=1)
    out = run_unprivileged(open_tmp_path, lambda: fetcher.run(entries))
    assert [e[1] for e in out["errors"]] == ["connection"] and "after 1 retries" in out["errors"][0][2]
    assert json.dumps(out)  # what the child process sends back to the module
