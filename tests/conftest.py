"""Fixtures shared by the whole suite: a fresh GCE sandbox per test, and a playbook runner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)",
    re.MULTILINE,
)


@dataclass
class PlaybookResult:
    rc: int
    stdout: str
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, key: str) -> int:
        return sum(host[key] for host in self.recap.values())

    @property
    def changed(self) -> int:
        return self.total("changed")

    @property
    def failed(self) -> int:
        return self.total("failed") + self.total("unreachable")

    def __repr__(self) -> str:  # what pytest shows when an assertion on the result fails
        return f"rc={self.rc} recap={self.recap}\n{self.stdout[-6000:]}"


def flat(result: PlaybookResult) -> str:
    """stdout with every run of whitespace made one space (the YAML callback wraps long lines), so
    messages can be matched whole."""
    return " ".join(result.stdout.split())


def parse_recap(stdout: str) -> dict[str, dict[str, int]]:
    recap = {}
    for m in RECAP.finditer(stdout):
        recap[m.group("host")] = {k: int(v) for k, v in m.groupdict().items() if k != "host"}
    return recap


def run_playbook(
    playbook: str | os.PathLike,
    sandbox=None,
    extra_vars: dict | None = None,
    check: bool = False,
    diff: bool = False,
    inventory: str | os.PathLike = "inventories/sandbox",
    tags: str | None = None,
    env: dict[str, str | None] | None = None,
    timeout: int = 600,
    args: list[str] | None = None,
) -> PlaybookResult:
    """Run ansible-playbook from the repository root, pointed at `sandbox` when given; `args` go on
    the command line as a user types them (after extra_vars, so they win)."""
    run_env = dict(os.environ)
    run_env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        PATH=f"{BIN}{os.pathsep}{run_env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    if sandbox is not None:
        run_env.update(sandbox.env)
        run_env["GCE_SANDBOX_STATE"] = str(sandbox.state_dir)
    for key, value in (env or {}).items():  # None removes a variable
        if value is None:
            run_env.pop(key, None)
        else:
            run_env[key] = value
    cmd = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if tags:
        cmd += ["--tags", tags]
    cmd += args or []
    proc = subprocess.run(
        cmd, cwd=REPO, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    return PlaybookResult(proc.returncode, proc.stdout, parse_recap(proc.stdout))


@pytest.fixture
def sandbox(tmp_path_factory):
    """A running GCE sandbox with fresh state, stopped after the test."""
    from gce_sandbox.testing import SandboxProcess

    with SandboxProcess(tmp_path_factory.mktemp("gce-sandbox")) as sb:
        yield sb


@pytest.fixture
def open_tmp_path():
    """A temporary directory that `nobody` can reach (pytest's own are 0700 under root's), for
    trees that tests/support/unprivileged.py hands to an unprivileged child."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="gpu-jupyter-unpriv-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)   # ours alone; rmtree removes links, never follows them


@pytest.fixture(name="run_playbook")
def run_playbook_fixture():
    return run_playbook


# A test that skips because a tool is missing (podman, a test image, python3-apt, ...) leaves its
# subject untested while the run stays green. Such a skip fails the run unless
# ALLOW_MISSING_TOOLS=1 says that a partial run is meant. Skips for other reasons (not root,
# nothing to check) stay skips, and so do those for an optional tool: one scripts/bootstrap
# cannot install (the Google Cloud SDK is in no Debian archive and its own repository needs
# the internet), whose skip reason starts with OPTIONAL_TOOL and is listed at the end of the run.
MISSING_TOOL = re.compile(r"\bnot installed\b|\bmissing\b|\bnot in the test venv\b", re.IGNORECASE)
OPTIONAL_TOOL = "optional tool:"
NO_GCLOUD = OPTIONAL_TOOL + " gcloud (the Google Cloud SDK, which scripts/bootstrap cannot install offline) is not here"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport():
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("ALLOW_MISSING_TOOLS") == "1" or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if reason.split("Skipped: ", 1)[-1].startswith(OPTIONAL_TOOL):
        return
    if MISSING_TOOL.search(reason):
        report.outcome = "failed"
        report.longrepr = ("%s\nA missing tool fails the run: install it (scripts/bootstrap --tests), or set "
                           "ALLOW_MISSING_TOOLS=1 to skip these tests on purpose." % reason)


# Longest first (what the suite measured on a loaded two-core machine, in seconds), so that
# parallel workers fill the rest in around them instead of one worker ending with a queue of
# journeys. Anything not named here is short and keeps its collection order.
HEAVY = {
    "tests/journey/test_cluster.py": 1800,
    "tests/journey/test_journey.py": 800,
    "tests/journey/test_pull_after_shortcut.py": 250,
    "tests/roles/test_molecule.py::test_molecule_scenario[idle_autostop]": 600,
    "tests/roles/test_molecule.py::test_molecule_scenario[trash_cleanup]": 410,
    "tests/roles/test_molecule.py::test_molecule_scenario[gcs_pull]": 360,
    "tests/roles/test_molecule.py::test_molecule_scenario[nvidia_driver]": 350,
    "tests/roles/test_molecule.py::test_molecule_scenario[jupyter]": 240,
    "tests/playbooks/test_lifecycle.py": 650,
    "tests/playbooks/test_failover.py": 600,
    "tests/playbooks/test_create_google_cloud.py": 550,
    "tests/playbooks/test_runtime_cap.py": 420,
    "tests/playbooks/test_provision.py": 400,
    "tests/playbooks/test_service_account.py": 400,
    "tests/playbooks/test_failover_access.py": 330,
    "tests/playbooks/test_firewall_retries.py": 250,
    "tests/playbooks/test_fleet_changes.py": 400,
    "tests/unit/test_idle_autostop_cluster_containers.py": 230,
    "tests/journey/test_console.py": 200,
    "tests/playbooks/test_network_exposure.py": 180,
    "tests/test_lint.py": 150,
    "tests/playbooks/test_preflight.py": 150,
}
PLAYBOOKS = 100  # a module of tests/playbooks: several playbook runs against the sandbox
MOLECULE = "tests/roles/test_molecule.py"


def work_unit(nodeid: str) -> str:
    """What one xdist worker runs as a whole: a module, since module fixtures (a converged
    cluster, a provisioned VM) are set up once per worker that runs any of its tests; each
    Molecule scenario on its own."""
    module = nodeid.split("::", 1)[0]
    return nodeid if module == MOLECULE and "[" in nodeid else module


def weight(nodeid: str) -> int:
    unit = work_unit(nodeid)
    return HEAVY.get(unit, PLAYBOOKS if unit.startswith("tests/playbooks/") else 0)


def pytest_collection_modifyitems(items):
    """Longest work units first; the order is kept by the scheduler below."""
    items.sort(key=lambda item: weight(item.nodeid), reverse=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With --dist loadscope (the Makefile's), a scope is a work unit as above, handed out in
    collection order: longest first. (xdist_group markers would do it, but xdist 3.8 marks
    them on a node id attribute that pytest 9.2 no longer reads.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LongestFirst(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return LongestFirst(config, log)
