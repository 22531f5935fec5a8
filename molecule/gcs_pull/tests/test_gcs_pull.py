"""Verify the gcs_pull role in its container against fake-gcs-server (tests run in file order).

The converge and idempotence steps already pulled 200 small + 2 large objects and proved a
second run changes nothing. These tests check the bytes on the VM, then change things the way
real life does and run the role (or its module) again:

* an object changed in the bucket is pulled again, reported as changed;
* a local copy damaged in place (same size) is detected by the checksum compare and re-fetched;
* an object whose stored bytes no longer match the md5/crc32c the server recorded for it
  ("corrupted" in the bucket: bit rot under the storage service) fails the pull with a clear
  message and leaves no corrupt file behind;
* user files are kept unless the pull asks for delete_extraneous;
* a bad gs:// URL fails before anything runs, naming the variable; a missing bucket is named.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

CONTAINER = "gcs_pull-debian12"
SCENARIO = Path(__file__).resolve().parents[1]
REPO = SCENARIO.parents[1]
STATE_FILE = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "fakegcs" / "state.json"
DATASET = "/srv/data/dataset"
MODELS = "/srv/data/models"


@pytest.fixture(scope="module")
def state():
    if not STATE_FILE.exists():
        pytest.fail(f"no fake-gcs-server state at {STATE_FILE}: run through molecule (prepare starts it)")
    return json.loads(STATE_FILE.read_text())


def sha256_local(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha256_remote(host, path: str) -> str:
    return host.check_output(f"sha256sum {path}").split()[0]


def ansible(args: list[str], tmp_path: Path, playbook: bool = True, check: bool = True):
    """Run ansible-playbook (or ad-hoc ansible) against the container, as a user would."""
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"{CONTAINER} ansible_connection=containers.podman.podman\n")
    bindir = Path(sys.executable).parent
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_LIBRARY=str(REPO / "plugins" / "modules"),
               ANSIBLE_MODULE_UTILS=str(REPO / "plugins" / "module_utils"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    exe = "ansible-playbook" if playbook else "ansible"
    cmd = [str(bindir / exe), "-i", str(inventory), *args, "-e", f"gcs_pull_test_state_file={STATE_FILE}"]
    if not playbook:
        cmd[3:3] = [CONTAINER]
        cmd = [c for c in cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    return proc


def task_results(proc, name_part: str) -> list[dict]:
    """Results of the tasks whose name contains name_part, from the json callback."""
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    found = []
    for play in out["plays"]:
        for task in play["tasks"]:
            if name_part in task["task"]["name"]:
                found.append(task["hosts"][CONTAINER])
    return found


def pull_results(proc) -> dict:
    facts = task_results(proc, "Record what each pull moved")[0]["ansible_facts"]["gcs_pull_results"]
    return {r["name"]: r for r in facts}


def module_call(tmp_path, state, src, dest, *extra):
    """One gcs_rsync call (the role's pull step alone), JSON result."""
    args = {
        "src": src, "dest": dest, "tool": "gsutil", "gsutil_path": "/opt/gcs_pull/gsutil/bin/gsutil",
        "endpoint": state["https_url"], "boto_config": "/etc/gcs_pull/boto.cfg",
        "log_file": "/var/log/gcs_pull/verify.log",
    }
    proc = ansible(["-m", "gcs_rsync", "-a", json.dumps(args), *extra], tmp_path, playbook=False, check=False)
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    return proc.returncode, out["plays"][0]["tasks"][0]["hosts"][CONTAINER]


def upload(state: dict, name: str, data: bytes) -> None:
    """Write an object through the JSON API, as another user of the bucket would."""
    ctx = ssl.create_default_context(cafile=state["ca_file"])
    url = (f"{state['https_url']}/upload/storage/v1/b/{state['bucket']}/o?uploadType=media&name="
           + urllib.parse.quote(name, safe=""))
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        assert resp.status == 200


def delete(state: dict, name: str) -> None:
    ctx = ssl.create_default_context(cafile=state["ca_file"])
    url = f"{state['https_url']}/storage/v1/b/{state['bucket']}/o/" + urllib.parse.quote(name, safe="")
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), context=ctx, timeout=30) as resp:
        assert resp.status in (200, 204)  # fake-gcs-server answers 200 "null"


