#!/usr/bin/python3
"""Hostile trash fixture for the trash_cleanup scenario. Runs INSIDE the test container only.

    trash_fixture.py seed           users, hostile trash directories, and targets outside them;
                                    saves a snapshot of everything outside the trash to MANIFEST;
                                    starts a stand-in jupyter.service and saves its InvocationID;
                                    plants a stand-in of the old root-run cleaner to be removed
    trash_fixture.py reseed TAG     a fresh batch of old, recent and hostile entries (verify)
    trash_fixture.py refused        carol's ~/.local/share and dave's Trash/files become links,
                                    alice gets a root-owned mode 000 entry (verify)
    trash_fixture.py unrefuse       removes what `refused` planted
    trash_fixture.py race SECONDS   as alice, swaps an old trash entry between a directory and
                                    links to /etc and bob's files until SECONDS have passed
    trash_fixture.py snapshot       print the snapshot of everything outside the trash (JSON)

The symlinks here point at the container's /etc, /root and other users' files on purpose: the
cleanup runs as each trash's owner and must remove the links without ever reaching what they
point to. The script refuses to run outside a podman container, so it can never plant these links
on a real machine.
"""

import hashlib
import json
import shutil
import os
import pwd
import subprocess
import sys
import time
import urllib.parse

MANIFEST = "/var/lib/trash-fixture/outside.json"
RACE_TURNS = "/var/lib/trash-fixture/race-turns"
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
DECOY = "/srv/decoy-share"
RACE_NAME = "race entry"
SCRATCH_TRASH = "/srv/scratch/Trash"  # trash_cleanup_paths in converge.yml, owned by bob
# Everything the cleaner must leave exactly as it was. /etc minus what the role itself writes.
WATCHED = ["/etc", "/root/secret.txt", "/srv/outside", "/srv/decoy-share", "/home/alice/keep", "/home/bob/private"]
ROLE_OWNED = ("/etc/systemd/system", "/etc/trash-cleanup", "/etc/jupyter")
# What the role of earlier versions installed: a root-run cleaner the role must now remove.
LEGACY_UNITS = {
    "/etc/systemd/system/trash-cleanup.service": "[Service]\nType=oneshot\nExecStart=/usr/local/sbin/trash-cleanup\n",
    "/etc/systemd/system/trash-cleanup.timer": "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
}
LEGACY_FILES = ["/usr/local/sbin/trash-cleanup", "/etc/trash-cleanup/config.json"]
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
    # A deep tree with a link to /etc at the bottom.
    deep_tree(os.path.join(files, "deep" + tag), 200, uid)
    info(trash, "deep" + tag, OLD, uid)


def root_locked(trash: str, uid: int) -> None:
    """What a notebook running as root may leave: root-owned, mode 000. Its owner cannot remove
    it, so the run must fail and name it, and leave it (a root cleanup would remove it)."""
    files = os.path.join(trash, "files")
    locked = os.path.join(files, "root-locked")
    os.makedirs(os.path.join(locked, "inner"))
    write(os.path.join(locked, "inner", "secret.bin"), 400_000, 0, 0o000)
    write(os.path.join(locked, "blob.bin"), 200_000, 0, 0o000)
    os.chmod(os.path.join(locked, "inner"), 0o000)
    os.chmod(locked, 0o000)
    info(trash, "root-locked", OLD, uid)


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

    # carol's decoy: a real-looking trash outside her home (`refused` links ~/.local/share to it).
    make_trash(os.path.join(DECOY, "Trash"), USERS["carol"])
    write(os.path.join(DECOY, "Trash", "files", "victim.txt"), 8000, USERS["carol"])
    info(os.path.join(DECOY, "Trash"), "victim.txt", OLD, USERS["carol"])
    # A hard link to a file outside the trash: the entry goes, the data stays.
    os.link("/home/alice/keep/hardlinked.dat", os.path.join(alice, "files", "hardlink"))
    info(alice, "hardlink", OLD, USERS["alice"])
    # A file without its info file: trash-empty removes it whatever its age.
    write(os.path.join(alice, "files", "no-info.bin"), 50_000, USERS["alice"])

    # An extra Trash directory on a "data disk" (trash_cleanup_paths), bob's: his run empties it.
    bob_uid = USERS["bob"]
    make_trash(SCRATCH_TRASH, bob_uid)
    write(os.path.join(SCRATCH_TRASH, "files", "dataset.parquet"), 1_200_000, bob_uid)
    info(SCRATCH_TRASH, "dataset.parquet", OLD, bob_uid)
    os.symlink("/srv/outside/keep-me.txt", os.path.join(SCRATCH_TRASH, "files", "keep-link"))
    os.lchown(os.path.join(SCRATCH_TRASH, "files", "keep-link"), bob_uid, bob_uid)
    info(SCRATCH_TRASH, "keep-link", OLD, bob_uid)

    # The root-run cleaner of earlier versions of the role, its timer enabled.
    for path, text in LEGACY_UNITS.items():
        with open(path, "w") as handle:
            handle.write(text)
    for path in LEGACY_FILES:
        write(path, 100, 0, 0o755)

    with open("/etc/systemd/system/jupyter.service", "w") as handle:
        handle.write(JUPYTER_UNIT)
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "enable", "--now", "--quiet", "jupyter.service", "trash-cleanup.timer"], check=True)
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


