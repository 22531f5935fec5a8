"""gcs_rsync's object listing straight from the storage JSON API (its names are what the safety
checks read before anything is copied), against a small local server that pages its answers."""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.support.httpserver import serve

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))

import gcs_direct  # noqa: E402
import gcs_rsync_common  # noqa: E402

sys.modules["ansible.module_utils.gcs_rsync_common"] = gcs_rsync_common
sys.modules["ansible.module_utils.gcs_direct"] = gcs_direct
_spec = importlib.util.spec_from_file_location("gcs_rsync", REPO / "plugins" / "modules" / "gcs_rsync.py")
gcs_rsync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gcs_rsync)

OBJECTS = {
    "data/a.txt": 3,
    "data/sub/b c.bin": 1048576,
    "data/odd\nname": 7,
    "data/../escape": 1,
    "data/": 0,
    "database.txt": 5,  # shares the prefix's letters, not its folder
    "other/x": 9,
    "/lead/x": 2,  # a leading slash is part of the name
}


class _Handler(BaseHTTPRequestHandler):
    page_size = 2
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        type(self).requests.append(self.path)
        if url.path != "/storage/v1/b/bkt/o":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error": {"code": 404, "message": "The specified bucket does not exist."}}')
            return
        prefix = query.get("prefix", [""])[0]
        names = sorted(n for n in OBJECTS if n.startswith(prefix))
        start = int(query.get("pageToken", ["0"])[0])
        page = names[start : start + self.page_size]
        doc = {"items": [{"name": n, "size": str(OBJECTS[n])} for n in page]}
        if start + self.page_size < len(names):
            doc["nextPageToken"] = str(start + self.page_size)
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    with serve(_Handler) as url:
        yield url


def params(src, endpoint):
    return {"src": src, "endpoint": endpoint, "ca_file": None}


def listing(p):
    """``{relative name: size}`` as the module lists it from the API, or None (the tool lists)."""
    entries = gcs_rsync._api_listing(p, gcs_rsync._api_access(p))
    return None if entries is None else {rel: e["size"] for rel, e in entries.items()}


def test_every_page_is_read_and_names_are_kept_exactly(server):
    _Handler.requests.clear()
    sizes = listing(params("gs://bkt/data", server))
    assert sizes == {"a.txt": 3, "sub/b c.bin": 1048576, "odd\nname": 7, "../escape": 1, "": 0}
    assert len(_Handler.requests) == 3  # five objects, two per page
    assert all("prefix=data%2F" in r for r in _Handler.requests)


def test_the_bucket_root_lists_every_object(server):
    sizes = listing(params("gs://bkt", server))
    assert sizes == OBJECTS


def test_a_trailing_slash_names_the_same_prefix(server):
    assert listing(params("gs://bkt/data/", server)) == listing(params("gs://bkt/data", server))


def test_an_empty_segment_is_not_dropped(server):
    """gs://bkt//lead names the objects under "/lead/", as the tool's own listing does."""
    assert listing(params("gs://bkt//lead", server)) == {"x": 2}
    assert listing(params("gs://bkt/lead", server)) == {}


def test_an_error_leaves_the_listing_to_the_tool(server):
    # The tool's own listing then fails with the words classify_error turns into a message.
    assert listing(params("gs://missing-bkt/data", server)) is None


def test_no_endpoint_and_no_metadata_server_leaves_the_listing_to_the_tool(monkeypatch):
    monkeypatch.setattr(gcs_rsync, "_metadata_token", lambda: None)
    assert listing(params("gs://bkt/data", "")) is None


def test_on_gce_the_service_account_token_is_sent(server, monkeypatch):
    seen = {}
    monkeypatch.setattr(gcs_rsync, "_metadata_token", lambda: "tok-123")
    monkeypatch.setattr(gcs_rsync, "_GCS_API", server)
    real_urlopen = gcs_rsync.urlopen

    def spy(req, **kwargs):
        seen["auth"] = req.get_header("Authorization")
        return real_urlopen(req, **kwargs)

    monkeypatch.setattr(gcs_rsync, "urlopen", spy)
    assert listing(params("gs://bkt/data", "")) is not None
    assert seen["auth"] == "Bearer tok-123"


def test_the_listing_feeds_the_name_check(server):
    """The hostile name in the API's answer stops the pull before the tool runs."""

    class RefusedError(Exception):
        pass

    class Module:
        def fail_json(self, **kw):
            raise RefusedError(kw)

    p = params("gs://bkt/data", server)
    rc, _out, sizes, _entries = gcs_rsync._list_objects(Module(), "gcloud", "/nonexistent/gcloud", p, {}, None,
                                                        gcs_rsync._api_access(p))
    assert rc == 0
    with pytest.raises(RefusedError) as stop:
        gcs_rsync._check_names(Module(), {"src": "gs://bkt/data", "dest": "/nonexistent/dest"}, sizes)
    assert stop.value.args[0]["error_kind"] == "unsafe_object_name"
    assert "'gs://bkt/data/../escape'" in stop.value.args[0]["msg"]


def test_an_https_endpoint_is_verified_with_its_ca_file(tmp_path):
    """The molecule scenario's path (gsutil over https with the emulator's own CA): without the CA
    the certificate is not trusted, and the tool lists instead."""
    from tests.support.fakegcs import FakeGcs

    seed = tmp_path / "seed" / "bkt" / "data"
    seed.mkdir(parents=True)
    (seed / "a.txt").write_text("x")
    with FakeGcs(tmp_path / "srv", scheme="https", data_dir=tmp_path / "seed") as gcs:
        trusted = {"src": "gs://bkt/data", "endpoint": gcs.https_url, "ca_file": str(gcs.ca_file)}
        assert listing(trusted) == {"a.txt": 1}
        assert listing(dict(trusted, ca_file=None)) is None
