"""Run destructive code under test (chown walks, removals) as an unprivileged user.

The suite runs as root on CI machines. Code that deletes or changes ownership is exercised in a
temporary tree the test made, and, when the suite is root, in a forked child that has dropped to
`nobody` first: a bug that escapes the tree then meets the kernel's permission checks instead of
root's reach.
"""

from __future__ import annotations

import os
import pickle
import traceback
from pathlib import Path
from typing import Callable

NOBODY = 65534


def _give_tree_to(tree: Path, uid: int, gid: int) -> None:
    """lchown every entry of a tree the test created itself (never following a link)."""
    os.lchown(tree, uid, gid)
    for root, dirs, files in os.walk(tree, followlinks=False):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def run_unprivileged(tree: Path, fn: Callable[[], object]) -> object:
    """fn() as the current user when that is not root; as root, in a child running as nobody
    that owns `tree`. Returns fn's (picklable) result; a failure inside re-raises here."""
    if os.geteuid() != 0:
        return fn()
    _give_tree_to(Path(tree), NOBODY, NOBODY)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - reports through the pipe
        os.close(read_end)
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            payload = ("ok", fn())
        except BaseException:  # noqa: BLE001 - every failure goes back to the parent
            payload = ("error", traceback.format_exc())
        with os.fdopen(write_end, "wb") as out:
            pickle.dump(payload, out)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        data = inp.read()
    os.waitpid(child, 0)
    kind, value = pickle.loads(data) if data else ("error", "the unprivileged child reported nothing")
    if kind == "error":
        raise AssertionError("as nobody:\n" + value)
    return value
