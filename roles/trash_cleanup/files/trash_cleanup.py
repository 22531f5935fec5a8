#!/usr/bin/python3
"""Empty old entries from freedesktop.org Trash directories (~/.local/share/Trash).

Jupyter's file manager moves deleted files to the user's Trash (``delete_to_trash = True``) and
nothing ever empties it, so a notebook VM's disk slowly fills. This cleaner removes trash entries
whose ``DeletionDate`` is older than N days (0: all of them), following the trash specification:
an entry is ``files/NAME`` plus ``info/NAME.trashinfo``; orphans on either side, ``expunged/``
and the ``directorysizes`` cache are handled too.

Why it runs as root, confined by directory file descriptors (rather than as each user):
the trash can hold things its owner cannot delete (a root-owned, mode 000 tree that a notebook
running as root dropped there), and one run must serve every user. Running as root is safe only
if nothing is ever reached through a symlink, so every directory is opened with
``openat(O_DIRECTORY | O_NOFOLLOW)`` relative to its parent's descriptor and every removal is an
``unlinkat``/``rmdir`` relative to an open directory: a symlink inside the trash is removed as a
link and never traversed, a path renamed under us cannot redirect a removal outside the tree,
other file systems mounted inside the trash are not entered, and a Trash directory reached
through a symlinked ``.local``, ``share`` or ``Trash`` is refused and reported. The traversal is
iterative (no recursion limit; one descriptor per level), so deep trees are fine.

Bytes are reported as disk usage (``st_blocks * 512``, what ``du`` counts), counting a hard-linked
file only when its last link goes, and including the change in size of the trash's own
directories, so the figure equals the drop in ``du`` over the file system.

Python 3 standard library only. Exit status: 0 clean run, 1 some items could not be removed
(see ``errors``), 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pwd
import resource
import socket
import stat
import sys
import time
import urllib.parse

__all__ = [
    "Options",
    "Cleaner",
    "parse_trashinfo",
    "deletion_timestamp",
    "is_expired",
    "TRASH_RELATIVE",
    "main",
]

#: Where a user's trash lives, relative to the home directory ($XDG_DATA_HOME/Trash).
TRASH_RELATIVE = (".local", "share", "Trash")
INFO_SUFFIX = ".trashinfo"
DIRECTORYSIZES = "directorysizes"
#: A .trashinfo is a few hundred bytes; refuse to read megabytes a user may have put there.
MAX_TRASHINFO_BYTES = 64 * 1024
MAX_DIRECTORYSIZES_BYTES = 16 * 1024 * 1024
#: An info file without its files/ entry may be an entry being trashed right now (the spec has
#: the info file written first): leave such orphans alone for this long.
ORPHAN_INFO_GRACE_S = 3600
DEFAULT_MIN_UID = 1000
DEFAULT_CONFIG = "/etc/trash-cleanup/config.json"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO named NAME.trashinfo must not hang the run.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)


class Refused(Exception):
    """The trash directory is not safe to clean (reached through a symlink, foreign owner...)."""


def printable(text: str) -> str:
    """A name as one safe log line: newlines, control and undecodable bytes escaped."""
    return json.dumps(text, ensure_ascii=True)[1:-1]


# --------------------------------------------------------------------------------------------
# Trash specification helpers
# --------------------------------------------------------------------------------------------


def parse_trashinfo(data: bytes) -> dict:
    """Parse a .trashinfo file: ``{"path": str | None, "deletion_date": str | None}``.

    Only keys of the ``[Trash Info]`` group count; other groups, comments and junk are ignored.
    ``Path`` is returned percent-decoded.
    """
    text = data.decode("utf-8", errors="replace")
    group = None
    found: dict = {"path": None, "deletion_date": None}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
            continue
        if group != "Trash Info" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        value = value.strip()
        if key == "Path" and found["path"] is None:
            found["path"] = urllib.parse.unquote(value, errors="surrogateescape")
        elif key == "DeletionDate" and found["deletion_date"] is None:
            found["deletion_date"] = value
    return found


def deletion_timestamp(value: str | None) -> float | None:
    """Seconds since the epoch for a DeletionDate (``YYYY-MM-DDThh:mm:ss``, local time).

    Offsets and fractions some implementations write are accepted; anything else gives None.
    """
    if not value:
        return None
    value = value.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    try:
        # A naive datetime is local time, which is what the specification says DeletionDate is.
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def is_expired(timestamp: float | None, now: float, older_than_days: int) -> bool:
    """Whether something trashed at ``timestamp`` is due for removal (0 days: everything)."""
    if older_than_days <= 0:
        return True
    if timestamp is None:
        return False
    return now - timestamp >= older_than_days * 86400


# --------------------------------------------------------------------------------------------
# Removal, confined to open directory descriptors
# --------------------------------------------------------------------------------------------


class _Frame:
    __slots__ = ("parent_fd", "name", "fd", "st", "names", "ok")

    def __init__(self, parent_fd: int, name: str, fd: int, st: os.stat_result, names: list):
        self.parent_fd = parent_fd
        self.name = name
        self.fd = fd
        self.st = st
        self.names = names
        self.ok = True


class TrashReport:
    """Figures for one trash directory."""

    def __init__(self, path: str, user: str | None):
        self.path = path
        self.user = user
        self.status = "cleaned"
        self.reason = ""
        self.bytes_freed = 0
        self.apparent_bytes_freed = 0
        self.entries_removed = 0
        self.entries_kept = 0
        self.orphans_removed = 0
        self.expunged_removed = 0
        self.inodes_removed = 0
        self.errors: list[str] = []
        self.removed: list[str] = []

    def as_dict(self, list_names: bool) -> dict:
        data = {
            "path": self.path,
            "user": self.user,
            "status": self.status,
            "reason": self.reason,
            "bytes_freed": self.bytes_freed,
            "apparent_bytes_freed": self.apparent_bytes_freed,
            "entries_removed": self.entries_removed,
            "entries_kept": self.entries_kept,
            "orphans_removed": self.orphans_removed,
            "expunged_removed": self.expunged_removed,
            "inodes_removed": self.inodes_removed,
            "errors": self.errors,
        }
        if list_names:
            data["removed"] = self.removed
        return data


class _Remover:
    """Removes trees below one trash directory without ever leaving it."""

    def __init__(self, report: TrashReport, dev: int, dry_run: bool, max_depth: int):
        self.report = report
        self.dev = dev
        self.dry_run = dry_run
        self.max_depth = max_depth
        # Hard links seen in a dry run: (dev, ino) -> links not yet "removed".
        self._links_left: dict = {}

    def _error(self, where: str, exc: BaseException | str) -> None:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.report.errors.append("%s: %s" % (printable(where), detail))

    def _account(self, st: os.stat_result) -> None:
        self.report.inodes_removed += 1
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            # The data goes only with its last link; a link to a file outside the trash frees
            # nothing.
            if not self.dry_run:
                return
            key = (st.st_dev, st.st_ino)
            left = self._links_left.get(key, st.st_nlink) - 1
            self._links_left[key] = left
            if left > 0:
                return
        self.report.bytes_freed += st.st_blocks * 512
        self.report.apparent_bytes_freed += st.st_size

    def _unlink(self, parent_fd: int, name: str, st: os.stat_result, where: str) -> bool:
        if self.dry_run:
            self._account(st)
            return True
        try:
            # Fresh lstat right before unlinking: the link count is what decides whether
            # the data is freed.
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            os.unlink(name, dir_fd=parent_fd)
        except FileNotFoundError:
            return True
        except OSError as exc:
            self._error(where, exc)
            return False
        if st.st_nlink == 1 or stat.S_ISDIR(st.st_mode):
            self.report.bytes_freed += st.st_blocks * 512
            self.report.apparent_bytes_freed += st.st_size
        self.report.inodes_removed += 1
        return True

    def _rmdir(self, parent_fd: int, name: str, st: os.stat_result, where: str) -> bool:
        if self.dry_run:
            self._account(st)
            return True
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            os.rmdir(name, dir_fd=parent_fd)
        except FileNotFoundError:
            return True
        except OSError as exc:
            self._error(where, exc)
            return False
        self._account(st)
        return True

    def _open_dir(self, parent_fd: int, name: str, st: os.stat_result) -> int:
        """Open a directory entry of parent_fd, refusing symlinks, swaps and mount points."""
        if st.st_dev != self.dev:
            raise OSError(0, "on another file system (mount point), not entered")
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)
            raise OSError(0, "replaced while being removed, left alone")
        return fd

    def remove(self, parent_fd: int, name: str, where: str) -> bool:
        """Remove ``name`` (in the directory open as parent_fd) and everything below it.

        Returns True when it is gone (or would be, in a dry run).
        """
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        except OSError as exc:
            self._error(where, exc)
            return False
        if not stat.S_ISDIR(st.st_mode):
            return self._unlink(parent_fd, name, st, where)
        try:
            fd = self._open_dir(parent_fd, name, st)
            names = os.listdir(fd)
        except OSError as exc:
            self._error(where, exc)
            return False
        stack = [_Frame(parent_fd, name, fd, st, names)]
        paths = [where]
        all_ok = True
        while stack:
            frame = stack[-1]
            if frame.names:
                child = frame.names.pop()
                child_where = paths[-1] + "/" + child
                try:
                    cst = os.stat(child, dir_fd=frame.fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    self._error(child_where, exc)
                    frame.ok = False
                    continue
                if not stat.S_ISDIR(cst.st_mode):
                    if not self._unlink(frame.fd, child, cst, child_where):
                        frame.ok = False
                    continue
                if len(stack) >= self.max_depth:
                    self._error(child_where, "deeper than %d levels, left alone" % self.max_depth)
                    frame.ok = False
                    continue
                try:
                    cfd = self._open_dir(frame.fd, child, cst)
                except OSError as exc:
                    self._error(child_where, exc)
                    frame.ok = False
                    continue
                try:
                    cnames = os.listdir(cfd)
                except OSError as exc:
                    os.close(cfd)
                    self._error(child_where, exc)
                    frame.ok = False
                    continue
                stack.append(_Frame(frame.fd, child, cfd, cst, cnames))
                paths.append(child_where)
                continue
            stack.pop()
            where_done = paths.pop()
            os.close(frame.fd)
            done = frame.ok and self._rmdir(frame.parent_fd, frame.name, frame.st, where_done)
            if not done:
                if stack:
                    stack[-1].ok = False
                all_ok = False
        return all_ok


# --------------------------------------------------------------------------------------------
# One trash directory
# --------------------------------------------------------------------------------------------


def _open_trash_for_home(home: str, uid: int) -> int:
    """Open HOME/.local/share/Trash without following a symlink past HOME itself."""
    # HOME comes from the password database (the administrator's word); from there on no
    # component may be a symlink.
    try:
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise Refused("home %s: %s" % (printable(home), exc.strerror)) from exc
    where = home
    try:
        for part in TRASH_RELATIVE:
            where = os.path.join(where, part)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError):
                    raise
                if os.path.islink(where):
                    raise Refused("%s is a symlink, refusing to follow it" % printable(where)) from exc
                raise Refused("%s: %s" % (printable(where), exc.strerror)) from exc
            os.close(fd)
            fd = child
        st = os.fstat(fd)
        if st.st_uid not in (uid, 0):
            raise Refused("%s is owned by uid %d, not by its user (uid %d)" % (printable(where), st.st_uid, uid))
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_trash_path(path: str) -> int:
    """Open an explicitly configured Trash directory; its last component may not be a symlink."""
    parent, name = os.path.split(os.path.normpath(path))
    try:
        pfd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise Refused("%s: %s" % (printable(parent), exc.strerror)) from exc
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=pfd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise Refused("%s is a symlink, refusing to follow it" % printable(path)) from exc
        raise Refused("%s: %s" % (printable(path), exc.strerror)) from exc
    finally:
        os.close(pfd)


def _read_small_regular(dir_fd: int, name: str, limit: int) -> tuple[bytes, os.stat_result] | None:
    """Contents of a regular file in dir_fd (never through a symlink), or None."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(65536, left))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), st
    except OSError:
        return None
    finally:
        os.close(fd)


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None