def refused() -> None:
    # carol: ~/.local/share is a link to a decoy holding a real-looking trash.
    os.makedirs("/home/carol/.local", exist_ok=True)
    os.symlink(DECOY, "/home/carol/.local/share")
    chown_tree("/home/carol/.local", USERS["carol"])
    # dave: his Trash/files is a link to /etc, with an info file "for" passwd.
    dave = trash_of("dave")
    os.makedirs(os.path.join(dave, "info"))
    os.symlink("/etc", os.path.join(dave, "files"))
    chown_tree("/home/dave/.local", USERS["dave"])
    info(dave, "passwd", OLD, USERS["dave"])
    root_locked(trash_of("alice"), USERS["alice"])


def unrefuse() -> None:
    os.unlink("/home/carol/.local/share")
    shutil.rmtree("/home/dave/.local/share/Trash")
    locked = os.path.join(trash_of("alice"), "files", "root-locked")
    for dirpath, _, _ in os.walk(locked):
        os.chmod(dirpath, 0o700)
    os.chmod(os.path.join(locked, "inner"), 0o700)
    shutil.rmtree(locked)
    info_file = os.path.join(trash_of("alice"), "info", "root-locked.trashinfo")
    if os.path.lexists(info_file):
        os.unlink(info_file)


def race(seconds: float) -> None:
    """As alice: an old entry that keeps turning from a directory into a link to /etc or to bob's
    files and back, and a directory inside it that does the same, until the time is up. Writes
    how many turns it made to RACE_TURNS."""
    turns_file = os.open(RACE_TURNS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.setgroups([])
    os.setresgid(USERS["alice"], USERS["alice"], USERS["alice"])
    os.setresuid(USERS["alice"], USERS["alice"], USERS["alice"])
    trash = trash_of("alice")
    entry = os.path.join(trash, "files", RACE_NAME)
    spare = os.path.join(trash, "race spare")
    targets = ["/etc", "/home/bob/private", "/root"]
    deadline = time.monotonic() + seconds
    turn = 0
    while time.monotonic() < deadline:
        turn += 1
        try:
            if not os.path.lexists(os.path.join(trash, "info", RACE_NAME + ".trashinfo")):
                info(trash, RACE_NAME, OLD, USERS["alice"])
            os.makedirs(os.path.join(entry, "sub"), exist_ok=True)
            write(os.path.join(entry, "sub", "x.bin"), 20_000, USERS["alice"])
            # Swap the inner directory for a link, then the whole entry.
            os.rename(os.path.join(entry, "sub"), spare)
            os.symlink(targets[turn % 3], os.path.join(entry, "sub"))
            shutil.rmtree(spare)
            os.rename(entry, spare)
            os.symlink(targets[(turn + 1) % 3], entry)
            os.unlink(entry)
            os.rename(spare, entry)
        except OSError:
            # The cleanup removed something under the racer's feet: start over.
            if os.path.lexists(spare) and not os.path.islink(spare):
                shutil.rmtree(spare, ignore_errors=True)
            if os.path.islink(entry):
                os.unlink(entry)
    os.write(turns_file, str(turn).encode())
    os.close(turns_file)


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
    elif action == "refused":
        refused()
    elif action == "unrefuse":
        unrefuse()
    elif action == "race":
        race(float(sys.argv[2]))
    elif action == "snapshot":
        json.dump(snapshot(), sys.stdout, sort_keys=True)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
