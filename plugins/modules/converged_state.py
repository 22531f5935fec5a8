#!/usr/bin/python
"""What the configure play left on a VM, recorded after a full run and checked before the next.

A converged rerun of every configure role is about 80 module runs over SSH. This module reads,
in one run, everything those roles own (their files, package database, accounts, enabled units
and the GPUs nvidia-smi lists) and compares it with what the last complete run recorded, together
with a digest of that run's inputs (the action plugin of the same name computes it on the
controller). Equal means the roles would change nothing, so the play can skip them; anything
different is named and the roles run as usual.
"""

DOCUMENTATION = r"""
module: converged_state
short_description: Record, then check in one step, the state the configure roles leave on a VM
description:
  - C(step=record) writes, root's alone, a fingerprint of I(trees), I(paths), the units enabled in
    C(/etc/systemd/system), the PCI devices and the output of I(probes), with I(inputs) and I(facts).
  - C(step=check) computes the same fingerprint and reports C(converged=true) only when it and
    I(inputs) equal the record. It never changes anything, so it runs in check mode too.
  - Nothing is followed through a symbolic link: links are recorded as their target text.
options:
  step:
    description: C(check) or C(record).
    type: str
    choices: [check, record]
    required: true
  inputs:
    description: Digest of the run's inputs (variables and project code); the action plugin fills it.
    type: str
    required: true
  trees:
    description: Directories recorded with everything below them. Files up to 256 KiB by content,
      larger ones by size and modification time; directories by type, mode and owner.
    type: list
    elements: path
    default: []
  paths:
    description: Single paths recorded the same way, without what is below a directory.
    type: list
    elements: path
    default: []
  probes:
    description: Read-only commands (argv lists) whose exit status and output are recorded; a
      command not installed is recorded as absent.
    type: list
    elements: list
    default: []
  controller:
    description: Digest of the files the run writes on the controller (the action plugin fills it).
    type: str
    default: ""
  facts:
    description: With C(step=record), facts to hand back by a later converged check.
    type: dict
    default: {}
  stamp:
    description: Where the record lives (its directory is created root's, mode 0700).
    type: path
    default: /var/lib/gpu-jupyter/converged.json
"""

RETURN = r"""
converged:
  description: Whether the VM and the inputs are as the last complete run left them.
  type: bool
  returned: always
differences:
  description: What differs, at most 8 lines (empty when converged).
  type: list
  elements: str
  returned: always
facts:
  description: The recorded facts, when converged.
  type: dict
  returned: always
entries:
  description: How many things the fingerprint covers.
  type: int
  returned: always
"""

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule

FORMAT = 1
HASHED_SIZE = 256 * 1024
MAX_DIFFERENCES = 8
UNIT_DIR = "/etc/systemd/system"
PCI_DIR = "/sys/bus/pci/devices"