def _blocks(fd: int | None) -> int:
    if fd is None:
        return 0
    try:
        return os.fstat(fd).st_blocks * 512
    except OSError:
        return 0


class Options:
    """What to clean and how."""

    def __init__(
        self,
        older_than_days: int = 30,
        users: list | None = None,
        paths: list | None = None,
        min_uid: int = DEFAULT_MIN_UID,
        dry_run: bool = False,
        list_names: bool = False,
        now: float | None = None,
        orphan_info_grace_s: int = ORPHAN_INFO_GRACE_S,
        all_users: bool = False,
    ):
        self.older_than_days = int(older_than_days)
        self.users = list(users or [])
        self.paths = list(paths or [])
        self.min_uid = int(min_uid)
        self.dry_run = bool(dry_run)
        self.list_names = bool(list_names)
        self.now = now
        self.orphan_info_grace_s = int(orphan_info_grace_s)
        # With explicit paths and no users only those paths are cleaned, unless all_users says
        # every home too (what a scheduled run wants: homes plus, say, a data disk's Trash).
        if not isinstance(all_users, bool):
            raise TypeError("all_users must be true or false")
        self.all_users = all_users


def _max_depth() -> int:
    """How deep a tree may be: one descriptor per level, so bounded by the open-files limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 1 << 20:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft - 64)


class Cleaner:
    """Cleans a set of trash directories and collects the figures."""

    def __init__(self, options: Options):
        self.options = options
        self.max_depth = _max_depth()
        self.reports: list[TrashReport] = []
        self.errors: list[str] = []

    # -- targets ------------------------------------------------------------------------------

    def targets(self) -> list:
        """(path, user, uid | None) for every trash directory to look at, without duplicates."""
        found = []
        seen = set()
        opts = self.options
        if opts.users:
            accounts = []
            for name in opts.users:
                try:
                    accounts.append(pwd.getpwnam(name))
                except KeyError:
                    self.errors.append("unknown user %s" % printable(name))
        elif opts.paths and not opts.all_users:
            accounts = []
        else:
            accounts = [
                pw
                for pw in pwd.getpwall()
                if pw.pw_uid >= opts.min_uid
                and pw.pw_uid != 65534
                and pw.pw_dir
                and pw.pw_dir not in ("/", "/nonexistent")
            ]
            accounts.sort(key=lambda pw: pw.pw_uid)
        for pw in accounts:
            path = os.path.join(pw.pw_dir, *TRASH_RELATIVE)
            if path not in seen:
                seen.add(path)
                found.append((path, pw.pw_name, pw.pw_dir, pw.pw_uid))
        for path in opts.paths:
            path = os.path.normpath(path)
            if path not in seen:
                seen.add(path)
                found.append((path, None, None, None))
        return found

    # -- run ----------------------------------------------------------------------------------

    def run(self) -> dict:
        now = self.options.now if self.options.now is not None else time.time()
        for path, user, home, uid in self.targets():
            self.reports.append(self.clean_one(path, user, home, uid, now))
        return self.summary()

    def clean_one(self, path: str, user, home, uid, now: float) -> TrashReport:
        report = TrashReport(path, user)
        try:
            trash_fd = _open_trash_for_home(home, uid) if home is not None else _open_trash_path(path)
        except FileNotFoundError:
            report.status = "absent"
            return report
        except Refused as exc:
            report.status = "refused"
            report.reason = str(exc)
            return report
        try:
            self._clean_open_trash(trash_fd, report, now)
        finally:
            os.close(trash_fd)
        return report

    def _subdir(self, trash_fd: int, name: str, report: TrashReport) -> int | None:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=trash_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            st = _lstat_at(trash_fd, name)
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise Refused("%s/%s is a symlink, refusing to follow it" % (printable(report.path), name)) from exc
            raise Refused("%s/%s: %s" % (printable(report.path), name, exc.strerror)) from exc

    def _clean_open_trash(self, trash_fd: int, report: TrashReport, now: float) -> None:
        opts = self.options
        dev = os.fstat(trash_fd).st_dev
        remover = _Remover(report, dev, opts.dry_run, self.max_depth)
        opened: dict = {}
        try:
            for sub in ("files", "info", "expunged"):
                opened[sub] = self._subdir(trash_fd, sub, report)
        except Refused as exc:
            for fd in opened.values():
                if fd is not None:
                    os.close(fd)
            report.status = "refused"
            report.reason = str(exc)
            return
        files_fd, info_fd, expunged_fd = opened["files"], opened["info"], opened["expunged"]
        # The trash's own directories can shrink as entries go (XFS, btrfs): count that too, so
        # the figure matches du.
        own_before = sum(_blocks(fd) for fd in (trash_fd, files_fd, info_fd, expunged_fd))
        try:
            file_names = set(os.listdir(files_fd)) if files_fd is not None else set()
            info_names = set(os.listdir(info_fd)) if info_fd is not None else set()
            base = report.path
            removed: set = set()

            # Entries: files/NAME, aged by info/NAME.trashinfo (or by when it was moved there).
            for name in sorted(file_names):
                info_name = name + INFO_SUFFIX
                has_info = info_name in info_names
                stamp = None
                if has_info:
                    stamp = self._info_timestamp(info_fd, info_name)
                if stamp is None:
                    st = _lstat_at(files_fd, name)
                    if st is None:
                        continue
                    # rename(2) into files/ updates ctime: the best guess of the deletion time.
                    stamp = st.st_ctime
                if not is_expired(stamp, now, opts.older_than_days):
                    report.entries_kept += 1
                    continue
                # The specification's order: the file first, then its info, so a crash leaves a
                # harmless orphan info file rather than an undeletable orphan.
                if remover.remove(files_fd, name, base + "/files/" + name):
                    if has_info:
                        remover.remove(info_fd, info_name, base + "/info/" + info_name)
                        info_names.discard(info_name)
                    report.entries_removed += 1
                    report.removed.append("files/" + name)
                    removed.add(name)

            # Orphans: info files (or junk) with no files/ entry.
            grace = max(opts.orphan_info_grace_s, opts.older_than_days * 86400)
            for info_name in sorted(info_names):
                if info_name.endswith(INFO_SUFFIX) and info_name[: -len(INFO_SUFFIX)] in file_names:
                    continue
                st = _lstat_at(info_fd, info_name)
                if st is None or now - st.st_mtime < grace:
                    continue
                if remover.remove(info_fd, info_name, base + "/info/" + info_name):
                    report.orphans_removed += 1
                    report.entries_removed += 1
                    report.removed.append("info/" + info_name)

            # expunged/: what an implementation was in the middle of deleting; all of it goes.
            if expunged_fd is not None:
                for name in sorted(os.listdir(expunged_fd)):
                    if remover.remove(expunged_fd, name, base + "/expunged/" + name):
                        report.expunged_removed += 1
                        report.entries_removed += 1
                        report.removed.append("expunged/" + name)

            if files_fd is None:
                remaining: set = set()
            elif opts.dry_run:
                remaining = file_names - removed
            else:
                remaining = set(os.listdir(files_fd))
            self._prune_directorysizes(trash_fd, report, remaining, remover)
        except OSError as exc:
            report.errors.append("%s: %s" % (printable(report.path), exc.strerror or exc))
        finally:
            if not opts.dry_run:
                own_after = sum(_blocks(fd) for fd in (trash_fd, files_fd, info_fd, expunged_fd))
                report.bytes_freed += own_before - own_after
            for fd in (files_fd, info_fd, expunged_fd):
                if fd is not None:
                    os.close(fd)

    def _info_timestamp(self, info_fd: int, info_name: str) -> float | None:
        got = _read_small_regular(info_fd, info_name, MAX_TRASHINFO_BYTES)
        if got is not None:
            data, st = got
            stamp = deletion_timestamp(parse_trashinfo(data)["deletion_date"])
            return stamp if stamp is not None else st.st_mtime
        st = _lstat_at(info_fd, info_name)
        return st.st_mtime if st is not None else None

    def _prune_directorysizes(self, trash_fd: int, report: TrashReport, remaining: set, remover: _Remover) -> None:
        """Drop directorysizes lines of entries that are gone (the file is only a cache)."""
        st = _lstat_at(trash_fd, DIRECTORYSIZES)
        if st is None:
            return
        if not stat.S_ISREG(st.st_mode):
            # A symlink or anything odd in place of the cache: removed as itself.
            remover.remove(trash_fd, DIRECTORYSIZES, report.path + "/" + DIRECTORYSIZES)
            return
        got = _read_small_regular(trash_fd, DIRECTORYSIZES, MAX_DIRECTORYSIZES_BYTES)
        if got is None:
            return
        data, st = got
        lines = data.split(b"\n")
        keep = []
        dropped = 0
        for line in lines:
            if not line.strip():
                continue
            fields = line.split(b" ", 2)
            if len(fields) == 3:
                name = urllib.parse.unquote(fields[2].decode("ascii", errors="replace"), errors="surrogateescape")
                if name in remaining:
                    keep.append(line)
                    continue
            dropped += 1
        if not dropped or self.options.dry_run:
            return
        content = b"".join(line + b"\n" for line in keep)
        tmp = DIRECTORYSIZES + ".trash-cleanup.tmp"
        try:
            try:
                os.unlink(tmp, dir_fd=trash_fd)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=trash_fd)
            try:
                os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                os.write(fd, content)
                os.fsync(fd)
                new_blocks = os.fstat(fd).st_blocks * 512
            finally:
                os.close(fd)
            os.rename(tmp, DIRECTORYSIZES, src_dir_fd=trash_fd, dst_dir_fd=trash_fd)
            report.bytes_freed += st.st_blocks * 512 - new_blocks
            report.apparent_bytes_freed += st.st_size - len(content)
        except OSError as exc:
            report.errors.append("%s/%s: %s" % (printable(report.path), DIRECTORYSIZES, exc.strerror))

    # -- results ------------------------------------------------------------------------------

    def summary(self) -> dict:
        reports = self.reports
        errors = list(self.errors) + [e for r in reports for e in r.errors]
        return {
            "host": socket.gethostname(),
            "dry_run": self.options.dry_run,
            "older_than_days": self.options.older_than_days,
            "bytes_freed": sum(r.bytes_freed for r in reports),
            "apparent_bytes_freed": sum(r.apparent_bytes_freed for r in reports),
            "entries_removed": sum(r.entries_removed for r in reports),
            "entries_kept": sum(r.entries_kept for r in reports),
            "inodes_removed": sum(r.inodes_removed for r in reports),
            "trash_dirs": [r.as_dict(self.options.list_names) for r in reports],
            "refused": [{"path": r.path, "reason": r.reason} for r in reports if r.status == "refused"],
            "errors": errors,
        }


def summary_line(result: dict) -> str:
    """The one line for the journal."""
    verb = "would free" if result["dry_run"] else "freed"
    cleaned = sum(1 for t in result["trash_dirs"] if t["status"] == "cleaned")
    return (
        "%s %d bytes (%.1f MiB) in %d entries from %d trash directories; %d entries kept "
        "(newer than %d days), %d refused, %d errors"
        % (
            verb,
            result["bytes_freed"],
            result["bytes_freed"] / 1048576.0,
            result["entries_removed"],
            cleaned,
            result["entries_kept"],
            result["older_than_days"],
            len(result["refused"]),
            len(result["errors"]),
        )
    )


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _load_config(path: str | None, required: bool) -> dict:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        if required:
            raise SystemExit("trash-cleanup: config file %s not found" % path) from None
        return {}
    except (OSError, ValueError) as exc:
        raise SystemExit("trash-cleanup: cannot read config %s: %s" % (path, exc)) from None
    if not isinstance(data, dict):
        raise SystemExit("trash-cleanup: config %s must hold a JSON object" % path)
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trash-cleanup",
        description="Empty entries older than N days from users' ~/.local/share/Trash.",
    )
    parser.add_argument("--config", help="JSON file with older_than_days, users, paths, all_users, min_uid (default %s if present)" % DEFAULT_CONFIG)
    parser.add_argument("--older-than-days", type=int, help="remove entries trashed at least this many days ago; 0 removes all")
    parser.add_argument("--user", action="append", dest="users", help="clean this user's trash (repeatable; default: every user with uid >= --min-uid)")
    parser.add_argument("--path", action="append", dest="paths", help="clean this Trash directory too (repeatable)")
    parser.add_argument("--all-users", action="store_true", default=None, help="clean every user's trash as well as the --path ones (the default when no --path is given)")
    parser.add_argument("--no-config", action="store_true", help="read no config file: the command line says everything")
    parser.add_argument("--min-uid", type=int, help="lowest uid of the users cleaned by default (default %d)" % DEFAULT_MIN_UID)
    parser.add_argument("--dry-run", action="store_true", help="remove nothing; report what would be freed")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout (the summary line goes to stderr)")
    parser.add_argument("--report-file", help="also write the JSON result to this file")
    parser.add_argument("--list", action="store_true", dest="list_names", help="include the removed entry names in the JSON")
    parser.add_argument("--syslog", action="store_true", help="also send the summary line to syslog/the journal")
    return parser


def _write_report(path: str, result: dict) -> None:
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, ".%s.tmp" % os.path.basename(path))
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def main(argv: list | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.no_config and args.config:
        print("trash-cleanup: --config and --no-config exclude each other", file=sys.stderr)
        return 2
    config = {} if args.no_config else _load_config(args.config or DEFAULT_CONFIG, required=bool(args.config))

    def pick(cli, key, default):
        return cli if cli is not None else config.get(key, default)

    try:
        options = Options(
            older_than_days=pick(args.older_than_days, "older_than_days", 30),
            users=pick(args.users, "users", []),
            paths=pick(args.paths, "paths", []),
            min_uid=pick(args.min_uid, "min_uid", DEFAULT_MIN_UID),
            all_users=pick(args.all_users, "all_users", False),
            dry_run=args.dry_run,
            list_names=args.list_names,
        )
    except (TypeError, ValueError) as exc:
        print("trash-cleanup: bad setting: %s" % exc, file=sys.stderr)
        return 2
    if options.older_than_days < 0:
        print("trash-cleanup: older_than_days must be >= 0", file=sys.stderr)
        return 2
    for path in options.paths:
        if not os.path.isabs(path):
            print("trash-cleanup: path %s is not absolute" % printable(path), file=sys.stderr)
            return 2

    cleaner = Cleaner(options)
    result = cleaner.run()
    log = sys.stderr if args.json else sys.stdout
    for trash in result["trash_dirs"]:
        if trash["status"] == "refused":
            print("refused %s: %s" % (printable(trash["path"]), trash["reason"]), file=log)
        elif trash["status"] == "cleaned" and (trash["entries_removed"] or trash["errors"]):
            print(
                "%s %s: %d bytes in %d entries, %d kept"
                % ("would clean" if options.dry_run else "cleaned", printable(trash["path"]), trash["bytes_freed"], trash["entries_removed"], trash["entries_kept"]),
                file=log,
            )
    for error in result["errors"]:
        print("error: %s" % error, file=log)
    line = summary_line(result)
    print(line, file=log)
    log.flush()
    if args.syslog and not os.environ.get("JOURNAL_STREAM"):
        import syslog

        syslog.openlog("trash-cleanup", 0, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_INFO, line)
    if args.report_file:
        _write_report(args.report_file, result)
    if args.json:
        json.dump(result, sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
