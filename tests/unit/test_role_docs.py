"""Every role's interface agrees with itself: defaults, meta/argument_specs.yml and the README table.

A variable in defaults must be declared in argument_specs (so a typo in a playbook fails fast)
and listed in the README's variable table (so users can find it), each default must carry a
comment, and every option of every entry point must declare the default the defaults file sets
(or none, where the file sets none), with one type and one whole description across entry points.
"""

import re
from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ALL = sorted(p.name for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").is_file())
MISSING = object()

# Roles whose argument specs do not yet declare the defaults their defaults file sets; strict, so
# the test fails (XPASS) as soon as a role is fixed and its entry must go.
DEFAULTS_NOT_DECLARED = {}
# Roles that describe one option differently in different entry points (the README has one row).
DESCRIBED_DIFFERENTLY = {}


def _with_known_drift(roles, drift):
    return [pytest.param(r, marks=pytest.mark.xfail(strict=True, reason=drift[r])) if r in drift else r
            for r in roles]


def _defaults(role):
    path = ROLES / role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _entry_points(role):
    return yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


def _options(role):
    """The options of every entry point (main, and e.g. stop/start/summary), merged."""
    merged = {}
    for entry in _entry_points(role).values():
        merged.update(entry.get("options") or {})
    return merged


def _description(spec):
    """The whole description: every item of a list, joined; whitespace normalised."""
    text = spec.get("description") or ""
    if isinstance(text, list):
        text = " ".join(str(t) for t in text)
    return " ".join(str(text).split())


def _readme_names(role):
    text = (ROLES / role / "README.md").read_text()
    return set(re.findall(r"^\|\s*`(\w+)`", text, re.MULTILINE))


@pytest.mark.parametrize("role", ALL)
def test_every_default_is_declared_and_documented(role):
    defaults, options, readme = set(_defaults(role)), set(_options(role)), _readme_names(role)
    assert defaults - options == set(), "in defaults/main.yml, missing from meta/argument_specs.yml"
    assert options - readme == set(), "in meta/argument_specs.yml, missing from the README's table"


@pytest.mark.parametrize("role", _with_known_drift(ALL, DEFAULTS_NOT_DECLARED))
def test_declared_defaults_equal_the_defaults_file(role):
    """Every option of every entry point, with a default or without: the spec's default is the
    defaults file's value, and an option the file leaves unset (or null) declares none."""
    defaults = _defaults(role)
    wrong = []
    for entry_name, entry in _entry_points(role).items():
        for name, spec in (entry.get("options") or {}).items():
            declared = spec.get("default", MISSING)
            actual = defaults.get(name, MISSING)
            if declared is MISSING and actual is None:
                continue  # null in defaults: no default, as an undeclared one
            if declared != actual:
                wrong.append("%s.%s: argument_specs %r, defaults/main.yml %r" % (
                    entry_name, name, "(none)" if declared is MISSING else declared,
                    "(unset)" if actual is MISSING else actual))
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("role", _with_known_drift(ALL, DESCRIBED_DIFFERENTLY))
def test_an_option_is_described_alike_in_every_entry_point(role):
    """Type, default, choices and the whole description of an option agree across entry points."""
    seen = {}
    for entry_name, entry in _entry_points(role).items():
        for name, spec in (entry.get("options") or {}).items():
            shape = (spec.get("type", "str"), spec.get("default", None), tuple(spec.get("choices") or ()),
                     _description(spec))
            assert _description(spec), "%s.%s has no description" % (entry_name, name)
            first = seen.setdefault(name, (entry_name, shape))
            assert first[1] == shape, "%s: %s says %r, %s says %r" % (name, first[0], first[1], entry_name, shape)


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
