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