def _entry(path, st):
    """One line per path: type, mode, owner and what identifies the content."""
    head = "%o:%d:%d" % (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        return "l:%s:%s" % (head, os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return "d:" + head
    if not stat.S_ISREG(st.st_mode):
        return "o:%s:%d" % (head, stat.S_IFMT(st.st_mode))
    if st.st_size > HASHED_SIZE:
        return "f:%s:%d:%d" % (head, st.st_size, st.st_mtime_ns)
    # O_NOFOLLOW: a file replaced by a link since the lstat is not read through it.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return "f:%s:%s" % (head, digest)


def _record_path(out, path):
    try:
        st = os.lstat(path)
        out[path] = _entry(path, st)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        out[path] = "absent"
        return None
    return st


def _record_tree(out, top):
    st = _record_path(out, top)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return
    # os.walk does not descend into links to directories (followlinks=False); each entry is lstat'ed.
    for root, dirs, files in os.walk(top, onerror=None):
        dirs.sort()
        for name in dirs + sorted(files):
            _record_path(out, os.path.join(root, name))


def _units():
    """Units enabled from /etc/systemd/system (its *.wants links) and whether each is active."""
    names = set()
    for wants in sorted(os.listdir(UNIT_DIR)) if os.path.isdir(UNIT_DIR) else []:
        folder = os.path.join(UNIT_DIR, wants)
        if wants.endswith((".wants", ".requires")) and os.path.isdir(folder) and not os.path.islink(folder):
            names.update(os.listdir(folder))
    if not names or shutil.which("systemctl") is None:
        return {}
    proc = subprocess.run(["systemctl", "show", "--property=Id,ActiveState", "--"] + sorted(names),
                          capture_output=True, text=True, check=False)
    states, unit = {}, None
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "Id":
            unit = value
        elif key == "ActiveState" and unit:
            # A unit that is starting or reloading counts as what it is becoming.
            states["unit " + unit] = {"activating": "active", "reloading": "active"}.get(value, value)
    return states


def _pci():
    """The PCI devices (a GPU added or gone changes what the driver role does)."""
    found = []
    if os.path.isdir(PCI_DIR):
        for dev in sorted(os.listdir(PCI_DIR)):
            ids = []
            for field in ("vendor", "device", "class"):
                try:
                    with open(os.path.join(PCI_DIR, dev, field)) as f:
                        ids.append(f.read().strip())
                except OSError:
                    ids.append("?")
            found.append(dev + "=" + ":".join(ids))
    return {"pci": hashlib.sha256("\n".join(found).encode()).hexdigest()}


def _probes(argvs):
    out = {}
    for argv in argvs:
        key = "probe " + " ".join(argv)
        if not argv or shutil.which(argv[0]) is None:
            out[key] = "absent"
            continue
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            out[key] = "timed out"
            continue
        out[key] = "rc=%d %s" % (proc.returncode, hashlib.sha256(proc.stdout.encode()).hexdigest())
    return out


def fingerprint(trees, paths, probes):
    state = {}
    for top in trees:
        _record_tree(state, os.path.normpath(top))
    for path in paths:
        _record_path(state, os.path.normpath(path))
    state.update(_units())
    state.update(_pci())
    state.update(_probes(probes))
    return state


def differences(recorded, state):
    lines = []
    for key in sorted(set(recorded) | set(state)):
        before, now = recorded.get(key, "not recorded"), state.get(key, "not checked")
        if before != now:
            if key.startswith(("unit ", "probe ")):
                lines.append("%s: %s, was %s" % (key, now, before))
            else:
                lines.append("%s: %s" % (key, _describe(before, now)))
    return lines


def _describe(before, now):
    if "absent" in (before, now) or before.split(":", 1)[0] != now.split(":", 1)[0]:
        return "now %s, was %s" % (_kind(now), _kind(before))
    b, n = before.split(":"), now.split(":")
    what = [label for i, label in ((1, "mode"), (2, "owner"), (3, "group")) if b[i] != n[i]]
    if b[4:] != n[4:]:
        what.append("content")
    return " and ".join(what) + " changed"


def _kind(entry):
    return {"f": "a file", "d": "a directory", "l": "a link", "o": "a special file"}.get(entry.split(":", 1)[0], entry)


def read_stamp(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            return None  # none, or a link put in its place: not followed, not trusted
        raise
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or stat.S_IMODE(st.st_mode) & 0o077:
            return None  # not root's alone: not trusted
        try:
            return json.load(f)
        except ValueError:
            return None


def write_stamp(path, record):
    folder = os.path.dirname(path)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise OSError("%s is not a directory of root's" % folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".converged.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, sort_keys=True, separators=(",", ":"))
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            step=dict(type="str", choices=["check", "record"], required=True),
            inputs=dict(type="str", required=True),
            trees=dict(type="list", elements="path", default=[]),
            paths=dict(type="list", elements="path", default=[]),
            probes=dict(type="list", elements="list", default=[]),
            controller=dict(type="str", default=""),
            facts=dict(type="dict", default={}),
            stamp=dict(type="path", default="/var/lib/gpu-jupyter/converged.json"),
        ),
        supports_check_mode=True,
    )
    try:
        run(module)
    except OSError as e:
        module.fail_json(msg="converged_state: %s" % e)


def run(module):
    p = module.params
    probes = [[str(a) for a in argv] for argv in p["probes"]]
    state = fingerprint(p["trees"], p["paths"], probes)
    result = dict(changed=False, converged=False, differences=[], facts={}, entries=len(state))
    if p["step"] == "record":
        # Bookkeeping of the play, not a change to the VM: reported as unchanged.
        if not module.check_mode:
            write_stamp(p["stamp"], dict(format=FORMAT, inputs=p["inputs"], controller=p["controller"],
                                         state=state, facts=p["facts"]))
        module.exit_json(**result)
    recorded = read_stamp(p["stamp"])
    if recorded is None or recorded.get("format") != FORMAT:
        result["differences"] = ["no record of a complete run yet"]
    elif recorded.get("inputs") != p["inputs"]:
        result["differences"] = ["the inputs (variables or project code) differ from the last complete run"]
    elif recorded.get("controller", "") != p["controller"]:
        result["differences"] = ["the files the last complete run wrote on the controller differ"]
    else:
        diff = differences(recorded.get("state", {}), state)
        result["differences"] = diff[:MAX_DIFFERENCES] + (
            ["... and %d more" % (len(diff) - MAX_DIFFERENCES)] if len(diff) > MAX_DIFFERENCES else [])
        if not diff:
            result.update(converged=True, facts=recorded.get("facts", {}))
    # The roles run now, and may stop half way: the record must not outlive the state it describes.
    if recorded is not None and not result["converged"] and not module.check_mode:
        os.unlink(p["stamp"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
