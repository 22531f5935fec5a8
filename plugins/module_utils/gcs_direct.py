# -*- coding: utf-8 -*-
"""The gcs_rsync module's own download: objects straight from the Cloud Storage JSON API.

Used for a first pull, into an empty directory, when the module has already listed every object
from the JSON API (with an emulator endpoint, or on GCE with the VM service account's token).
Nothing needs comparing then, and starting `gcloud storage` costs about a second of CPU before it
moves a byte, as long as the whole copy of a small dataset. Later pulls, which must compare what
is there, stay with the tool.

What is written matches what `gcloud storage rsync` writes: the same paths, file modes from the
umask, and each file's modification time from the object's ``goog-reserved-file-mtime`` metadata
or else its creation time, so the tool's next rsync (by size and mtime, or by checksum) finds
nothing to copy. Every object is fetched at the generation that was listed and checked against
its stored md5 before it is renamed into place; a mismatch deletes the partial copy.

No Ansible imports: unit-tested directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import calendar
import hashlib
import http.client
import os
import queue
import ssl
import tempfile
import threading
import time
from urllib.parse import quote, urlsplit
from urllib.request import getproxies, proxy_bypass

MTIME_KEY = "goog-reserved-file-mtime"
# Fields of the listing the download needs (the module asks for these and no more).
LIST_FIELDS = "items(name,size,md5Hash,generation,timeCreated,contentEncoding,metadata),nextPageToken"

_CHUNK = 1 << 20
# One stream per object: with objects this large, gcloud's parallel sliced download is faster on a
# real network than the seconds of tool start-up it costs, so such a pull is left to the tool.
LARGE_OBJECT = 128 << 20
_RETRY_STATUS = (408, 429, 500, 502, 503, 504)


def object_mtime(item):
    """The mtime gcloud storage gives the local copy: the object's ``goog-reserved-file-mtime``
    metadata when it is a valid integer, else its creation time (whole seconds, UTC)."""
    custom = (item.get("metadata") or {}).get(MTIME_KEY)
    if custom is not None:
        try:
            return int(custom)
        except (TypeError, ValueError):
            pass
    created = item.get("timeCreated")
    if not created:
        return None
    # RFC 3339 as the API writes it: 2026-12-03T10:11:12.345Z
    stamp = created.rstrip("Z").split(".")[0]
    try:
        return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def entry(item, prefix):
    """One listed object as the download needs it."""
    return {
        "rel": item["name"][len(prefix):],
        "name": item["name"],
        "size": int(item.get("size", 0)),
        "md5": item.get("md5Hash"),
        "generation": item.get("generation"),
        "mtime": object_mtime(item),
        "encoding": item.get("contentEncoding") or "",
    }


def direct_problem(entries, base):
    """Why these objects are left to the tool, or None when the module can fetch them itself.

    Left to the tool: objects without an md5 (composite objects carry only a crc32c, which the
    Python standard library cannot compute), gzip-encoded objects (the tool decompresses them),
    "folder" placeholders and an object named like the prefix itself, objects of LARGE_OBJECT or
    more (the tool slices them), and a proxy configured for the endpoint (the tool knows proxies;
    this download does not).
    """
    for e in entries:
        if not e["md5"]:
            return "%s has no md5 (a composite object)" % e["name"]
        if "gzip" in e["encoding"].lower():
            return "%s is gzip-encoded" % e["name"]
        if not e["rel"] or e["rel"].endswith("/"):
            return "%s is a folder placeholder or src itself" % e["name"]
        if not e["generation"] or e["mtime"] is None:
            return "%s has no generation or creation time" % e["name"]
        if e["size"] >= LARGE_OBJECT:
            return "%s is %d MiB, large enough for gcloud's sliced download" % (e["name"], e["size"] >> 20)
    host = urlsplit(base).hostname or ""
    if urlsplit(base).scheme in getproxies() and not proxy_bypass(host):
        return "a proxy is configured for %s" % base
    return None


class Fetcher(object):
    """Download entries into dest with `threads` keep-alive connections, largest first."""

    def __init__(self, base, bucket, dest, headers=None, cafile=None, threads=8, retries=6,
                 log_fd=None, refresh_token=None, timeout=60):
        parts = urlsplit(base.rstrip("/"))
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.path = parts.path.rstrip("/")
        self.bucket = bucket
        self.dest = dest
        self.headers = dict(headers or {})
        self.context = ssl.create_default_context(cafile=cafile) if self.https else None
        self.threads = max(1, threads)
        self.retries = max(0, retries)
        self.log_fd = log_fd
        self.refresh_token = refresh_token
        self.timeout = timeout
        self.lock = threading.Lock()
        self.copied, self.errors = [], []
        self.nbytes = 0
        mask = os.umask(0)
        os.umask(mask)
        self.file_mode = 0o666 & ~mask

    def _connect(self):
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _log(self, text):
        if self.log_fd is not None:
            with self.lock:
                os.write(self.log_fd, text.encode("utf-8", "replace"))

    def run(self, entries):
        """Fetch every entry; ``{'copied': [rel...], 'bytes': n, 'errors': [(rel, kind, text)]}``."""
        # Who actually writes (the module's child has dropped to the pull's owner by now).
        self._log("=== writing as uid %d gid %d\n" % (os.geteuid(), os.getegid()))
        work = queue.Queue()
        for e in sorted(entries, key=lambda e: -e["size"]):
            work.put(e)
        workers = [threading.Thread(target=self._worker, args=(work,)) for _ in range(min(self.threads, len(entries)))]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        return {"copied": self.copied, "bytes": self.nbytes, "errors": self.errors}

    def _worker(self, work):
        conn = [None]
        buf = bytearray(_CHUNK)
        try:
            while not self.errors:  # the first error stops the pull: nothing new is started
                try:
                    e = work.get_nowait()
                except queue.Empty:
                    return
                kind, text = self._fetch(conn, e, buf)
                with self.lock:
                    if kind:
                        self.errors.append((e["rel"], kind, text))
                    else:
                        self.copied.append(e["rel"])
                        self.nbytes += e["size"]
        finally:
            if conn[0] is not None:
                conn[0].close()

    def _fetch(self, conn, e, buf):
        """``(None, None)`` once e is in place, else ``(error kind, text)``."""
        url = "%s/storage/v1/b/%s/o/%s?alt=media&generation=%s" % (
            self.path, quote(self.bucket, safe=""), quote(e["name"], safe=""), e["generation"])
        target = os.path.join(self.dest, e["rel"])
        refreshed = False
        attempt = 0
        while True:
            try:
                if conn[0] is None:
                    conn[0] = self._connect()
                # Accept-Encoding: identity - the stored bytes, which the md5 describes.
                conn[0].request("GET", url, headers=dict(self.headers, **{"Accept-Encoding": "identity"}))
                resp = conn[0].getresponse()
                if resp.status == 200:
                    return self._store(resp, e, target, buf)
                # Read whole, so the connection is ready for its next request.
                body = resp.read().decode("utf-8", "replace")
                if resp.status == 401 and self.refresh_token and not refreshed:
                    refreshed = True
                    token = self.refresh_token()
                    if token:
                        self.headers["Authorization"] = "Bearer " + token
                        continue
                if resp.status in _RETRY_STATUS and attempt < self.retries:
                    raise _RetryError("HTTP %d" % resp.status)
                return _http_error(resp.status, e, body)
            except ssl.CertificateError as exc:
                return "tls", "%s: %s" % (e["name"], exc)
            except (_RetryError, OSError, http.client.HTTPException) as exc:
                if conn[0] is not None:
                    conn[0].close()
                    conn[0] = None
                if isinstance(exc, _DiscardError):
                    return exc.kind, exc.text
                if attempt >= self.retries:
                    return "connection", "%s: %s (after %d retries)" % (e["name"], exc or type(exc).__name__, attempt)
                time.sleep(min(2 ** attempt, 16) * 0.5)
                attempt += 1

    def _store(self, resp, e, target, buf):
        view = memoryview(buf)
        try:
            digest = hashlib.md5(usedforsecurity=False)  # an integrity check; allowed under FIPS
        except TypeError:  # Python < 3.9
            digest = hashlib.md5()
        got = 0
        tmp = None
        try:
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".gcs_pull",
                                           prefix="." + os.path.basename(target)[:200] + ".")
                out = os.fdopen(fd, "wb", buffering=0)
            except OSError as exc:
                raise _DiscardError("local_write", "%s: %s" % (target, exc)) from exc
            with out:
                while True:
                    n = resp.readinto(buf)  # a network error here is retried by the caller
                    if not n:
                        break
                    digest.update(view[:n])
                    try:
                        out.write(view[:n])
                    except OSError as exc:
                        raise _DiscardError("local_write", "%s: %s" % (target, exc)) from exc
                    got += n
            md5 = base64.b64encode(digest.digest()).decode("ascii")
            if got != e["size"] or md5 != e["md5"]:
                raise _DiscardError("checksum", "%s: %d bytes with md5 %s, the bucket says %d bytes with md5 %s"
                                          % (e["name"], got, md5, e["size"], e["md5"]))
            try:
                os.chmod(tmp, self.file_mode)
                os.utime(tmp, (e["mtime"], e["mtime"]))
                os.replace(tmp, target)
            except OSError as exc:
                raise _DiscardError("local_write", "%s: %s" % (target, exc)) from exc
            tmp = None
        finally:
            if tmp is not None:
                _unlink(tmp)
        self._log("Copying gs://%s/%s to file://%s\n" % (self.bucket, e["name"], target))
        return None, None


class _RetryError(Exception):
    pass


class _DiscardError(OSError):
    """A download that completed but must not be kept (never retried)."""

    def __init__(self, kind, text):
        OSError.__init__(self, text)
        self.kind, self.text = kind, text


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _http_error(status, e, body):
    if status in (401, 403):
        return "permission", "%s: %d Forbidden/Unauthorized: %s" % (e["name"], status, body.strip()[:300])
    if status == 404:
        return "changed_during_pull", ("%s (generation %s) is gone: the object was replaced or deleted in the "
                                       "bucket after it was listed; run the pull again" % (e["name"], e["generation"]))
    return "unknown", "%s: HTTP %d: %s" % (e["name"], status, body.strip()[:300])


# What each error kind of the download means, in the words the module's message uses.
DIRECT_EXPLAIN = {
    "checksum": "a downloaded object did not match its stored checksum (md5): the object in the "
                "bucket may be corrupt, or it was damaged in transit. The partial local copy was "
                "deleted; nothing corrupt was kept",
    "permission": "permission denied: the VM's service account (or the configured credentials) "
                  "lacks storage.objects.get on this bucket - grant it roles/storage.objectViewer "
                  "and check the VM's access scopes",
    "changed_during_pull": "an object changed in the bucket while it was being pulled",
    "local_write": "a file could not be written under dest (disk full, or a path its owner cannot write)",
    "tls": "TLS verification failed talking to the storage endpoint (wrong CA for the endpoint?)",
    "connection": "the storage endpoint could not be reached or kept failing",
}