def test_every_object_arrived_intact_and_owned(host, state):
    seed = Path(state["seed_dir"]) / state["bucket"]
    expected = sorted(str(p.relative_to(seed / "dataset")) for p in (seed / "dataset").rglob("*")
                      if p.is_file() and not p.name.endswith(".tmp"))
    assert len(expected) == 202
    listed = host.check_output(f"cd {DATASET} && find . -type f -printf '%P\\n' | sort").splitlines()
    assert listed == expected
    assert not host.file(f"{DATASET}/scratch.tmp").exists  # excluded
    for rel in ("large/shard-0.bin", "large/shard-1.bin", "small/part-3/sample-0199.bin"):
        assert sha256_remote(host, f"{DATASET}/{rel}") == sha256_local(seed / "dataset" / rel)
    owners = host.check_output(f"find {DATASET} {MODELS} -printf '%u:%g\\n' | sort -u")
    assert owners.split() == ["analyst:analyst"]
    assert host.file(MODELS).mode == 0o750


def test_gsutil_runs_from_its_venv_with_compiled_crcmod(host):
    out = host.check_output("BOTO_CONFIG=/dev/null /opt/gcs_pull/gsutil/bin/gsutil version -l")
    assert re.search(r"compiled crcmod:\s+True", out)
    assert not host.exists("gcloud")  # so the role took the gsutil path


def test_progress_log_records_the_copies(host):
    log = host.file("/var/log/gcs_pull/dataset.log")
    assert log.exists
    assert "Copying gs://gcs-pull-test/dataset/large/shard-1.bin" in log.content_string
    assert "=== exit 0" in log.content_string
    # The first pull into the new dest was the module's own download, run as the owner.
    analyst = host.user("analyst")
    assert re.search(r"gs://gcs-pull-test/dataset from https://\S+/storage/v1 to /srv/data/dataset: 202 objects, "
                     r"\S+ MiB\n=== writing as uid %d gid %d\n" % (analyst.uid, analyst.gid),
                     log.content_string), log.content_string[:2000]


def test_changes_are_pulled_and_user_files_kept(host, state, tmp_path):
    new_bytes = os.urandom(4096)
    upload(state, "dataset/small/part-0/sample-0007.bin", new_bytes)       # changed upstream
    host.check_output(f"printf 'X' | dd of={DATASET}/large/shard-0.bin bs=1 seek=1000 count=1 conv=notrunc")
    host.check_output(f"echo mine > {DATASET}/my-notes.txt")               # a user's own file
    host.check_output(f"echo stale > {MODELS}/old-checkpoint.pt")          # delete_extraneous pull

    dry = ansible([str(SCENARIO / "converge.yml"), "--check"], tmp_path)
    would = pull_results(dry)
    assert would["dataset"]["dry_run"] is True
    assert sorted(would["dataset"]["copied"]) == ["large/shard-0.bin", "small/part-0/sample-0007.bin"]
    assert would["models"]["deleted"] == ["old-checkpoint.pt"]
    assert host.file(f"{MODELS}/old-checkpoint.pt").exists  # check mode touched nothing

    run = ansible([str(SCENARIO / "converge.yml")], tmp_path)
    got = pull_results(run)
    assert got["dataset"]["changed"] is True
    assert sorted(got["dataset"]["copied"]) == ["large/shard-0.bin", "small/part-0/sample-0007.bin"]
    assert got["dataset"]["bytes_copied"] == 30 * 1024 * 1024 + 4096
    assert got["models"]["files_deleted"] == 1 and got["models"]["files_copied"] == 0
    seed = Path(state["seed_dir"]) / state["bucket"] / "dataset"
    assert sha256_remote(host, f"{DATASET}/large/shard-0.bin") == sha256_local(seed / "large/shard-0.bin")
    assert sha256_remote(host, f"{DATASET}/small/part-0/sample-0007.bin") == hashlib.sha256(new_bytes).hexdigest()
    assert host.file(f"{DATASET}/my-notes.txt").content_string == "mine\n"
    assert not host.file(f"{MODELS}/old-checkpoint.pt").exists


