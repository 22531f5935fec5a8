"""The lint gate: ansible-lint (production profile), yamllint, ruff over every Python file, and
ansible-doc over every module the project ships."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODULE_DIRS = [REPO / "plugins" / "modules", *sorted(REPO.glob("roles/*/library"))]
MODULES = sorted(p for d in MODULE_DIRS for p in d.glob("*.py") if p.name != "__init__.py")


def _run(*cmd):
    return subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _python_scripts():
    """Scripts without a .py suffix (bench/provision, ...) that ruff's own discovery skips."""
    for folder in ("bench", "scripts"):
        for path in sorted((REPO / folder).iterdir()):
            if path.is_file() and path.suffix != ".py":
                first = path.read_text(errors="replace").split("\n", 1)[0]
                if first.startswith("#!") and "python" in first:
                    yield str(path.relative_to(REPO))


def test_yamllint_clean():
    proc = _run(str(BIN / "yamllint"), "--strict", ".")
    assert proc.returncode == 0, proc.stdout


def test_ansible_lint_production_profile():
    proc = _run(str(BIN / "ansible-lint"), "--profile", "production", "--nocolor")
    assert proc.returncode == 0, proc.stdout[-8000:]


def test_ruff_clean():
    scripts = list(_python_scripts())
    assert "bench/provision" in scripts  # the discovery above still finds the extensionless scripts
    proc = _run(str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise", ".", *scripts)
    assert proc.returncode == 0, proc.stdout[-8000:]


@pytest.mark.parametrize("module", MODULES, ids=[m.stem for m in MODULES])
def test_ansible_doc_parses(module):
    proc = _run(str(BIN / "ansible-doc"), "-M", str(module.parent), "-t", "module", "--json", module.stem)
    assert proc.returncode == 0, proc.stdout[-4000:]


def _calls_auth_argument_spec(path):
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.Call) and getattr(node.func, "id", None) == "auth_argument_spec"
               for node in ast.walk(tree))


def test_modules_that_take_auth_options_document_them():
    sys.path.insert(0, str(REPO / "plugins" / "module_utils"))
    try:
        from gce_client import auth_argument_spec
    finally:
        sys.path.pop(0)
    auth = auth_argument_spec()
    users = [m for m in MODULES if _calls_auth_argument_spec(m)]
    assert users, "no module calls auth_argument_spec()"
    for module in users:
        proc = subprocess.run(
            [str(BIN / "ansible-doc"), "-M", str(module.parent), "-t", "module", "--json", module.stem],
            cwd=REPO, capture_output=True, text=True, check=True)
        options = json.loads(proc.stdout)[module.stem]["doc"]["options"]
        for name, spec in auth.items():
            assert name in options, f"{module.stem}: auth option {name} is not documented"
            assert options[name].get("type", "str") == spec.get("type", "str"), (module.stem, name)
            assert bool(options[name].get("required")) == bool(spec.get("required")), (module.stem, name)
            assert sorted(options[name].get("choices") or []) == sorted(spec.get("choices") or []), (module.stem, name)
