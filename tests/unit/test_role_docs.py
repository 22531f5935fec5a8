"""Every role's interface agrees with itself: defaults, meta/argument_specs.yml and the README table.

A variable in defaults must be declared in argument_specs (so a typo in a playbook fails fast)
and listed in the README's variable table (so users can find it), each default must carry a
comment, and the declared defaults must equal the defaults file.
"""

import re
from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ALL = sorted(p.name for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").is_file())


def _defaults(role):
    path = ROLES / role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _options(role):
    """The options of every entry point (main, and e.g. stop/start/summary), merged."""
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    merged = {}
    for entry in specs.values():
        merged.update(entry.get("options") or {})
    return merged


def _readme_names(role):
    text = (ROLES / role / "README.md").read_text()
    return set(re.findall(r"^\|\s*`(\w+)`", text, re.MULTILINE))


@pytest.mark.parametrize("role", ALL)
def test_every_default_is_declared_and_documented(role):
    defaults, options, readme = set(_defaults(role)), set(_options(role)), _readme_names(role)
    assert defaults - options == set(), "in defaults/main.yml, missing from meta/argument_specs.yml"
    assert options - readme == set(), "in meta/argument_specs.yml, missing from the README's table"


@pytest.mark.parametrize("role", ALL)
def test_declared_defaults_equal_the_defaults_file(role):
    defaults = _defaults(role)
    for name, spec in _options(role).items():
        if "default" in spec and name in defaults:
            assert spec["default"] == defaults[name], name


@pytest.mark.parametrize("role", ALL)
def test_every_default_has_a_comment(role):
    """Each group of variables (lines between blank lines) opens with a comment saying what it is."""
    path = ROLES / role / "defaults" / "main.yml"
    if not path.is_file():
        pytest.skip("no defaults")
    blocks = re.split(r"\n\s*\n", path.read_text())
    for block in blocks:
        lines = [ln for ln in block.splitlines() if ln.strip() and ln.strip() != "---"]
        names = [ln for ln in lines if re.match(r"\w+:", ln)]
        if names:
            assert lines[0].startswith("#"), f"no comment above {names[0]}"
