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


# Every trait the role guards, in the class a user would naturally write it in, and in the aliases
# traitlets also applies to the server (NotebookApp, LabApp, a parent class of ServerApp).
GUARDED = [
    ("ServerApp", "ip", "0.0.0.0"),
    ("NotebookApp", "ip", "0.0.0.0"),
    ("LabApp", "ip", "::"),
    ("Application", "ip", "0.0.0.0"),
    ("ServerApp", "port", 8888),
    ("ServerApp", "port_retries", 50),
    ("ServerApp", "sock", "/tmp/jupyter.sock"),
    ("ServerApp", "local_hostnames", ["localhost", "evil.example"]),
    ("ServerApp", "token", ""),
    ("NotebookApp", "token", ""),
    ("ServerApp", "password", ""),
    ("ServerApp", "password_required", False),
    ("ServerApp", "allow_unauthenticated_access", True),
    ("ServerApp", "identity_provider_class", "jupyter_server.auth.identity.IdentityProvider"),
    ("ServerApp", "authorizer_class", "jupyter_server.auth.authorizer.AllowAllAuthorizer"),
    ("ServerApp", "login_handler_class", "x.Login"),
    ("ServerApp", "cookie_secret", "x"),
    ("ServerApp", "disable_check_xsrf", True),
    ("NotebookApp", "disable_check_xsrf", True),
    ("ServerApp", "allow_origin", "*"),
    ("ServerApp", "allow_origin_pat", ".*"),
    ("ServerApp", "allow_credentials", True),
    ("ServerApp", "allow_root", True),
    ("ServerApp", "allow_remote_access", True),
    ("ServerApp", "trust_xheaders", True),
    ("ServerApp", "tornado_settings", {"xsrf_cookies": False}),
]


@pytest.mark.parametrize(("section", "trait", "value"), GUARDED, ids=[f"{s}.{t}" for s, t, _ in GUARDED])
def test_guarded_settings_are_refused_in_extra_config(tmp_path, section, trait, value):
    code, out = validate(tmp_path, jupyter_server_extra_config={section: {trait: value}})
    assert code != 0, out
    assert f"jupyter_server_extra_config.{section}.{trait}" in out, out


@pytest.mark.parametrize("section", ["IdentityProvider", "PasswordIdentityProvider", "Authorizer"])
def test_authentication_classes_are_refused_in_extra_config(tmp_path, section):
    code, out = validate(tmp_path, jupyter_server_extra_config={section: {"need_token": False}})
    assert code != 0, out
    assert f"jupyter_server_extra_config.{section}" in out, out


@pytest.mark.parametrize("extra", [
    {"ServerApp": {"ip = '0.0.0.0'\nc.ServerApp.x": 1}},
    {"ServerApp.ip": {"x": 1}},
    {"ServerApp": "ip=0.0.0.0"},
])
def test_extra_config_that_is_not_class_trait_value_is_refused(tmp_path, extra):
    code, out = validate(tmp_path, jupyter_server_extra_config=extra)
    assert code != 0, out
    assert "jupyter_server_extra_config." in out, out


def test_ordinary_extra_settings_still_pass(tmp_path):
    code, out = validate(tmp_path, jupyter_server_extra_config={
        "MappingKernelManager": {"cull_idle_timeout": 3600, "cull_connected": False},
        "ServerApp": {"terminals_enabled": False}})
    assert code == 0, out


def test_a_tunnel_command_cannot_add_a_line_to_the_config(tmp_path):
    code, out = validate(tmp_path, jupyter_tunnel_command="ssh -N host\nc.ServerApp.ip = '0.0.0.0'")
    assert code != 0, out
    assert "jupyter_tunnel_command" in out, out
