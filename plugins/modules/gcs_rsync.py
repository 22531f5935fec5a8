#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module: one-way sync of a gs:// prefix to a local directory."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gcs_rsync
short_description: Pull a gs:// bucket or prefix into a local directory with gcloud storage or gsutil
description:
  - Runs C(gcloud storage rsync) (or C(gsutil -m rsync) where gcloud is absent) from a Cloud
    Storage URL to a local directory and reports what moved.
  - C(changed) is computed from the tool's own output (its C(Copying)/C(Removing) records), so a
    second run that copies nothing reports C(ok). Files and bytes copied are returned.
  - Every download is verified against the object's stored crc32c/md5 (C(check_hashes=always));
    a mismatch fails the task and the tool deletes the bad local copy.
  - Local files are never deleted unless I(delete_extraneous=true).
  - In check mode the tool runs with its dry-run flag and the sizes come from one listing.
  - Every object under I(src) is listed before the copy, from the storage JSON API (with
    I(endpoint), or on GCE with the VM service account's token from the metadata server), so
    the names the safety checks read are exact and no second start of the tool is paid. Where
    that is not possible (off GCE without an endpoint) or the API answers with an error, the
    tool lists instead, and its error text becomes the message.
  - The tool's output is appended to I(log_file) as it runs, so a long pull can be followed
    with C(tail -f).
options:
  src:
    description: Source C(gs://BUCKET[/PREFIX]).
    type: str
    required: true
  dest:
    description: Destination directory; created with its missing parents (see I(mode)).
    type: path
    required: true
  include:
    description: Globs (relative to I(src)); when given, only matching paths are pulled.
    type: list
    elements: str
    default: []
  exclude:
    description: Globs (relative to I(src)) never pulled, and never deleted locally.
    type: list
    elements: str
    default: []
  delete_extraneous:
    description: Delete local files under I(dest) that are not in I(src) (and not excluded).
    type: bool
    default: false
  checksum:
    description:
      - Compare existing files by checksum rather than by modification time and size. Catches
        a local copy changed in place at the same size; costs one read of every local file.
    type: bool
    default: true
  tool:
    description: C(gcloud) or C(gsutil); C(auto) takes gcloud when I(gcloud_path) or PATH has it.
    type: str
    choices: [auto, gcloud, gsutil]
    default: auto
  gcloud_path:
    description: Path of gcloud, if not on PATH.
    type: path
  gsutil_path:
    description: Path of gsutil (e.g. in its own virtualenv), if not on PATH.
    type: path
  endpoint:
    description:
      - Storage JSON API endpoint to use instead of Google's (an emulator), e.g.
        C(https://10.88.0.1:4443). Credentials are disabled for it. gsutil needs https and a
        I(boto_config) naming the same host and port.
    type: str
  ca_file:
    description:
      - CA bundle that verifies I(endpoint). gsutil reads it from I(boto_config); it is also
        handed to the Cloud SDK's gsutil wrapper, which would otherwise override the boto file.
    type: path
  boto_config:
    description: Boto config file for gsutil (sets C(BOTO_CONFIG)).
    type: path
  processes:
    description: Worker processes; default the number of CPUs (at most 8).
    type: int
  threads:
    description: Threads per process.
    type: int
    default: 8
  retries:
    description: Retries of a failed request before giving up (both tools retry with backoff).
    type: int
    default: 6
  log_file:
    description: File the tool's output is appended to while it runs.
    type: path
  owner:
    description:
      - Owner of the files and directories this run creates. When root runs the module, the copy
        tool (and a listing by the tool) runs as this user, with a private C(HOME) and C(CLOUDSDK_CONFIG),
        so the files are theirs from the start.
    type: str
  group:
    description:
      - Group of the files and directories this run creates (the tool runs with it as its group).
        Default the primary group of I(owner).
    type: str
  mode:
    description:
      - Mode of I(dest) and of the parents this run creates (octal string). Missing
        directories are created, and an existing I(dest) given I(owner)/I(group)/I(mode), by
        root through descriptors opened with C(O_NOFOLLOW), each checked again as it is opened.
    type: str
    default: "0755"
  list_limit:
    description: At most this many paths are returned in C(copied)/C(deleted).
    type: int
    default: 50
  direct:
    description:
      - On a first pull (I(dest) empty or new) of objects the module listed from the JSON API,
        download them itself instead of starting the tool, which costs about a second of CPU
        before it moves a byte. Several keep-alive connections (I(threads)) fetch the objects
        largest first, each at the generation that was listed, verified against its stored
        md5 before it is renamed into place. As with the tool, this runs as I(owner) when root
        runs the module. Files get the modification time C(gcloud storage rsync) would give
        them, so later pulls, which the tool does, find nothing to copy.
      - Left to the tool, which handles them, are composite objects (no md5), gzip-encoded
        objects, folder placeholders, an endpoint reached through a proxy, and any object of
        128 MiB or more (one stream per object; the tool downloads large objects in parallel
        slices, which is worth its start-up on a real network).
    type: bool
    default: true
  preflight:
    description:
      - Only check that I(dest) is safe to create and pull into (see notes), then exit; creates
        nothing.
    type: bool
    default: false
notes:
  - "Root copies into a directory another user may own, with names a bucket writer chose, so:"
  - "I(dest): every existing component from C(/) down, I(dest) included, must be a real
    directory (no symlink), owned by root, the pull's I(owner) or the user running the module,
    writable by its group only if that group is root's or I(group), and writable by all only
    if root owns it with the sticky bit set (C(/tmp)). Otherwise the module fails with
    C(error_kind=unsafe_dest) before anything is listed or copied."
  - "Object names: every object under I(src) is listed first. A name that is absolute, has an
    empty (C(//)), C(.) or C(..) segment, or would be written through a symlink that already
    exists inside I(dest), fails the whole pull with C(error_kind=unsafe_object_name), naming
    the object; nothing is copied. Excluded objects are checked too."
  - "Who copies: with I(owner), the tool runs as that user and I(group), never as root, so a
    component of I(dest) that the owner swaps for a symlink between the checks and the copy
    leads only where the owner could write anyway, and nothing needs re-owning afterwards.
    Without I(owner) the tool runs as root (with I(group) as its group), and then I(dest) must
    be root's alone: components writable by a group other than root's are refused."
  - "Paths the tool reports that break the name rules (an object added after the listing)
    fail the task, naming them."
author:
  - gpu-jupyter project
"""

EXAMPLES = r"""
- name: Pull the training set
  gcs_rsync:
    src: gs://my-bucket/datasets/imagenet-mini
    dest: /home/jupyter/data/imagenet-mini
    exclude: ["*.tmp"]
    owner: jupyter
    group: jupyter
    log_file: /var/log/gcs_pull/imagenet-mini.log
"""

RETURN = r"""
tool:
  description: The tool that ran, or C(json-api) where the module downloaded the objects itself
    (see I(direct)).
  type: str
  returned: always
  sample: gcloud
command:
  description: The command line that ran (empty for C(json-api)).
  type: list
  elements: str
  returned: always
files_copied:
  description: Number of files copied (in check mode, that would be copied).
  type: int
  returned: always
bytes_copied:
  description: Bytes copied (in check mode, that would be copied).
  type: int
  returned: always
files_deleted:
  description: Local files deleted (only with delete_extraneous).
  type: int
  returned: always
dest_changed:
  description: Whether I(dest) (or a parent) was created, or its owner, group or mode set.
  type: bool
  returned: always
copied:
  description: The first I(list_limit) copied paths, relative to dest.
  type: list
  elements: str
  returned: always
deleted:
  description: The first I(list_limit) deleted paths, relative to dest.
  type: list
  elements: str
  returned: always
elapsed_s:
  description: Seconds the tool ran.
  type: float
  returned: always
log_file:
  description: Where the tool's output went.
  type: str
  returned: when log_file was given
error_kind:
  description: On failure, what went wrong (checksum, missing_bucket, missing_prefix, permission,
    credentials, tls, connection, unsafe_dest, unsafe_object_name, changed_during_pull,
    local_write, unknown).
  type: str
  returned: failure
"""

import contextlib
import datetime
import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import ssl
import tempfile
import time
from urllib.error import URLError
from urllib.parse import quote, urlencode
from urllib.request import ProxyHandler, Request, build_opener, urlopen

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.gcs_direct import DIRECT_EXPLAIN, LIST_FIELDS, Fetcher, direct_problem, entry
from ansible.module_utils.gcs_rsync_common import (
    classify_error,
    make_dest,
    dest_problem,
    error_lines,
    exclusion_regex,
    human_bytes,
    inside_problem,
    is_excluded,
    object_name_problem,
    parse_rsync_output,
    url_problem,
)

_SDK_DIRS = ["/usr/lib/google-cloud-sdk/bin", "/snap/bin", "/usr/local/bin", "/opt/google-cloud-sdk/bin"]


def _resolve_tool(module, p):
    tool = p["tool"]
    gcloud = p["gcloud_path"] or module.get_bin_path("gcloud", opt_dirs=_SDK_DIRS)
    gsutil = p["gsutil_path"] or module.get_bin_path("gsutil", opt_dirs=_SDK_DIRS)
    if tool == "auto":
        tool = "gcloud" if gcloud else "gsutil"
    path = gcloud if tool == "gcloud" else gsutil
    if not path or not os.access(path, os.X_OK):
        module.fail_json(msg="gcs_rsync: %s not found (looked on PATH and in %s)" % (tool, ", ".join(_SDK_DIRS)),
                         error_kind="tool_missing")
    return tool, path


def _build(p, tool, path, regex, dry_run):
    processes = p["processes"] or min(os.cpu_count() or 1, 8)
    env = {}
    if tool == "gcloud":
        cmd = [path, "storage", "rsync", "--recursive"]
        if p["checksum"]:
            cmd.append("--checksums-only")
        if p["delete_extraneous"]:
            cmd.append("--delete-unmatched-destination-objects")
        if dry_run:
            cmd.append("--dry-run")
        if regex:
            cmd.append("--exclude=" + regex)
        env.update({
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_STORAGE_PROCESS_COUNT": str(processes),
            "CLOUDSDK_STORAGE_THREAD_COUNT": str(p["threads"]),
            "CLOUDSDK_STORAGE_MAX_RETRIES": str(p["retries"]),
            "CLOUDSDK_STORAGE_CHECK_HASHES": "always",
        })
        if p["endpoint"]:
            env["CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"] = p["endpoint"].rstrip("/") + "/"
            env["CLOUDSDK_AUTH_DISABLE_CREDENTIALS"] = "true"
        if p["ca_file"]:
            # A machine-wide REQUESTS_CA_BUNDLE would win over gcloud's own CA setting.
            for var in ("CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
                env[var] = p["ca_file"]
    else:
        cmd = [path, "-m",
               "-o", "GSUtil:parallel_process_count=%d" % processes,
               "-o", "GSUtil:parallel_thread_count=%d" % p["threads"],
               "-o", "GSUtil:check_hashes=always",
               "-o", "Boto:num_retries=%d" % p["retries"],
               "-o", "Boto:max_retry_delay=16",
               "rsync", "-r"]
        if p["checksum"]:
            cmd.append("-c")
        if p["delete_extraneous"]:
            cmd.append("-d")
        if dry_run:
            cmd.append("-n")
        if regex:
            cmd += ["-x", regex]
        if p["boto_config"]:
            env["BOTO_CONFIG"] = p["boto_config"]
            # gsutil bundled with the Cloud SDK would otherwise inject gcloud's credentials.
            env["CLOUDSDK_CORE_PASS_CREDENTIALS_TO_GSUTIL"] = "false"
        if p["ca_file"]:
            # The Cloud SDK's gsutil wrapper passes gcloud's CA over the boto file's.
            env["CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE"] = p["ca_file"]
    cmd += [p["src"], p["dest"]]
    return cmd, env


class _Identity(object):
    """Who the tool runs as: the pull's owner and group when root runs the module (root itself
    when there is no owner), with a private HOME/CLOUDSDK_CONFIG for a user that is not root."""

    def __init__(self, uid, gid):
        self.spawn = {}
        self.home = None
        if os.geteuid() != 0:
            return  # not root: the tool can only be the user running the module
        if uid not in (-1, 0):
            gid = pwd.getpwuid(uid).pw_gid if gid == -1 else gid
            self.spawn = dict(user=uid, group=gid, extra_groups=[])
            # Root's gcloud/gsutil configuration stays root's; on GCE both tools take the VM's
            # service account from the metadata server, whoever runs them.
            self.home = tempfile.mkdtemp(prefix="gcs_rsync_home_")
            os.chown(self.home, uid, gid)
        elif gid != -1:
            self.spawn = dict(group=gid)

    def env(self, env):
        full = dict(os.environ)
        full.update(env)
        if self.home:
            full.update(HOME=self.home, CLOUDSDK_CONFIG=os.path.join(self.home, "gcloud"))
        return full

    def cleanup(self):
        if self.home:
            # rmtree never follows a link the tool (as the owner) may have left there.
            shutil.rmtree(self.home, ignore_errors=True)


def _run(cmd, env, log_file, ident):
    """Run as `ident`, appending output to log_file as it arrives; return (rc, output, seconds)."""
    full_env = ident.env(env)
    # Progress bars are meant for a terminal; PYTHONUNBUFFERED makes records reach the log live.
    full_env["PYTHONUNBUFFERED"] = "1"
    chunks = []
    rc = "?"
    with contextlib.ExitStack() as stack:
        log = None
        if log_file:
            os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
            log = stack.enter_context(open(log_file, "ab", buffering=0))
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            log.write(("\n=== %s %s\n" % (stamp, " ".join(cmd))).encode())
        start = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=full_env, cwd="/", **ident.spawn)
            while True:
                data = proc.stdout.read1(65536) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
                if not data:
                    break
                chunks.append(data)
                if log:
                    log.write(data)
            rc = proc.wait()
        finally:
            elapsed = time.monotonic() - start
            if log:
                log.write(("=== exit %s after %.1f s\n" % (rc, elapsed)).encode())
    return rc, b"".join(chunks).decode("utf-8", "replace"), elapsed


_LS_RE = re.compile(r"^\s*(\d+)\s+\S+\s+(gs://.+?)(?:#\d+)?\s*$")
_NO_MATCH_RE = re.compile(r"matched no objects", re.I)
_TOTAL_RE = re.compile(r"^TOTAL: (\d+) objects?,", re.M)


_GCS_API = "https://storage.googleapis.com"
_METADATA_TOKEN = "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token"


def _metadata_token():
    """The VM service account's access token from the metadata server; None off GCE."""
    try:
        with open("/sys/class/dmi/id/product_name") as fh:
            if "Google" not in fh.read():
                return None
        req = Request(_METADATA_TOKEN, headers={"Metadata-Flavor": "Google"})
        # The metadata server is link-local: never through a proxy.
        with build_opener(ProxyHandler({})).open(req, timeout=2) as resp:
            return json.load(resp)["access_token"]
    except (OSError, ValueError, KeyError):
        return None


def _api_access(p):
    """``(base URL, headers, CA file)`` of the storage JSON API, or None where it cannot be used
    from here (off GCE without an endpoint)."""
    if p["endpoint"]:
        return p["endpoint"].rstrip("/"), {}, p["ca_file"]
    token = _metadata_token()
    if not token:
        return None
    return _GCS_API, {"Authorization": "Bearer " + token}, None


def _api_listing(p, access):
    """``{relative name: entry}`` (gcs_direct.entry) for every object under src, read straight
    from the storage JSON API; None where that is not possible here (off GCE without an
    endpoint, any error), and the tool lists instead.

    The copy tool's own listing costs a second start of gcloud or gsutil (1.5-2 s of CPU, as
    long as the copy of a small dataset). The JSON answer also carries each name exactly, where
    the tool's text listing must be parsed.
    """
    if access is None:
        return None
    base, headers, cafile = access
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    # The same objects as the tool's `SRC/**`: leading slashes are part of an object's name.
    bucket, _, prefix = p["src"][len("gs://") :].partition("/")
    prefix = prefix.rstrip("/")
    prefix = prefix + "/" if prefix else ""
    entries, page = {}, None
    while True:
        query = {"prefix": prefix, "fields": LIST_FIELDS, "maxResults": "1000"}
        if page:
            query["pageToken"] = page
        url = "%s/storage/v1/b/%s/o?%s" % (base, quote(bucket, safe=""), urlencode(query))
        try:
            with urlopen(Request(url, headers=headers), timeout=60, context=context) as resp:
                doc = json.load(resp)
            for item in doc.get("items", []):
                listed = entry(item, prefix)
                entries[listed["rel"]] = listed
        except (URLError, OSError, ValueError, KeyError, TypeError):
            return None  # the tool's listing says what is wrong in words classify_error knows
        page = doc.get("nextPageToken")
        if not page:
            return entries


def _list_objects(module, tool, path, p, env, ident, access):
    """``(rc, output, {relative name: size}, {relative name: entry} or None)`` for every object
    under src; the entries come only from the JSON API."""
    entries = _api_listing(p, access)
    if entries is not None:
        return 0, "", dict((rel, e["size"]) for rel, e in entries.items()), entries
    src = p["src"].rstrip("/")
    if tool == "gcloud":
        cmd = [path, "storage", "ls", "--long", "--recursive", src + "/**"]
    else:
        cmd = [path, "ls", "-l", "-r", src + "/**"]
    proc = subprocess.run(cmd, env=ident.env(env), cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False, **ident.spawn)
    rc, out, err = proc.returncode, proc.stdout, proc.stderr
    sizes = {}
    if rc == 0:
        read = 0
        for line in out.splitlines():
            m = _LS_RE.match(line)
            if m:
                read += 1
                sizes[m.group(2)[len(src) + 1:]] = int(m.group(1))
        total = _TOTAL_RE.search(out)
        if total and int(total.group(1)) != read:
            # An object line this parser did not understand is an object whose name went unchecked.
            module.fail_json(msg="gcs_rsync: refusing to pull %s to %s: the listing names %s objects but %d "
                                 "could be read, so not every name could be checked. Nothing was copied."
                                 % (p["src"], p["dest"], total.group(1), read),
                             error_kind="unsafe_object_name", changed=False)
    return rc, (out or "") + (err or ""), sizes, None


def _refuse(module, p, what, kind, **extra):
    module.fail_json(
        msg="gcs_rsync: refusing to pull %s to %s: %s. Nothing was copied." % (p["src"], p["dest"], what),
        error_kind=kind, changed=False, **extra)


def _check_names(module, p, names):
    """Fail, naming the first offending object, when any name could be written outside dest."""
    cache = {}
    dest = p["dest"] if os.path.isdir(p["dest"]) else None
    for rel in sorted(names):
        why = inside_problem(dest, rel, _cache=cache) if dest else object_name_problem(rel)
        if why:
            _refuse(module, p, "object %r %s (rename or delete it in the bucket, or pull a prefix "
                               "that does not contain it)" % (p["src"].rstrip("/") + "/" + rel, why),
                    "unsafe_object_name", object_name=rel)


def _make_dest(module, p, uid, gid):
    """Create dest (or set its owner, group and mode) without following a link; True if changed."""
    try:
        mode = int(p["mode"], 8)
    except ValueError:
        module.fail_json(msg="gcs_rsync: mode %r is not an octal mode such as 0755" % p["mode"], error_kind="bad_mode")
    # Default owner: whoever runs the module (root in production), as dest_problem trusts.
    dest_uid = os.geteuid() if uid == -1 else uid
    dest_gid = gid if gid != -1 else (pwd.getpwuid(uid).pw_gid if uid != -1 else os.getegid())
    try:
        return make_dest(p["dest"], dest_uid, dest_gid, mode, owner_uid=0 if uid == -1 else uid,
                         group_gid=None if gid == -1 or uid in (-1, 0) else gid, check=module.check_mode)
    except OSError as exc:
        _refuse(module, p, "%s; root only writes into a path that root (or the pull's owner) alone controls"
                % (exc.strerror or exc), "unsafe_dest")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            include=dict(type="list", elements="str", default=[]),
            exclude=dict(type="list", elements="str", default=[]),
            delete_extraneous=dict(type="bool", default=False),
            checksum=dict(type="bool", default=True),
            tool=dict(type="str", choices=["auto", "gcloud", "gsutil"], default="auto"),
            gcloud_path=dict(type="path"),
            gsutil_path=dict(type="path"),
            endpoint=dict(type="str"),
            ca_file=dict(type="path"),
            boto_config=dict(type="path"),
            processes=dict(type="int"),
            threads=dict(type="int", default=8),
            retries=dict(type="int", default=6),
            log_file=dict(type="path"),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="str", default="0755"),
            list_limit=dict(type="int", default=50),
            preflight=dict(type="bool", default=False),
            direct=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    problem = url_problem(p["src"])
    if problem:
        module.fail_json(msg="gcs_rsync: src %r %s" % (p["src"], problem), error_kind="bad_url")
    uid = gid = -1
    try:
        if p["owner"]:
            uid = pwd.getpwnam(p["owner"]).pw_uid
        if p["group"]:
            gid = grp.getgrnam(p["group"]).gr_gid
    except KeyError as exc:
        module.fail_json(msg="gcs_rsync: unknown owner/group %s" % exc, error_kind="bad_owner")
    # A tool run as root (no owner) trusts no group but root's: a member of the pull's group
    # could otherwise swap a component it can write between this check and the copy.
    problem = dest_problem(p["dest"], owner_uid=0 if uid == -1 else uid,
                           group_gid=None if gid == -1 or uid in (-1, 0) else gid)
    if problem:
        _refuse(module, p, "dest %s %s; root only writes into a path that root (or the pull's owner) "
                           "alone controls" % (p["dest"], problem), "unsafe_dest")
    if p["preflight"]:
        module.exit_json(changed=False, destination=p["dest"], msg="dest is safe to create and pull into")
    dest_changed = _make_dest(module, p, uid, gid)
    dry_dest = None
    if module.check_mode and not os.path.exists(p["dest"]):
        # Check mode on a host where dest is not created yet: compare against an empty directory.
        dry_dest = tempfile.mkdtemp(prefix="gcs_rsync_check_")
    try:
        regex = exclusion_regex(p["include"], p["exclude"])
    except ValueError as exc:
        module.fail_json(msg="gcs_rsync: bad include/exclude pattern: %s" % exc, error_kind="bad_pattern")

    tool, path = _resolve_tool(module, p)
    dry_run = module.check_mode
    run_params = dict(p, dest=dry_dest) if dry_dest else p
    cmd, env = _build(run_params, tool, path, regex, dry_run)
    ident = _Identity(uid, gid)
    if dry_dest and ident.spawn.get("user") is not None:
        os.chown(dry_dest, ident.spawn["user"], ident.spawn["group"])
    try:
        _pull(module, p, tool, path, cmd, env, ident, run_params, dest_changed, regex)
    finally:
        ident.cleanup()
        if dry_dest:
            shutil.rmtree(dry_dest, ignore_errors=True)


def _pull(module, p, tool, path, cmd, env, ident, run_params, dest_changed, regex):
    """List and check every object name, run the tool as `ident`, report what moved."""
    dry_run = module.check_mode
    access = _api_access(p)
    # Every object under src, before anything is copied: one bad name stops the whole pull.
    ls_rc, ls_out, sizes, entries = _list_objects(module, tool, path, p, env, ident, access)
    if ls_rc != 0 and not _NO_MATCH_RE.search(ls_out):
        # Nothing was copied; say why in the same words as a failed rsync.
        kind, explanation = classify_error(ls_out)
        msg = "gcs_rsync: pulling %s to %s with %s failed" % (p["src"], p["dest"], tool)
        msg += (": " + explanation) if explanation else " (listing the objects to check their names)"
        msg += ". The tool said: " + " | ".join(error_lines(ls_out))
        module.fail_json(msg=msg, error_kind=kind, changed=False, tool=tool, command=cmd, rc=ls_rc)
    _check_names(module, p, sizes)
    selected = _direct_selection(p, access, entries, regex, run_params["dest"])
    if selected:
        _direct_pull(module, p, access, selected, ident, dest_changed)
    rc, output, elapsed = _run(cmd, env, p["log_file"], ident)
    parsed = parse_rsync_output(output, p["src"], run_params["dest"])
    copied, deleted = parsed["copied"], parsed["deleted"]

    if dry_run:
        nbytes = sum(sizes.get(rel, 0) for rel in copied)
    else:
        nbytes = 0
        for rel in copied:
            try:
                nbytes += os.lstat(os.path.join(p["dest"], rel)).st_size
            except OSError:
                pass  # failed copies leave nothing behind; the failure is reported below

    result = dict(
        changed=bool(copied or deleted or dest_changed),
        dest_changed=dest_changed,
        tool=tool,
        command=cmd,
        source=p["src"],
        destination=p["dest"],
        dry_run=dry_run,
        files_copied=len(copied),
        bytes_copied=nbytes,
        bytes_copied_human=human_bytes(nbytes),
        files_deleted=len(deleted),
        copied=copied[: p["list_limit"]],
        deleted=deleted[: p["list_limit"]],
        elapsed_s=round(elapsed, 2),
        mib_per_s=round(nbytes / 1048576.0 / elapsed, 1) if elapsed > 0 and not dry_run else None,
        rc=rc,
    )
    if p["log_file"]:
        result["log_file"] = p["log_file"]

    if rc != 0:
        kind, explanation = classify_error(output)
        details = error_lines(output)
        msg = "gcs_rsync: pulling %s to %s with %s failed" % (p["src"], p["dest"], tool)
        if explanation:
            msg += ": " + explanation
        msg += ". The tool said: " + " | ".join(details)
        if p["log_file"]:
            msg += " (full output: %s)" % p["log_file"]
        result.pop("changed")
        module.fail_json(msg=msg, error_kind=kind, changed=bool(copied or deleted or dest_changed), **result)

    # The tool's output is checked again: an object added after the listing is not trusted either.
    late = [(rel, object_name_problem(rel)) for rel in copied + deleted if object_name_problem(rel)]
    if late:
        result.pop("changed")
        module.fail_json(msg="gcs_rsync: %s to %s: the tool reported paths that break the object name "
                             "rules (added to the bucket after the listing?): %s"
                             % (p["src"], p["dest"], "; ".join("%s: %s" % r for r in late[:10])),
                         error_kind="unsafe_object_name", changed=True, **result)
    module.exit_json(**result)


def _direct_selection(p, access, entries, regex, dest):
    """The entries to fetch with the module's own download, or None to leave the pull to the
    tool: only a first pull (dest empty) of objects listed from the JSON API qualifies."""
    if not p["direct"] or entries is None:
        return None
    try:
        if os.listdir(dest):
            return None  # files to compare: the tool's rsync does that
    except OSError:
        return None
    selected = [e for rel, e in sorted(entries.items()) if not is_excluded(regex, rel)]
    if not selected or direct_problem(selected, access[0]):
        return None
    return selected


def _drop_privileges(spawn):
    """In the download's child: become the identity the tool would have run as."""
    if "extra_groups" in spawn:
        os.setgroups(spawn["extra_groups"])
    if "group" in spawn:
        os.setresgid(spawn["group"], spawn["group"], spawn["group"])
    if "user" in spawn:
        os.setresuid(spawn["user"], spawn["user"], spawn["user"])


def _fetch_as(ident, fetcher, selected):
    """Run fetcher in a child process as `ident` (the pull's owner when root runs the module), so
    every file and directory is created by the owner, as the tool's would be; return its result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe, then exits
        code = 1
        try:
            os.close(read_end)
            os.chdir("/")
            _drop_privileges(ident.spawn)
            data = json.dumps(fetcher.run(selected)).encode("utf-8")
            code = 0
        except BaseException as exc:  # noqa: BLE001 - whatever happened is reported, never raised here
            data = json.dumps({"crash": "%s: %s" % (type(exc).__name__, exc)}).encode("utf-8")
        try:
            while data:
                data = data[os.write(write_end, data):]
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        for chunk in iter(lambda: pipe.read(65536), b""):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError:
        return {"crash": "the download process ended without a result"}


def _direct_pull(module, p, access, selected, ident, dest_changed):
    """Fetch `selected` from the JSON API into the empty dest and exit the module."""
    base, headers, cafile = access
    bucket = p["src"][len("gs://"):].partition("/")[0]
    nbytes = sum(e["size"] for e in selected)
    result = dict(tool="json-api", command=[], source=p["src"], destination=p["dest"], dry_run=module.check_mode,
                  files_deleted=0, deleted=[], dest_changed=dest_changed, rc=0)
    if p["log_file"]:
        result["log_file"] = p["log_file"]
    if module.check_mode:
        copied = [e["rel"] for e in selected]
        module.exit_json(changed=True, files_copied=len(copied), copied=copied[: p["list_limit"]],
                         bytes_copied=nbytes, bytes_copied_human=human_bytes(nbytes), elapsed_s=0.0,
                         mib_per_s=None, **result)
    with contextlib.ExitStack() as stack:
        log_fd = None
        if p["log_file"]:
            os.makedirs(os.path.dirname(p["log_file"]) or ".", exist_ok=True)
            log = stack.enter_context(open(p["log_file"], "ab", buffering=0))
            log_fd = log.fileno()
            log.write(("\n=== %s %s from %s/storage/v1 to %s: %d objects, %s\n" % (
                datetime.datetime.now().isoformat(timespec="seconds"), p["src"], base, p["dest"], len(selected),
                human_bytes(nbytes))).encode("utf-8"))
        fetcher = Fetcher(base, bucket, p["dest"], headers=headers, cafile=cafile, threads=p["threads"],
                          retries=p["retries"], log_fd=log_fd,
                          refresh_token=None if p["endpoint"] else _metadata_token)
        start = time.monotonic()
        out = _fetch_as(ident, fetcher, selected)
        elapsed = time.monotonic() - start
        errors = out.get("errors") or ([("", "unknown", out["crash"])] if "crash" in out else [])
        if log_fd is not None:
            log.write(("=== exit %d after %.1f s\n" % (1 if errors else 0, elapsed)).encode("utf-8"))
    copied = sorted(out.get("copied", []))
    done = out.get("bytes", 0)
    result.update(files_copied=len(copied), copied=copied[: p["list_limit"]], bytes_copied=done,
                  bytes_copied_human=human_bytes(done), elapsed_s=round(elapsed, 2),
                  mib_per_s=round(done / 1048576.0 / elapsed, 1) if elapsed > 0 else None)
    if errors:
        result["rc"] = 1
        _rel, kind, text = errors[0]
        msg = "gcs_rsync: pulling %s to %s from the storage JSON API failed: %s. %s" % (
            p["src"], p["dest"], DIRECT_EXPLAIN.get(kind, "unexpected error"), text)
        if p["log_file"]:
            msg += " (log: %s)" % p["log_file"]
        module.fail_json(msg=msg, error_kind=kind, changed=bool(copied or dest_changed), **result)
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
