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



def test_config_template_keys_are_agent_settings():
    """Every key the role writes is one the agent reads; the Jupyter owner check is configured."""
    import importlib.machinery
    import importlib.util

    agent = ROLE / "files" / "usr" / "local" / "bin" / "idle-autostop"
    loader = importlib.machinery.SourceFileLoader("idle_autostop_agent_role", str(agent))
    spec = importlib.util.spec_from_loader("idle_autostop_agent_role", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    template = (ROLE / "templates" / "etc" / "idle-autostop" / "idle-autostop.conf.j2").read_text()
    keys = re.findall(r"^(\w+) = ", template, re.MULTILINE)
    assert set(keys) <= set(module.DEFAULTS)
    assert {"jupyter_service_user", "jupyter_service_unit"} <= set(keys)
    install = (ROLE / "tasks" / "install.yml").read_text()
    assert '{ path: "{{ __idle_autostop_hold_dir }}", mode: "1777" }' in install
