"""The trash_cleanup role's documentation agrees with itself, and bad inputs are refused.

The refusals run only the role's validate tasks (assertions evaluated on the controller) against
localhost: nothing is installed or cleaned.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "trash_cleanup"


def _specs(entry="main"):
    return yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"][entry]["options"]


def _defaults():
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def _readme_rows():
    rows = {}
    for line in (ROLE / "README.md").read_text().splitlines():
        match = re.match(r"\|\s*`(trash_cleanup_\w+)`\s*\|\s*((?:\\\||[^|])*?)\s*\|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows




def test_clean_entry_point_takes_the_same_options():
    assert _specs("clean") == _specs("main")




def test_readme_defaults_match():
    defaults = _defaults()
    for name, cell in _readme_rows().items():
        shown = cell.strip("`").replace("\\|", "|")
        value = defaults[name]
        if value is None:
            expected = "null"
        elif isinstance(value, bool):
            expected = str(value).lower()
        elif isinstance(value, list):
            expected = "[" + ", ".join(value) + "]"
        else:
            expected = str(value)
        assert shown == expected, name




def _validate(tmp_path, **overrides):
    playbook = tmp_path / "validate.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Validate trash_cleanup inputs",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Validate",
                            "ansible.builtin.import_role": {"name": "trash_cleanup", "tasks_from": "validate"},
                        }
                    ],
                }
            ]
        )
    )
    extra = tmp_path / "extra.yml"
    extra.write_text(yaml.safe_dump(overrides))
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_NOCOLOR="1", PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run(
        [os.path.join(bindir, "ansible-playbook"), "-i", "localhost,", str(playbook), "-e", f"@{extra}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_good_inputs_pass_validation(tmp_path):
    rc, out = _validate(tmp_path, trash_cleanup_paths=["/data/.Trash-1000"], trash_cleanup_users=["alice"],
                        trash_cleanup_timer_randomized_delay="1h 30min")
    assert rc == 0, out


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"trash_cleanup_older_than_days": -1}, "trash_cleanup_older_than_days must be 0"),
        ({"trash_cleanup_paths": ["relative/Trash"]}, "must be an absolute path"),
        ({"trash_cleanup_paths": ["/data/Trash\nExecStartPost=/bin/sh"]}, "directory, on one line"),
        ({"trash_cleanup_users": ["alice", "bad user"]}, "must hold account names"),
        ({"trash_cleanup_timer_randomized_delay": "soon"}, "must be a systemd time span"),
    ],
)
def test_bad_inputs_are_refused_with_a_message(tmp_path, overrides, message):
    rc, out = _validate(tmp_path, **overrides)
    assert rc != 0
    assert message in " ".join(out.split()), out[-2000:]
