"""The jupyter role refuses bad inputs before it touches a host.

Runs only the role's validation (`--tags jupyter_validate`) against localhost, so nothing is
installed here whatever the outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAY = """
- name: Validate the jupyter role's inputs
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: jupyter
"""


def validate(tmp_path, **extra_vars):
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_NOCOLOR="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", str(play), "--tags", "jupyter_validate",
         "-e", json.dumps(extra_vars)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    return result.returncode, result.stdout + result.stderr


def test_loopback_defaults_pass_without_warning(tmp_path):
    code, out = validate(tmp_path)
    assert code == 0, out
    assert "WARNING: Jupyter will listen" not in out


def test_wildcard_bind_is_refused_without_the_opt_in(tmp_path):
    code, out = validate(tmp_path, jupyter_ip="0.0.0.0")
    assert code != 0
    assert "jupyter_allow_remote_bind" in out


def test_wildcard_bind_with_the_opt_in_warns(tmp_path):
    code, out = validate(tmp_path, jupyter_ip="0.0.0.0", jupyter_allow_remote_bind=True)
    assert code == 0, out
    assert "WARNING: Jupyter will listen on 0.0.0.0:8080" in out


@pytest.mark.parametrize("bad", [
    {"jupyter_token": "short"},
    {"jupyter_password_hash": "hunter2"},
    {"jupyter_ip": "localhost"},
    {"jupyter_port": "eighty"},
    {"jupyter_kernels": [{"name": "bad name", "venv": "/opt/k"}]},
    {"jupyter_kernels": [{"name": "k", "venv": "relative/path"}]},
    {"jupyter_replace_units": ["jupyter"]},
])
def test_bad_inputs_fail_before_anything_runs(tmp_path, bad):
    code, out = validate(tmp_path, **bad)
    assert code != 0, out


def test_token_is_never_echoed(tmp_path):
    secret = "s3cr3t-" * 6
    code, out = validate(tmp_path, jupyter_token=secret)
    assert code == 0, out
    assert secret not in out
