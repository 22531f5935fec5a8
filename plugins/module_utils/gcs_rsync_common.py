# -*- coding: utf-8 -*-
"""Pure helpers for the gcs_rsync module: gs:// URL checks, include/exclude globs, rsync output.

No Ansible imports, so they are unit-tested directly and shared by the module, the role's
validation (same regular expression) and the benchmark.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import re
import stat as st

# What `gs://BUCKET[/PREFIX]` may look like. The role's `assert` uses this same expression
# (roles/gcs_pull/vars/main.yml, checked equal by a unit test) so a typo fails before any
# host is touched; `url_problem()` then says precisely what is wrong.
#  - bucket: 3-63 characters per dot-separated part, 222 in all; lowercase letters, digits,
#    "-", "_", "."; starts and ends with a letter or digit; not an IP address; no "goog"
#    prefix and no "google" in it (Cloud Storage bucket naming rules);
#  - prefix: anything but CR/LF and the wildcard characters rsync would not expand.
_PART = r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?"
GS_URL_REGEX = (
    r"^gs://"
    r"(?!goog)(?![^/]*google)(?![0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(?:/|$))"
    r"(?=[a-z0-9._-]{3,222}(?:/|$))"
    + _PART + r"(?:\." + _PART + r")*"
    + r"(?:/[^\r\n*?\[\]]*)?$"
)
_GS_URL_RE = re.compile(GS_URL_REGEX)


def url_problem(url):
    """Why ``url`` is not a usable ``gs://BUCKET[/PREFIX]`` source, or None when it is."""
    if not isinstance(url, str) or not url:
        return "is empty; expected gs://BUCKET[/PREFIX]"
    if not url.startswith("gs://"):
        return "does not start with gs:// (expected gs://BUCKET[/PREFIX])"
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        return "has no bucket name after gs://"
    if len(bucket) < 3 or len(bucket) > 222:
        return "has a bucket name of %d characters (3-63, or up to 222 with dots)" % len(bucket)
    if re.search(r"[^a-z0-9._-]", bucket):
        return "has a bucket name with characters other than lowercase letters, digits, '-', '_' and '.'"
    for part in bucket.split("."):
        if not part or len(part) > 63:
            return "has a bucket name whose dot-separated parts are empty or longer than 63 characters"
        if not (part[0].isalnum() and part[-1].isalnum()):
            return "has a bucket name (or part) that does not start and end with a letter or digit"
    if re.match(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$", bucket):
        return "has a bucket name that looks like an IP address"
    if bucket.startswith("goog") or "google" in bucket:
        return "has a bucket name that starts with 'goog' or contains 'google'"
    if re.search(r"[\r\n]", prefix):
        return "has a line break in its object prefix"
    if re.search(r"[*?\[\]]", prefix):
        return "has wildcard characters in its prefix; rsync takes a bucket or prefix, use include/exclude"
    if len(prefix.encode("utf-8")) > 1024:
        return "has an object prefix longer than 1024 bytes"
    if not _GS_URL_RE.match(url):  # pragma: no cover - the checks above are the same rules
        return "is not a valid gs://BUCKET[/PREFIX] URL"
    return None


def split_url(url):
    """``gs://bucket/some/prefix/`` -> ``('bucket', 'some/prefix')``."""
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


# ---------------------------------------------------------------------------------------------
# include / exclude globs -> the single exclusion regex both tools take (-x / --exclude)
# ---------------------------------------------------------------------------------------------
def glob_to_regex(pattern):
    """Translate a path glob into a regex body (no anchors) over a relative object path.

    ``*`` and ``?`` stay inside one path segment, ``**`` crosses segments (``**/`` may match no
    directory at all), ``[abc]``/``[!abc]`` are character classes. A pattern without ``/``
    matches a name at any depth, like .gitignore. A pattern also matches everything below a
    directory it names, so ``raw`` or ``raw/`` covers ``raw/a/b``.
    """
    if not isinstance(pattern, str) or not pattern.strip("/"):
        raise ValueError("empty pattern")
    anchored = "/" in pattern.rstrip("/")
    pat = pattern.strip("/")
    out = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if c == "*":
            if pat.startswith("**", i):
                j = i + 2
                if pat.startswith("/", j):
                    out.append("(?:.*/)?")
                    j += 1
                else:
                    out.append(".*")
                i = j
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and pat[j] in "!^":
                j += 1
            if j < n and pat[j] == "]":
                j += 1
            while j < n and pat[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = pat[i + 1:j]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\").replace("/", "").replace(",", r"\x2c")
                out.append("[%s%s]" % ("^/" if negate else "", body) if body else "(?!)")
                i = j
        elif c == ",":
            out.append(r"\x2c")  # gcloud splits --exclude values on ","
        else:
            out.append(re.escape(c))
        i += 1
    body = "".join(out)
    if not anchored:
        body = "(?:.*/)?" + body
    return body + "(?:/.*)?"


def exclusion_regex(include=None, exclude=None):
    """One regex matching the relative paths to leave out, or None to take everything.

    A path is left out when it matches an exclude pattern, or when include patterns are given
    and it matches none of them. Excluded paths are neither copied nor deleted.
    """
    include = [p for p in (include or []) if p]
    exclude = [p for p in (exclude or []) if p]
    alternatives = []
    if exclude:
        alternatives.append("(?:%s)$" % "|".join(glob_to_regex(p) for p in exclude))
    if include:
        alternatives.append("(?!(?:%s)$)" % "|".join(glob_to_regex(p) for p in include))
    if not alternatives:
        return None
    # No leading "^": both tools anchor with re.match, and gcloud reads a value that starts with
    # "^X^" as a custom list delimiter. No ",": gcloud splits --exclude on commas (escaped above).
    return "(?:%s)" % "|".join(alternatives)


def is_excluded(regex, path):
    """How both tools apply the regex to a relative path (match from the start)."""
    return regex is not None and re.match(regex, path) is not None


# ---------------------------------------------------------------------------------------------
# rsync output
# ---------------------------------------------------------------------------------------------
# gsutil:  "Copying gs://b/p/o..."            gcloud: "Copying gs://b/p/o to file://dest/o"
#          "Would copy gs://b/p/o to file://d/o"      "Would copy gs://b/p/o#GEN to file://d/o"
#          "Removing file://d/o"  (gcloud: "Removing file://d/o...")  "Would remove file://d/o"
# A record may follow progress output on the same line: gsutil pads its bar with spaces, gcloud
# prints a "." per finished chunk with no line break. So a record starts at the line start or
# after whitespace or a dot.
_COPY_RE = re.compile(r"(?:^|(?<=[\s.]))(Copying|Would copy) (gs://.+?)(?:#\d+)?(?:\.\.\.| to file://(.+))$")
_REMOVE_RE = re.compile(r"(?:^|(?<=[\s.]))(Removing|Would remove) file://(.+?)(?:\.\.\.)?$")


def _relative(object_url, src):
    bucket, prefix = split_url(src)
    base = "gs://%s/%s" % (bucket, prefix + "/" if prefix else "")
    if object_url.startswith(base):
        return object_url[len(base):]
    return object_url.rsplit("/", 1)[-1]


def _dest_relative(path, dest):
    dest = dest.rstrip("/") + "/"
    return path[len(dest):] if path.startswith(dest) else path


def parse_rsync_output(text, src, dest):
    """Files copied and removed, as paths relative to ``dest``, from either tool's output.

    Progress bars are redrawn with carriage returns, so a line can hold several records: split
    on both CR and LF. Returns ``{'copied': [...], 'deleted': [...]}`` in output order, without
    duplicates (a retried copy is printed twice).
    """
    copied, deleted = [], []
    seen_c, seen_d = set(), set()
    for raw in re.split(r"[\r\n]+", text):
        line = raw.strip()
        if not line:
            continue
        m = _COPY_RE.search(line)
        if m:
            rel = _dest_relative(m.group(3), dest) if m.group(3) else _relative(m.group(2), src)
            if rel not in seen_c:
                seen_c.add(rel)
                copied.append(rel)
            continue
        m = _REMOVE_RE.search(line)
        if m:
            rel = _dest_relative(m.group(2), dest)
            if rel not in seen_d:
                seen_d.add(rel)
                deleted.append(rel)
    return {"copied": copied, "deleted": deleted}


# Error texts of gsutil 5.x and gcloud storage (500+), most specific first.
_ERRORS = (
    ("checksum", re.compile(
        r"doesn't match cloud-supplied digest|does not match destination hash|"
        r"hash mismatch|HashMismatchException", re.I)),
    ("missing_bucket", re.compile(
        r"BucketNotFoundException|bucket does not exist|gs://[^/\s]+ not found: 404|"
        r"The specified bucket does not exist|NotFoundError: 404 .*bucket", re.I)),
    ("missing_prefix", re.compile(
        r"does not name a directory, bucket, or bucket subdir|Did not find existing container at",
        re.I)),
    ("permission", re.compile(
        r"AccessDeniedException|\b40[13]\b.*(?:access|permission|denied|Forbidden|Unauthorized|"
        r"credentials|Anonymous caller)|does not have storage\.\w+\.\w+ access|"
        r"Forbidden|PERMISSION_DENIED", re.I)),
    ("credentials", re.compile(
        r"You do not currently have an active account|No credentialed accounts|"
        r"Reauthentication failed|Your credentials are invalid|invalid_grant", re.I)),
    ("tls", re.compile(r"CERTIFICATE_VERIFY_FAILED|SSLError|certificate verify failed", re.I)),
    ("connection", re.compile(
        r"Connection refused|Failed to establish a new connection|Name or service not known|"
        r"Temporary failure in name resolution|timed out", re.I)),
)

_EXPLAIN = {
    "checksum": "a downloaded object did not match its stored checksum (md5/crc32c): the object in "
                "the bucket may be corrupt, or it was damaged in transit. The partial local copy "
                "was deleted by the tool; nothing corrupt was kept",
    "missing_bucket": "the bucket does not exist (or the name is mistyped)",
    "missing_prefix": "no objects exist under this prefix",
    "permission": "permission denied: the VM's service account (or the configured credentials) "
                  "lacks storage.objects.list/get on this bucket - grant it "
                  "roles/storage.objectViewer and check the VM's access scopes",
    "credentials": "no usable credentials: on GCE the VM needs a service account with a storage "
                   "scope; elsewhere run `gcloud auth login` or set an emulator endpoint",
    "tls": "TLS verification failed talking to the storage endpoint (wrong CA for the endpoint?)",
    "connection": "the storage endpoint could not be reached",
}


def classify_error(text):
    """``(kind, explanation)`` for a failed rsync's output, or ``('unknown', None)``."""
    for kind, pattern in _ERRORS:
        if pattern.search(text or ""):
            return kind, _EXPLAIN[kind]
    return "unknown", None


_DETAIL_RE = re.compile(
    r"ERROR: .*|\b[A-Za-z]+Exception: .*|\S.*doesn't match cloud-supplied digest.*|"
    r"Source hash .*does not match destination hash.*")


def error_lines(text, limit=8):
    """The tool's own error lines (last ``limit``), for the failure message."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text or "") if ln.strip()]
    found = []
    for ln in lines:
        m = _DETAIL_RE.search(ln)
        if m:
            found.append(m.group(0).strip())
    if not found:
        found = lines[-3:]
    # keep order, drop repeats
    seen, out = set(), []
    for ln in found:
        if ln not in seen:
            seen.add(ln)
            out.append(ln)
    return out[-limit:]


def human_bytes(num):
    """1536 -> '1.5 KiB' (binary units, as both tools print)."""
    value = float(num)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0
    return "%d B" % num  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Safety: the pull runs as root into a directory another user owns; bucket writers choose the
# object names. Nothing here follows a symlink.
# ---------------------------------------------------------------------------------------------
def object_name_problem(rel):
    """Why the object path ``rel`` (relative to src) must not be written under dest, or None.

    Refused: absolute names, empty segments (``a//b``), ``.``/``..`` segments, NUL bytes. A single
    trailing ``/`` (a "folder" placeholder object) is allowed; the empty name is src itself.
    """
    if not isinstance(rel, str):
        return "is not a string"
    if "\x00" in rel:
        return "contains a NUL byte"
    if rel.startswith("/"):
        return "is absolute (starts with '/'; an empty segment after the prefix)"
    body = rel[:-1] if rel.endswith("/") else rel
    if not body:
        return None
    for seg in body.split("/"):
        if seg == "":
            return "has an empty path segment ('//')"
        if seg in (".", ".."):
            return "has a '%s' path segment" % seg
    return None


def dest_components(dest):
    """``/a/b/c`` -> ``['/', '/a', '/a/b', '/a/b/c']`` (dest must be absolute)."""
    parts = [p for p in dest.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def dest_problem(dest, owner_uid=0, group_gid=None, lstat=None):
    """Why root must not copy into (or create) ``dest``, or None.

    Every component of ``dest`` from ``/`` down, dest included, that exists must be a real
    directory (not a symlink), owned by root, by the pull's owner (``owner_uid``) or by the user
    running this (root in production); writable by its group only when that group is root's
    (gid 0) or the pull's group; writable by all only when root owns it and the sticky bit is set
    (``/tmp``: no one can replace an entry they do not own, and the entries below are checked
    in turn). Components that do not exist yet are created later by root. ``.`` and ``..`` are
    refused outright. ``lstat`` is injectable for tests; it never follows symlinks.
    """
    lstat = lstat or os.lstat
    if not isinstance(dest, str) or not dest.startswith("/"):
        return "is not an absolute path"
    if any(seg in (".", "..") for seg in dest.split("/")):
        return "has a '.' or '..' component"
    trusted_uids = {0, owner_uid, os.geteuid()}
    trusted_gids = {0} if group_gid is None else {0, group_gid}
    entries = []
    for comp in dest_components(dest):
        try:
            entries.append((comp, lstat(comp)))
        except FileNotFoundError:
            break  # the rest does not exist either
    # Symlinks first: they are the attack, whatever else is wrong with the path.
    for comp, sr in entries:
        if st.S_ISLNK(sr.st_mode):
            return "goes through a symlink at %s (refusing to follow it as root)" % comp
    for comp, sr in entries:
        why = _component_problem(comp, sr, trusted_uids, trusted_gids)
        if why:
            return why
    return None


def _component_problem(comp, sr, trusted_uids, trusted_gids):
    """dest_problem's rules for one existing component ``comp`` with stat result ``sr``."""
    if not st.S_ISDIR(sr.st_mode):
        return "has a component that is not a directory: %s" % comp
    if sr.st_uid not in trusted_uids:
        return "has a component owned by uid %d, neither root nor the pull's owner: %s" % (sr.st_uid, comp)
    if sr.st_mode & st.S_IWOTH and not (sr.st_mode & st.S_ISVTX and sr.st_uid == 0):
        return "has a component writable by any user (without root's sticky bit): %s (mode %04o)" % (
            comp, st.S_IMODE(sr.st_mode))
    if sr.st_mode & st.S_IWGRP and sr.st_gid not in trusted_gids:
        return "has a component writable by group gid %d: %s (mode %04o)" % (
            sr.st_gid, comp, st.S_IMODE(sr.st_mode))
    return None


def make_dest(dest, uid, gid, mode, owner_uid=0, group_gid=None, check=False):
    """Create ``dest`` (and missing parents) as uid:gid with ``mode``, or give an existing dest
    that owner and mode; return whether anything changed (would change, with ``check``).

    Root does this on a path another user may control, so every step works on descriptors: each
    component is opened relative to the previous one with O_NOFOLLOW, checked with fstat by
    dest_problem's rules (``owner_uid``, ``group_gid``), created with mkdirat, re-owned with
    fchown/fchmod. A component swapped for a symlink after dest_problem ran fails here with
    ELOOP, never followed. Raises OSError, with the reason, on any problem.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    trusted_uids = {0, owner_uid, os.geteuid()}
    trusted_gids = {0} if group_gid is None else {0, group_gid}
    if not dest.startswith("/") or any(seg in (".", "..") for seg in dest.split("/")):
        raise OSError(22, "dest must be an absolute path without '.' or '..'", dest)
    comps = dest_components(dest)
    fd = os.open("/", flags)
    changed = False
    try:
        for depth, comp in enumerate(comps):
            if depth:
                name = comp.rsplit("/", 1)[1]
                try:
                    nfd = os.open(name, flags, dir_fd=fd)
                except FileNotFoundError:
                    if check:
                        return True
                    os.mkdir(name, 0o700, dir_fd=fd)
                    nfd = os.open(name, flags, dir_fd=fd)
                    os.fchown(nfd, uid, gid)
                    os.fchmod(nfd, mode)
                    changed = True
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    raise OSError(exc.errno, "dest %s has a symlink or non-directory at %s (not followed)"
                                  % (dest, comp)) from None
                os.close(fd)
                fd = nfd
            sr = os.fstat(fd)
            if comp == dest and (sr.st_uid, sr.st_gid, st.S_IMODE(sr.st_mode)) != (uid, gid, mode):
                if not check:
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode)
                changed = True
                sr = os.fstat(fd)
            why = None if check and comp == dest else _component_problem(comp, sr, trusted_uids, trusted_gids)
            if why:
                raise OSError(1, "dest %s %s" % (dest, why))
    finally:
        os.close(fd)
    return changed


def inside_problem(dest, rel, lstat=None, _cache=None):
    """Why writing object ``rel`` under dest would leave dest, or None.

    Besides the name rules, an existing symlink on the way (a directory or the file itself)
    could send the write elsewhere: refused. ``_cache`` (a dict) spares repeated lstat calls.
    """
    why = object_name_problem(rel)
    if why:
        return why
    lstat = lstat or os.lstat
    cache = {} if _cache is None else _cache
    base = dest.rstrip("/") or "/"
    target = os.path.normpath(os.path.join(base, rel))
    if not (target + "/").startswith(base.rstrip("/") + "/"):
        return "resolves outside dest"
    segs = [s for s in rel.split("/") if s]
    for depth in range(1, len(segs) + 1):
        sub = "/".join(segs[:depth])
        if sub not in cache:
            try:
                cache[sub] = st.S_ISLNK(lstat(os.path.join(base, sub)).st_mode)
            except OSError:
                cache[sub] = None  # absent: the tool creates it
        if cache[sub]:
            return "would be written through the symlink %s inside dest" % sub
        if cache[sub] is None:
            # Nothing exists below an absent component.
            for d in range(depth + 1, len(segs) + 1):
                cache["/".join(segs[:d])] = None
            break
    return None
