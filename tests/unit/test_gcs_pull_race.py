"""The race between gcs_rsync's checks of dest and the copy: root runs the module, the owner of
dest swaps it for a symlink while the tool runs. The tool here is a stand-in that performs the
swap itself (as nobody, the owner) right before it writes, so the window is hit every time; a
real swap would need luck. Root-only: the privilege crossing is what is tested. Everything
happens in a temporary tree: the symlink points at a root-owned directory of that tree.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

import pytest

from tests.support.unprivileged import NOBODY
from tests.unit.test_gcs_pull_gcloud import run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root runs the module in production; only root can show it")

# `gcloud storage ls` lists nothing; `gcloud storage rsync SRC DEST` lets the owner of DEST
# (nobody) swap it for a symlink, then writes through whatever DEST is now, and says who it ran as.
FAKE_GCLOUD = r'''#!/usr/bin/python3
import os, sys
args = sys.argv[1:]
if args[:2] == ["storage", "ls"]:
    sys.exit(0)
dest, victim = args[-1].rstrip("/"), os.environ["RACE_VICTIM"]
child = os.fork()
if child == 0:
    os.setgroups([]) if os.geteuid() == 0 else None
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    os.rename(dest, dest + ".moved")
    os.symlink(victim, dest)
    os._exit(0)
os.waitpid(child, 0)
print("tool uid=%d gid=%d" % (os.geteuid(), os.getegid()))
try:
    with open(os.path.join(dest, "planted.txt"), "w") as fh:
        fh.write("written through the swapped dest\n")
    print("Copying gs://bkt/data/planted.txt to file://%s/planted.txt" % dest)
except OSError as exc:
    print("write refused: %s" % exc)
'''


@pytest.fixture
def tree(open_tmp_path):
    """open_tmp_path/home (nobody's, like /home/jupyter) / dest (nobody's), a root-only victim
    directory beside it, and the stand-in tool."""
    home = open_tmp_path / "home"
    dest = home / "dest"
    dest.mkdir(parents=True)
    for path in (home, dest):
        os.chown(path, NOBODY, NOBODY)
    victim = open_tmp_path / "victim"
    victim.mkdir(mode=0o755)
    tool = open_tmp_path / "gcloud"
    tool.write_text(FAKE_GCLOUD)
    tool.chmod(0o755)
    logs = open_tmp_path / "logs"
    logs.mkdir()
    return open_tmp_path, dest, victim, tool, logs


def _pull(tree, **args):
    root, dest, victim, tool, logs = tree
    os.environ["RACE_VICTIM"] = str(victim)
    try:
        return run_module(None, dest, logs, as_root=True, gcloud_path=str(tool), **args)
    finally:
        del os.environ["RACE_VICTIM"]


def test_dest_swapped_during_the_copy_gets_nothing_from_root(tree):
    root, dest, victim, tool, logs = tree
    res = _pull(tree, owner="nobody")
    log = (logs / "pull.log").read_text()
    assert os.path.islink(dest), "the stand-in tool did not swap dest"
    assert list(victim.iterdir()) == [], f"root wrote through the swapped dest: {log}"
    assert f"tool uid={NOBODY} gid={NOBODY}" in log, log
    assert "write refused" in log and not res.get("changed"), res


def test_root_run_refuses_a_dest_its_group_can_swap(tree):
    """Without an owner the tool runs as root: a component writable by the pull's group (whose
    members could swap it) is refused before anything runs."""
    root, dest, victim, tool, logs = tree
    os.chown(dest, 0, 0)
    os.chown(dest.parent, 0, NOBODY)
    dest.parent.chmod(0o775)
    res = _pull(tree, group=grp.getgrgid(pwd.getpwuid(NOBODY).pw_gid).gr_name)
    assert res.get("failed") and res["error_kind"] == "unsafe_dest", res
    assert "writable by group gid %d: %s" % (NOBODY, dest.parent) in res["msg"]
    assert not (logs / "pull.log").exists() and not os.path.islink(dest)
    assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o775


def test_the_owner_gets_a_private_home_not_roots_gcloud_config(tree):
    root, dest, victim, tool, logs = tree
    (tool.parent / "gcloud").write_text(
        "#!/usr/bin/python3\nimport os, sys\n"
        "print('HOME=%s CLOUDSDK_CONFIG=%s owner=%d mode=%o' % (os.environ['HOME'], "
        "os.environ['CLOUDSDK_CONFIG'], os.stat(os.environ['HOME']).st_uid, "
        "os.stat(os.environ['HOME']).st_mode & 0o777))\n")
    res = _pull(tree, owner="nobody")
    assert not res.get("failed"), res
    line = next(ln for ln in (logs / "pull.log").read_text().splitlines() if ln.startswith("HOME="))
    home = line.split()[0][len("HOME="):]
    assert line.split()[1] == f"CLOUDSDK_CONFIG={home}/gcloud"
    assert f"owner={NOBODY} mode=700" in line, line
    assert not os.path.exists(home), "the private home is removed after the pull"

