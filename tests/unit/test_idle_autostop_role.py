"""The idle_autostop role's documentation agrees with itself: defaults, argument_specs, README."""

import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "idle_autostop"


def _specs():
    return yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())[
        "argument_specs"]["main"]["options"]


def _defaults():
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def _readme_rows():
    rows = {}
    for line in (ROLE / "README.md").read_text().splitlines():
        match = re.match(r"\|\s*`(idle_autostop_\w+)`\s*\|\s*((?:\\\||[^|])*?)\s*\|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_default_is_specified_and_documented():
    assert set(_defaults()) == set(_specs()) == set(_readme_rows())


def test_spec_defaults_match_defaults_file():
    defaults = _defaults()
    for name, spec in _specs().items():
        assert spec.get("default") == defaults[name], name


def test_readme_defaults_match():
    defaults = _defaults()
    for name, cell in _readme_rows().items():
        shown = cell.strip("`").replace("\\|", "|")
        value = defaults[name]
        if isinstance(value, bool):
            expected = str(value).lower()
        elif isinstance(value, list):
            expected = "[" + ", ".join(value) + "]"
        elif value == "":
            expected = '""'
        else:
            expected = str(value)
        assert shown == expected, name


def test_every_default_has_a_comment_above_it():
    lines = (ROLE / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"idle_autostop_\w+:", line):
            assert lines[i - 1].startswith("#"), line
