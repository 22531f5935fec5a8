"""Unit tests for roles/jupyter/library/jupyter_pip_satisfied.py on fake virtualenvs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "roles" / "jupyter" / "library" / "jupyter_pip_satisfied.py"
spec = importlib.util.spec_from_file_location("jupyter_pip_satisfied", MODULE)
sat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sat)


@pytest.fixture
def venv(tmp_path):
    """A venv layout with jupyterlab 4.3.1 and Jupyter_Server 2.14.0 installed."""
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    for name, version in (("jupyterlab", "4.3.1"), ("Jupyter_Server", "2.14.0")):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    return str(tmp_path)


def test_satisfied_ranges_are_not_reported(venv):
    assert sat.unsatisfied(venv, ["jupyterlab>=4.2,<5", "jupyter-server>=2", "JupyterLab"]) == []


def test_missing_and_out_of_range_are_reported(venv):
    reqs = ["jupyterlab>=4.4,<5", "ipywidgets>=8,<9", "jupyter_server<2"]
    assert sat.unsatisfied(venv, reqs) == reqs


def test_urls_and_garbage_are_left_to_pip(venv):
    reqs = ["pkg @ https://example.invalid/pkg-1.0.tar.gz", "not a requirement ==="]
    assert sat.unsatisfied(venv, reqs) == reqs


def test_markers_for_other_interpreters_are_skipped(venv):
    assert sat.unsatisfied(venv, ['ipywidgets>=8; python_version < "3.0"']) == []


def test_a_missing_venv_needs_everything(tmp_path):
    assert sat.unsatisfied(str(tmp_path / "nope"), ["jupyterlab"]) == ["jupyterlab"]
