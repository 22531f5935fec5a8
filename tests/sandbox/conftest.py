"""Fixtures for the gce_sandbox tests: one sandbox server per test module, reset per test."""

from __future__ import annotations

import pytest

from gce_sandbox.testing import SandboxProcess


@pytest.fixture(scope="module")
def sandbox_server(tmp_path_factory):
    with SandboxProcess(tmp_path_factory.mktemp("gce")) as sb:
        yield sb


@pytest.fixture
def sb(sandbox_server):
    """A sandbox with a fresh project whose Compute Engine API is enabled."""
    sandbox_server.reset()
    sandbox_server.enable_compute()
    sandbox_server.clear_requests()
    return sandbox_server


