"""The machine families with built-in GPUs come from one list (gce_preflight_checks.BUILTIN_GPU_FAMILIES):
gce_instances_info hands it to the lifecycle role, and no task or module keeps a copy."""

import importlib
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
import ansible.module_utils  # noqa: E402

if str(ROOT / "plugins" / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(ROOT / "plugins" / "module_utils"))
sys.path.insert(0, str(ROOT / "plugins" / "modules"))

pc = importlib.import_module("ansible.module_utils.gce_preflight_checks")
info = importlib.import_module("gce_instances_info")

# Two or more family names in an alternation ("a2|a3", "(g2|g4)"): a copy of the list.
COPY = re.compile(r"\b(?:%s)\s*\|\s*(?:%s)\b" % ("|".join(pc.BUILTIN_GPU_FAMILIES), "|".join(pc.BUILTIN_GPU_FAMILIES)))


class ExitedError(Exception):
    pass


class FakeModule:
    def __init__(self, argument_spec, **_kwargs):
        self.params = {k: v.get("default") for k, v in argument_spec.items()}
        self.check_mode = True

    def exit_json(self, **kwargs):
        raise ExitedError(kwargs)

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)


class NoVms:
    project = "p"

    @staticmethod
    def aggregated_list(*_args, **_kwargs):
        return []

    @staticmethod
    def counters():
        return {}


def families_info_returns(monkeypatch):
    monkeypatch.setattr(info, "AnsibleModule", FakeModule)
    monkeypatch.setattr(info.GceClient, "from_module", classmethod(lambda cls, module: NoVms()))
    with pytest.raises(ExitedError) as exited:
        info.main()
    return exited.value.args[0]["builtin_gpu_families"]


def scheduling_for(machine_type, families):
    """gce_lifecycle's reconfigure task's `scheduling`, rendered as Ansible renders it."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    try:
        from ansible.template import trust_as_template
    except ImportError:  # ansible-core before 2.19 trusts every template
        def trust_as_template(text):
            return text
    tasks = yaml.safe_load((ROOT / "roles" / "gce_lifecycle" / "tasks" / "reconfigure.yml").read_text())
    [task] = [t for t in tasks if "gce_instance_config" in t]
    templar = Templar(loader=DataLoader(), variables={
        "gce_lifecycle_machine_type": machine_type, "__gce_lifecycle_found": {"builtin_gpu_families": families},
        "omit": "__omit__"})
    try:
        value = templar.template(trust_as_template(task["gce_instance_config"]["scheduling"]))
    except Exception as exc:  # ansible-core 2.19 raises on a bare omit; older ones return it
        if type(exc).__name__ == "AnsibleValueOmittedError":
            return None
        raise
    return None if isinstance(value, str) and "omit" in value else value


def test_gce_instances_info_returns_the_one_list(monkeypatch):
    assert families_info_returns(monkeypatch) == sorted(pc.BUILTIN_GPU_FAMILIES)


def test_reconfigure_keeps_every_builtin_gpu_family_off_live_migration(monkeypatch):
    families = families_info_returns(monkeypatch)
    for family in pc.BUILTIN_GPU_FAMILIES:
        assert scheduling_for(family + "-standard-48", families) == {"on_host_maintenance": "TERMINATE"}, family
    # Attached GPUs (N1) are the module's business; no GPU, no constraint.
    assert scheduling_for("n1-standard-8", families) is None
    assert scheduling_for("n2-standard-8", families) is None


def test_no_task_or_module_keeps_its_own_copy_of_the_families():
    copies = []
    for folder in ("roles", "playbooks", "plugins"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".yml", ".yaml", ".py", ".j2") and path.is_file():
                for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if COPY.search(line):
                        copies.append("%s:%d: %s" % (path.relative_to(ROOT), number, line.strip()))
    assert copies == []
