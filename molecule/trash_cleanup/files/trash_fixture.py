#!/usr/bin/python3
"""Hostile trash fixture for the trash_cleanup scenario. Runs INSIDE the test container only.

    trash_fixture.py seed       users, hostile trash directories, and targets outside them;
                                saves a snapshot of everything outside the trash to MANIFEST;
                                starts a stand-in jupyter.service and saves its InvocationID
    trash_fixture.py reseed     a fresh batch of old, recent and hostile entries (verify)
    trash_fixture.py snapshot   print the snapshot of everything outside the trash (JSON)

The symlinks here point at the container's /etc, /root and other users' files on purpose: the
cleaner runs as root and must remove the links without ever going through them. The script
refuses to run outside a podman container, so it can never plant these links on a real machine.
"""

import hashlib
import json
import os
import pwd
import subprocess
import sys
import time
import urllib.parse

MANIFEST = "/var/lib/trash-fixture/outside.json"
JUPYTER_INVOCATION = "/var/lib/trash-fixture/jupyter-invocation"
# Stands in for the jupyter role's unit: the role must restart it when its drop-in changes.
JUPYTER_UNIT = """[Unit]
Description=Stand-in for the Jupyter server (trash_cleanup scenario)
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""
OLD = "2020-01-02T03:04:05"  # far older than any threshold
USERS = {"alice": 1001, "bob": 1002, "carol": 1003, "dave": 1004}
SCRATCH_TRASH = "/srv/scratch/Trash"  # trash_cleanup_paths in converge.yml
# Everything the cleaner must leave exactly as it was. /etc minus what the role itself writes.
WATCHED = ["/etc", "/root/secret.txt", "/srv/outside", "/srv/decoy-share", "/home/alice/keep", "/home/bob/private"]
ROLE_OWNED = ("/etc/systemd/system", "/etc/trash-cleanup", "/etc/jupyter")
# Files podman or systemd may rewrite while the container runs, whatever the cleaner does.
VOLATILE = ("/etc/resolv.conf", "/etc/hosts", "/etc/hostname", "/etc/mtab", "/etc/ld.so.cache")


def in_container() -> bool:
    return os.path.exists("/run/.containerenv") or os.environ.get("container") == "podman"


def now_stamp(offset_s: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + offset_s))


def trash_of(user: str) -> str:
    return os.path.join("/home", user, ".local/share/Trash")


def chown_tree(path: str, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            os.lchown(name, uid, uid)


def write(path: str, size: int, uid: int | None = None, mode: int = 0o644, seed: bytes = b"") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Incompressible bytes: no file system trick makes du differ from the real blocks.
    block = hashlib.sha256(seed or path.encode()).digest()
    with open(path, "wb") as handle:
        handle.write((block * (size // len(block) + 1))[:size])
    os.chmod(path, mode)
    if uid is not None:
        os.lchown(path, uid, uid)


def info(trash: str, name: str, date: str, uid: int) -> None:
    path = os.path.join(trash, "info", name + ".trashinfo")
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write("[Trash Info]\nPath=%s\nDeletionDate=%s\n" % (urllib.parse.quote("/home/x/" + name), date))
    os.lchown(path, uid, uid)


def make_trash(trash: str, uid: int) -> None:
    for sub in ("", "files", "info"):
        os.makedirs(os.path.join(trash, sub), exist_ok=True)
        os.chown(os.path.join(trash, sub), uid, uid)
    os.chmod(trash, 0o700)


def deep_tree(base: str, levels: int, uid: int) -> None:
    os.mkdir(base)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    leaf = os.open("leaf.bin", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(leaf, b"L" * 70000)
    os.close(leaf)
    os.symlink("/etc", "etc-at-the-bottom", dir_fd=fd)
    os.close(fd)
    chown_tree(base, uid)


def hostile_entries(trash: str, uid: int, tag: str) -> None:
    """Old entries that try every way out of the trash; all of them are due for removal."""
    files = os.path.join(trash, "files")
    links = {
        "etc" + tag: "/etc",                                   # an entry that is a link to a directory
        "passwd" + tag: "/etc/passwd",
        "root-secret" + tag: "/root/secret.txt",
        "bob-private" + tag: "/home/bob/private",              # another user's files
        "outside dir" + tag: "/srv/outside",                   # spaces, and a directory outside
        "dotdot" + tag: "../../../../../etc",
    }
    for name, target in links.items():
        os.symlink(target, os.path.join(files, name))
        os.lchown(os.path.join(files, name), uid, uid)
        info(trash, name, OLD, uid)
    # A directory with links inside it, names with spaces and newlines, real data.
    project = os.path.join(files, "project with spaces" + tag)
    os.makedirs(os.path.join(project, "sub dir"))
    write(os.path.join(project, "data.csv"), 1_500_000, uid)
    write(os.path.join(project, "sub dir", "weights\nwith newline.pt"), 700_000, uid)
    os.symlink("/etc", os.path.join(project, "sub dir", "etc"))
    os.symlink("/home/bob/private/notes.txt", os.path.join(project, "bobs notes"))
    os.symlink("../../..", os.path.join(project, "up"))
    chown_tree(project, uid)
    info(trash, "project with spaces" + tag, OLD, uid)
    # A name with a newline as a whole entry.
    name = "line one\nline two.ipynb" + tag
    write(os.path.join(files, name), 300_000, uid)
    info(trash, name, OLD, uid)
    # What a notebook running as root may leave: root-owned, mode 000, unreadable to the owner.
    locked = os.path.join(files, "root-locked" + tag)
    os.makedirs(os.path.join(locked, "inner"))
    write(os.path.join(locked, "inner", "secret.bin"), 400_000, 0, 0o000)
    write(os.path.join(locked, "blob.bin"), 200_000, 0, 0o000)
    os.chmod(os.path.join(locked, "inner"), 0o000)
    os.chmod(locked, 0o000)
    info(trash, "root-locked" + tag, OLD, uid)
    # A deep tree with a link to /etc at the bottom.
    deep_tree(os.path.join(files, "deep" + tag), 200, uid)
    info(trash, "deep" + tag, OLD, uid)
    # A hard link to a file outside the trash: the entry goes, the data stays.
    if uid == USERS["alice"]:
        os.link("/home/alice/keep/hardlinked.dat", os.path.join(files, "hardlink" + tag))
        info(trash, "hardlink" + tag, OLD, uid)


def recent_entries(trash: str, uid: int, tag: str) -> None:
    """Deleted an hour ago: younger than the threshold, so kept."""
    files = os.path.join(trash, "files")
    write(os.path.join(files, "recent.ipynb" + tag), 250_000, uid)
    info(trash, "recent.ipynb" + tag, now_stamp(-3600), uid)
    os.makedirs(os.path.join(files, "recent dir" + tag))
    write(os.path.join(files, "recent dir" + tag, "x.bin"), 90_000, uid)
    os.symlink("/etc/shadow", os.path.join(files, "recent dir" + tag, "shadow"))
    chown_tree(os.path.join(files, "recent dir" + tag), uid)
    info(trash, "recent dir" + tag, now_stamp(-3600), uid)


def seed() -> None:
    for user, uid in USERS.items():
        subprocess.run(["useradd", "--uid", str(uid), "--create-home", "--shell", "/bin/bash", user], check=True)
    # Targets outside every trash.
    write("/root/secret.txt", 1000, 0, 0o600)
    write("/srv/outside/keep-me.txt", 5000, 0)
    write("/srv/outside/nested/also-keep.txt", 5000, 0)
    write("/home/bob/private/notes.txt", 4000, USERS["bob"], 0o600)
    write("/home/alice/keep/hardlinked.dat", 600_000, USERS["alice"])
    os.makedirs("/etc/trash-canary")
    write("/etc/trash-canary/canary.conf", 3000, 0)

    alice = trash_of("alice")
    make_trash(alice, USERS["alice"])
    hostile_entries(alice, USERS["alice"], "")
    recent_entries(alice, USERS["alice"], "")
    # expunged/ (an interrupted delete), an old orphan info file, a directorysizes cache.
    os.makedirs(os.path.join(alice, "expunged", "half-gone"))
    write(os.path.join(alice, "expunged", "half-gone", "part.bin"), 100_000, USERS["alice"])
    info(alice, "orphan", OLD, USERS["alice"])
    orphan = os.path.join(alice, "info", "orphan.trashinfo")
    os.utime(orphan, (time.time() - 90 * 86400,) * 2)
    with open(os.path.join(alice, "directorysizes"), "w") as handle:
        handle.write("2200000 1577934245 project%%20with%%20spaces\n90000 %d recent%%20dir\n" % int(time.time()))
    chown_tree(os.path.join(alice, "expunged"), USERS["alice"])
    os.lchown(os.path.join(alice, "directorysizes"), USERS["alice"], USERS["alice"])

    bob = trash_of("bob")
    make_trash(bob, USERS["bob"])
    write(os.path.join(bob, "files", "old-model.ckpt"), 2_000_000, USERS["bob"])
    info(bob, "old-model.ckpt", OLD, USERS["bob"])
    os.symlink("/home/alice/keep", os.path.join(bob, "files", "alice-keep"))
    os.lchown(os.path.join(bob, "files", "alice-keep"), USERS["bob"], USERS["bob"])
    info(bob, "alice-keep", OLD, USERS["bob"])
    recent_entries(bob, USERS["bob"], "")

    # carol: ~/.local/share is a link to a decoy holding a real-looking trash: refused.
    decoy = "/srv/decoy-share"
    make_trash(os.path.join(decoy, "Trash"), USERS["carol"])
    write(os.path.join(decoy, "Trash", "files", "victim.txt"), 8000, USERS["carol"])
    info(os.path.join(decoy, "Trash"), "victim.txt", OLD, USERS["carol"])
    os.makedirs("/home/carol/.local")
    os.symlink(decoy, "/home/carol/.local/share")
    chown_tree("/home/carol/.local", USERS["carol"])
    # dave: his Trash/files is a link to /etc, and an info file "for" passwd: refused.
    dave = trash_of("dave")
    os.makedirs(os.path.join(dave, "info"))
    os.symlink("/etc", os.path.join(dave, "files"))
    chown_tree("/home/dave/.local", USERS["dave"])
    info(dave, "passwd", OLD, USERS["dave"])

    # An extra Trash directory on a "data disk" (trash_cleanup_paths).
    make_trash(SCRATCH_TRASH, 0)
    write(os.path.join(SCRATCH_TRASH, "files", "dataset.parquet"), 1_200_000, 0)
    info(SCRATCH_TRASH, "dataset.parquet", OLD, 0)
    os.symlink("/srv/outside/keep-me.txt", os.path.join(SCRATCH_TRASH, "files", "keep-link"))
    info(SCRATCH_TRASH, "keep-link", OLD, 0)

    with open("/etc/systemd/system/jupyter.service", "w") as handle:
        handle.write(JUPYTER_UNIT)
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "enable", "--now", "--quiet", "jupyter.service"], check=True)
    invocation = subprocess.run(["systemctl", "show", "--property=InvocationID", "--value", "jupyter.service"],
                                check=True, capture_output=True, text=True).stdout.strip()
    os.makedirs(os.path.dirname(MANIFEST), exist_ok=True)
    with open(JUPYTER_INVOCATION, "w") as handle:
        handle.write(invocation)
    # Last: its presence tells prepare that the fixture is complete.
    with open(MANIFEST, "w") as handle:
        json.dump(snapshot(), handle, indent=1, sort_keys=True)


def reseed(tag: str) -> None:
    alice = trash_of("alice")
    hostile_entries(alice, USERS["alice"], tag)
    recent_entries(alice, USERS["alice"], tag)
    bob = trash_of("bob")
    write(os.path.join(bob, "files", "old-model.ckpt" + tag), 1_100_000, USERS["bob"])
    info(bob, "old-model.ckpt" + tag, OLD, USERS["bob"])


def describe(path: str) -> str:
    st = os.lstat(path)
    kind = "l" if os.path.islink(path) else "d" if os.path.isdir(path) else "f"
    if kind == "l":
        return "l %s" % os.readlink(path)
    head = "%s %o %d:%d" % (kind, st.st_mode & 0o7777, st.st_uid, st.st_gid)
    if kind == "f":
        digest = hashlib.sha256()
        try:
            with open(path, "rb", buffering=0) as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:  # sockets, FIFOs
            return "%s %s" % (head, exc.__class__.__name__)
        return "%s %d %s" % (head, st.st_size, digest.hexdigest())
    return head


def snapshot() -> dict:
    found = {}
    for top in WATCHED:
        if not os.path.isdir(top):
            found[top] = describe(top)
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in ROLE_OWNED]
            for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
                if name not in VOLATILE:
                    found[name] = describe(name)
    return found


def main() -> int:
    if not in_container():
        print("trash_fixture.py: refusing to run outside a podman container", file=sys.stderr)
        return 2
    if pwd.getpwuid(os.geteuid()).pw_uid != 0:
        print("trash_fixture.py: run as root", file=sys.stderr)
        return 2
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    if action == "seed":
        seed()
    elif action == "reseed":
        reseed(sys.argv[2])
    elif action == "snapshot":
        json.dump(snapshot(), sys.stdout, sort_keys=True)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
