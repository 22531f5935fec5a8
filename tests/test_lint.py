"""The lint gate: ansible-lint (production profile) and yamllint over the whole repository."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*cmd):
    return subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_yamllint_clean():
    proc = _run(str(BIN / "yamllint"), "--strict", ".")
    assert proc.returncode == 0, proc.stdout


def test_ansible_lint_production_profile():
    proc = _run(str(BIN / "ansible-lint"), "--profile", "production", "--nocolor")
    assert proc.returncode == 0, proc.stdout[-8000:]
