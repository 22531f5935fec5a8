"""converged_state: what it records of a VM, what it calls a difference, and the digest of a run's
inputs that its action plugin computes. Every tree here is a temporary one; nothing of this
machine's own files is written."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins" / "modules" / "converged_state.py"


def _load(name: str, path: Path):
    """The module and its action plugin share a name: each is loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


cs = _load("converged_state_module", MODULE)
plugin = _load("converged_state_action", REPO / "plugins" / "action" / "converged_state.py")


@pytest.fixture
def tree(tmp_path):
    top = tmp_path / "etc"
    (top / "conf.d").mkdir(parents=True)
    (top / "app.conf").write_text("port = 8080\n")
    (top / "conf.d" / "10-x.conf").write_text("x\n")
    (top / "big.bin").write_bytes(b"\0" * (cs.HASHED_SIZE + 1))
    return top


def test_fingerprint_records_every_entry_and_changes_with_content_mode_and_type(tree):
    before = cs.fingerprint([str(tree)], [], [])
    assert {str(tree), str(tree / "conf.d"), str(tree / "app.conf"), str(tree / "conf.d" / "10-x.conf"),
            str(tree / "big.bin")} <= set(before)
    assert before[str(tree / "app.conf")].startswith("f:644:")

    (tree / "app.conf").write_text("port = 8081\n")
    (tree / "conf.d" / "10-x.conf").chmod(0o666)
    (tree / "conf.d" / "20-new.conf").write_text("new\n")
    after = cs.fingerprint([str(tree)], [], [])
    assert sorted(cs.differences(before, after)) == sorted([
        f"{tree}/app.conf: content changed",
        f"{tree}/conf.d/10-x.conf: mode changed",
        f"{tree}/conf.d/20-new.conf: now a file, was not recorded",
    ])

    (tree / "app.conf").unlink()
    (tree / "app.conf").mkdir()
    assert f"{tree}/app.conf: now a directory, was a file" in cs.differences(after, cs.fingerprint([str(tree)], [], []))


def test_a_large_file_counts_by_size_and_mtime(tree):
    before = cs.fingerprint([str(tree)], [], [])
    os.utime(tree / "big.bin", ns=(1, 1))
    assert cs.differences(before, cs.fingerprint([str(tree)], [], [])) == [f"{tree}/big.bin: content changed"]


def test_links_are_recorded_as_their_text_never_followed(tree, tmp_path):
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret").write_text("one\n")
    os.symlink(outside / "secret", tree / "conf.d" / "link")
    os.symlink(outside / "deep", tree / "dirlink")
    before = cs.fingerprint([str(tree)], [], [])
    link = before[str(tree / "conf.d" / "link")]
    assert link.startswith("l:") and link.endswith(str(outside / "secret"))
    assert not any(k.startswith(str(tree / "dirlink") + "/") for k in before), "walked through a link"
    (outside / "secret").write_text("two\n")
    (outside / "deep" / "new").write_text("x\n")
    assert cs.differences(before, cs.fingerprint([str(tree)], [], [])) == []


def test_single_paths_absent_and_probes(tmp_path):
    gone = tmp_path / "legacy"
    state = cs.fingerprint([], [str(gone)], [["no-such-tool-here", "-L"], ["echo", "GPU 0: Tesla T4"]])
    assert state[str(gone)] == "absent"
    assert state["probe no-such-tool-here -L"] == "absent"
    assert state["probe echo GPU 0: Tesla T4"].startswith("rc=0 ")
    again = cs.fingerprint([], [str(gone)], [["echo", "GPU 0: Tesla T4"]])
    assert again["probe echo GPU 0: Tesla T4"] == state["probe echo GPU 0: Tesla T4"]
    gone.write_text("back\n")
    assert cs.differences(state, cs.fingerprint([], [str(gone)], []))[0] == f"{gone}: now a file, was absent"


def test_unit_states_are_named_in_differences():
    assert cs.differences({"unit jupyter.service": "active"}, {"unit jupyter.service": "inactive"}) == [
        "unit jupyter.service: inactive, was active"]


def run_module(args: dict, check: bool = False) -> dict:
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check)}
    proc = subprocess.run([sys.executable, str(MODULE)], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=60, check=False)
    return json.loads(proc.stdout)


