"""Run every Molecule scenario (molecule/<name>/molecule.yml) as one pytest test.

Each scenario runs its whole `molecule test` sequence (destroy, syntax, create, prepare, check,
converge, idempotence, verify, destroy) against a systemd container. The full log is kept under
artifacts/molecule/<name>.log; a failure shows its tail. Needs podman and the test image
(`scripts/bootstrap --tests` provides both); without them the tests skip and say why.

    pytest -m molecule                      # all scenarios
    pytest -m molecule -k jupyter           # one
    pytest -m "not molecule"                # everything else, fast
    MOLECULE_DISTRO=debian13 pytest -m molecule   # on the trixie image instead of bookworm
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BASE_CONFIG = REPO / ".config" / "molecule" / "config.yml"
LOG_DIR = REPO / "artifacts" / "molecule"
# A scenario takes 5-15 minutes on a loaded two-core machine; past 25, something hangs.
TIMEOUT_S = int(os.environ.get("MOLECULE_TIMEOUT", "1500"))
TAIL_LINES = 120


def scenarios() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def _load(path: Path) -> dict:
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def expand(text: str) -> str:
    """Molecule's `${VAR}` / `${VAR:-default}` interpolation, enough for image names."""
    def sub(match: re.Match) -> str:
        var, _, default = match.group(1).partition(":-")
        return os.environ.get(var) or default
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?)\}", sub, text)


def scenario_images(name: str) -> list[str]:
    """Images the scenario's platforms use (its own list replaces the shared one)."""
    own = _load(REPO / "molecule" / name / "molecule.yml").get("platforms")
    platforms = own if own is not None else _load(BASE_CONFIG).get("platforms", [])
    return sorted({expand(p["image"]) for p in platforms if p.get("image")})


def molecule_env() -> dict[str, str]:
    env = dict(os.environ)
    # molecule, ansible-playbook and the verifier's pytest come from the same venv as this pytest.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(NO_COLOR="1", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    return env


def molecule(*args: str, log: Path | None = None, timeout: int = TIMEOUT_S) -> tuple[int | None, str]:
    """Run molecule from the repo root; return (exit code or None on timeout, output)."""
    exe = Path(sys.executable).parent / "molecule"
    cmd = [str(exe) if exe.exists() else "molecule", *args]
    # Own process group: on timeout the ansible-playbook children go too, not just molecule.
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=molecule_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        code = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(out)
    return code, out


def skip_reason(name: str) -> str | None:
    podman = shutil.which("podman")
    if podman is None:
        return "podman is not installed (scripts/bootstrap --tests installs it)"
    for image in scenario_images(name):
        found = subprocess.run([podman, "image", "exists", image], check=False)
        if found.returncode != 0:
            return f"image {image} is missing (scripts/build-test-image builds it)"
    return None


@pytest.fixture
def scenario(request):
    name = request.param
    reason = skip_reason(name)
    if reason:
        pytest.skip(reason)
    yield name
    # Whatever happened (failure, timeout, Ctrl-C), leave no container behind.
    molecule("destroy", "-s", name, timeout=300)


@pytest.mark.molecule
@pytest.mark.parametrize("scenario", scenarios(), indirect=True)
def test_molecule_scenario(scenario):
    log = LOG_DIR / f"{scenario}.log"
    code, out = molecule("test", "-s", scenario, log=log)
    if code != 0:
        tail = "\n".join(out.splitlines()[-TAIL_LINES:])
        what = f"ran past {TIMEOUT_S} s" if code is None else f"exited {code}"
        pytest.fail(
            f"molecule test -s {scenario} {what} (full log: {log.relative_to(REPO)})\n{tail}",
            pytrace=False,
        )


def test_base_config_images_follow_molecule_distro(monkeypatch):
    monkeypatch.delenv("MOLECULE_DISTRO", raising=False)
    base = _load(BASE_CONFIG)["platforms"][0]["image"]
    assert expand(base) == "localhost/gpu-jupyter-test:debian12"
    monkeypatch.setenv("MOLECULE_DISTRO", "debian13")
    assert expand(base) == "localhost/gpu-jupyter-test:debian13"


def test_every_scenario_has_a_converge_playbook():
    """A scenario without converge.yml would fail only after a container was started."""
    missing = [s for s in scenarios() if not (REPO / "molecule" / s / "converge.yml").is_file()]
    assert not missing, f"scenarios without converge.yml: {missing}"