def test_root_pull_under_the_owners_tree_is_refused(state, tmp_path):
    """/srv/data was created for analyst's pulls: root pulling for itself below it could be steered."""
    rc, res = module_call(tmp_path, state, "gs://gcs-pull-test/models", "/srv/data/models")
    assert rc != 0 and res["error_kind"] == "unsafe_dest"
    assert "neither root nor the pull's owner: /srv/data" in res["msg"]


def test_corrupted_object_fails_clearly_and_leaves_nothing(host, state, tmp_path):
    name = "incoming/fresh.bin"
    upload(state, name, os.urandom(256 * 1024))
    # Flip a byte of the stored object behind the server's back: its recorded md5/crc32c stay.
    stored = Path(state["storage_root"]) / state["bucket"] / "incoming" / "fresh.bin"
    with open(stored, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    host.check_output("mkdir -p /srv/incoming")
    try:
        rc, res = module_call(tmp_path, state, "gs://gcs-pull-test/incoming", "/srv/incoming")
    finally:
        delete(state, name)
    assert rc != 0
    assert res["error_kind"] == "checksum"
    assert "did not match its stored checksum" in res["msg"]
    assert "fresh.bin" in res["msg"]
    assert host.check_output("find /srv/incoming -type f") == ""


def test_missing_bucket_is_named(state, tmp_path):
    rc, res = module_call(tmp_path, state, "gs://no-such-bucket-here/x", "/srv/incoming")
    assert rc != 0
    assert res["error_kind"] == "missing_bucket"
    assert "bucket does not exist" in res["msg"] and "no-such-bucket-here" in res["msg"]


def test_bad_url_fails_before_anything_runs(host, tmp_path):
    bad = json.dumps({"gcs_pull_pulls": [
        {"src": "gs://gcs-pull-test/dataset", "dest": "/srv/data/ok"},
        {"src": "gs:/Bad_Bucket/data", "dest": "/srv/data/bad"}]})
    proc = ansible([str(SCENARIO / "converge.yml"), "-e", bad], tmp_path, check=False)
    assert proc.returncode != 0
    assert "gcs_pull_pulls[1].src must be gs://BUCKET[/PREFIX]" in proc.stdout
    assert "gs:/Bad_Bucket/data" in proc.stdout
    assert not host.file("/srv/data/ok").exists  # nothing was created


def test_symlinked_dest_is_refused_before_anything_changes(host, state, tmp_path):
    """The attack: the owner plants a symlink where dest goes; root must not follow it."""
    host.check_output("mkdir -p /srv/victim /home/analyst/data && chmod 0700 /srv/victim"
                      " && chown -R analyst:analyst /home/analyst/data"
                      " && ln -sfn /srv/victim /home/analyst/data/cifar10")
    pulls = json.dumps({"gcs_pull_pulls": [
        {"name": "hostile", "src": "gs://gcs-pull-test/models", "dest": "/home/analyst/data/cifar10",
         "owner": "analyst"}]})
    proc = ansible([str(SCENARIO / "converge.yml"), "-e", pulls], tmp_path, check=False)
    assert proc.returncode != 0
    assert "refusing to pull gs://gcs-pull-test/models to /home/analyst/data/cifar10" in proc.stdout
    assert "symlink at /home/analyst/data/cifar10" in proc.stdout
    victim = host.file("/srv/victim")
    assert (victim.user, victim.group, victim.mode) == ("root", "root", 0o700)
    assert host.check_output("find /srv/victim -mindepth 1") == ""

    # The module alone (the copy step) refuses it too, naming dest.
    rc, res = module_call(tmp_path, state, "gs://gcs-pull-test/models", "/home/analyst/data/cifar10")
    assert rc != 0 and res["error_kind"] == "unsafe_dest"
    host.check_output("rm /home/analyst/data/cifar10")


def test_symlink_inside_dest_is_not_written_through(host, state, tmp_path):
    host.check_output("mkdir -p /srv/inside /srv/victim2 && ln -sfn /srv/victim2 /srv/inside/models")
    upload(state, "nested/models/w.bin", b"weights")
    try:
        rc, res = module_call(tmp_path, state, "gs://gcs-pull-test/nested", "/srv/inside")
    finally:
        delete(state, "nested/models/w.bin")
    assert rc != 0 and res["error_kind"] == "unsafe_object_name", res
    assert "symlink models inside dest" in res["msg"]
    assert host.check_output("find /srv/victim2 -mindepth 1") == ""