@pytest.mark.skipif(os.geteuid() != 0, reason="the record is trusted only when it is root's alone")
def test_record_then_check_then_a_difference_removes_the_record(tree, tmp_path):
    stamp = tmp_path / "state" / "converged.json"
    base = {"trees": [str(tree)], "stamp": str(stamp), "inputs": "sha256:a"}
    first = run_module(dict(base, step="check"))
    assert first["converged"] is False and first["differences"] == ["no record of a complete run yet"]

    recorded = run_module(dict(base, step="record", facts={"jupyter_access": {"port": 8080}}))
    assert recorded["changed"] is False and not recorded.get("failed"), recorded
    assert stamp.stat().st_mode & 0o777 == 0o600 and stamp.parent.stat().st_mode & 0o777 == 0o700

    same = run_module(dict(base, step="check"))
    assert same["converged"] is True, same
    assert same["facts"] == {"jupyter_access": {"port": 8080}}

    assert run_module(dict(base, step="check", inputs="sha256:b"), check=True)["differences"] == [
        "the inputs (variables or project code) differ from the last complete run"]
    assert stamp.exists(), "a check in check mode changes nothing"

    (tree / "app.conf").write_text("edited\n")
    drift = run_module(dict(base, step="check"))
    assert drift["converged"] is False and drift["differences"] == [f"{tree}/app.conf: content changed"]
    assert not stamp.exists(), "the record outlived the state it describes"


@pytest.mark.skipif(os.geteuid() != 0, reason="the record is trusted only when it is root's alone")
def test_a_record_others_can_write_is_not_trusted(tree, tmp_path):
    stamp = tmp_path / "state" / "converged.json"
    base = {"trees": [str(tree)], "stamp": str(stamp), "inputs": "sha256:a"}
    run_module(dict(base, step="record"))
    stamp.chmod(0o666)
    assert run_module(dict(base, step="check"))["differences"] == ["no record of a complete run yet"]
    stamp.unlink()
    os.symlink(tmp_path / "elsewhere.json", stamp)
    linked = run_module(dict(base, step="check"))
    assert linked["differences"] == ["no record of a complete run yet"], linked
    run_module(dict(base, step="record"))
    assert not (tmp_path / "elsewhere.json").exists() and not stamp.is_symlink(), "written through a link"


def test_the_controller_files_count(tmp_path):
    node_list = tmp_path / "cluster.json"
    assert plugin.files_digest([]) == ""
    absent = plugin.files_digest([str(node_list)])
    node_list.write_text('{"nodes": ["a", "b"]}')
    assert plugin.files_digest([str(node_list)]) not in ("", absent)


def test_the_inputs_digest_ignores_run_details_and_order_but_not_values():
    identity = lambda value: value  # noqa: E731
    base = [("jupyter_port", 8080), ("gcs_pull_pulls", []), ("ansible_check_mode", False), ("omit", "__omit_1")]
    digest = plugin.vars_digest(base, identity)
    assert plugin.vars_digest(list(reversed(base)), identity) == digest
    assert plugin.vars_digest([(k, "__omit_2" if k == "omit" else v) for k, v in base], identity) == digest
    assert plugin.vars_digest([(k, True if k == "ansible_check_mode" else v) for k, v in base], identity) == digest
    assert plugin.vars_digest([(k, 8081 if k == "jupyter_port" else v) for k, v in base], identity) != digest
    # A renewed access token is the same request from the same person.
    assert plugin.vars_digest(base + [("gcp_access_token", "ya29.one")], identity) == \
        plugin.vars_digest(base + [("gcp_access_token", "ya29.two")], identity)

    from ansible.errors import AnsibleUndefinedVariable

    def undefined(_value):
        raise AnsibleUndefinedVariable("'x' is undefined")

    assert plugin.vars_digest(base, undefined) == plugin.vars_digest(base, undefined)
    assert plugin.vars_digest(base, undefined) != digest


def test_the_code_digest_follows_the_project_files(tmp_path):
    for part in plugin.CODE:
        (tmp_path / part).mkdir()
    (tmp_path / "roles" / "main.yml").write_text("- one\n")
    (tmp_path / "plugins" / "__pycache__").mkdir()
    digest = plugin.code_digest(tmp_path)
    (tmp_path / "plugins" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert plugin.code_digest(tmp_path) == digest
    (tmp_path / "roles" / "main.yml").write_text("- two\n")
    assert plugin.code_digest(tmp_path) != digest
