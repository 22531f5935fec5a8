"""The lint gate: ansible-lint (production profile), yamllint, ruff over every Python file, and
ansible-doc over every module the project ships."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def test_one_license_everywhere():
    """LICENSE, every role's galaxy_info and every file's license header name GPL-3.0-or-later."""
    first_lines = (REPO / "LICENSE").read_text().split()[:6]
    assert first_lines == ["GNU", "GENERAL", "PUBLIC", "LICENSE", "Version", "3,"], first_lines
    for meta in sorted(REPO.glob("roles/*/meta/main.yml")):
        license_ = yaml.safe_load(meta.read_text())["galaxy_info"]["license"]
        assert license_ == "GPL-3.0-or-later", f"{meta.relative_to(REPO)}: license {license_}"
    ours = [p for p in REPO.rglob("*") if p.is_file() and p.suffix in (".py", ".j2", ".yml", ".sh", "")
            and p.name != "LICENSE"
            and not {".git", ".venv", ".cache", ".sandbox", "artifacts"} & set(p.relative_to(REPO).parts)]
    for path in ours:
        head = "\n".join(path.read_text(errors="replace").splitlines()[:10])
        for other in ("Apache License", "Apache-2.0", "MIT License", "BSD-2-Clause", "BSD-3-Clause", "GPL-2.0"):
            assert other not in head, f"{path.relative_to(REPO)}: header names {other}"
        if "General Public License" in head:
            assert "General Public License v3.0+" in head, f"{path.relative_to(REPO)}: not GPL v3.0+"


def test_ruff_per_file_ignores_name_only_what_their_files_break():
    """Each per-file entry in ruff.toml (a path or a glob) must match files, and each rule it
    ignores must still be broken by one of them: an entry that silences nothing is stale."""
    import tomllib

    with open(REPO / "ruff.toml", "rb") as handle:
        ignores = tomllib.load(handle)["lint"]["per-file-ignores"]
    matched = {pattern: sorted(str(p.relative_to(REPO)) for p in REPO.glob(pattern)) for pattern in ignores}
    assert all(matched.values()), "entries that match no file: %s" % [p for p, files in matched.items() if not files]
    files = sorted({f for names in matched.values() for f in names})
    proc = _run(str(BIN / "ruff"), "check", "--no-cache", "--output-format", "json",
                "--config", "lint.per-file-ignores={}", *files)
    found = {}
    for entry in json.loads(proc.stdout[proc.stdout.index("["):]):
        found.setdefault(str(Path(entry["filename"]).resolve().relative_to(REPO)), set()).add(entry["code"])
    stale = {pattern: sorted(set(codes) - set().union(*(found.get(f, set()) for f in matched[pattern])))
             for pattern, codes in ignores.items()}
    stale = {pattern: codes for pattern, codes in stale.items() if codes}
    assert not stale, "ruff.toml ignores rules these files no longer break: %s" % stale
