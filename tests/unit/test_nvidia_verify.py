"""The driver checks that must fail on a broken GPU VM, run for real against a faked PCI bus.

A VM created with GPUs whose driver sees none has to fail the play: with a GPU on the PCI bus,
`nvidia-smi -L` must list it; with none on the bus, nvidia_driver_require_gpu (true in
group_vars/all/software.yml whenever GPUs are requested outside the sandbox) must stop the run.
The PCI bus is a directory bind-mounted over /sys/bus/pci/devices in a private mount namespace,
and nvidia-smi a script: the role's own detection and verification tasks run unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TARGET_PYTHON = "/usr/bin/python3"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a fake PCI bus")

SMI_WORKING = """#!/bin/sh
case "$*" in
  *--query-gpu*) echo "535.183.01, Tesla T4, Enabled" ;;
  -L) echo "GPU 0: Tesla T4 (UUID: GPU-11111111-2222-3333-4444-555555555555)" ;;
esac
"""
# The driver answers a query but does not list the GPU: what a half-loaded module looks like.
SMI_BLIND = """#!/bin/sh
case "$*" in
  *--query-gpu*) echo "535.183.01, Tesla T4, Enabled" ;;
  -L) echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."; exit 9 ;;
esac
"""
# Lists the GPU but cannot answer the query (seen while a driver upgrade is half done).
SMI_NO_QUERY = """#!/bin/sh
case "$*" in
  *--query-gpu*) echo "Failed to initialize NVML: Driver/library version mismatch"; exit 18 ;;
  -L) echo "GPU 0: Tesla T4 (UUID: GPU-11111111-2222-3333-4444-555555555555)" ;;
esac
"""


def _fake_machine(tmp_path: Path, gpus: int, smi: str) -> tuple[Path, Path]:
    pci = tmp_path / "pci"
    for slot in range(gpus):
        dev = pci / f"0000:00:{4 + slot:02x}.0"
        dev.mkdir(parents=True)
        (dev / "vendor").write_text("0x10de\n")
        (dev / "device").write_text("0x1eb8\n")
        (dev / "class").write_text("0x030200\n")
    # Something that is not a GPU, so the bus is never empty.
    nic = pci / "0000:00:03.0"
    nic.mkdir(parents=True)
    (nic / "vendor").write_text("0x1af4\n")
    (nic / "device").write_text("0x1000\n")
    (nic / "class").write_text("0x020000\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nvidia-smi").write_text(smi)
    (bindir / "nvidia-smi").chmod(0o755)
    return pci, bindir


def _run_verify(tmp_path: Path, gpus: int, smi: str, **extra) -> subprocess.CompletedProcess:
    pci, bindir = _fake_machine(tmp_path, gpus, smi)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH=f"{bindir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    playbook = ["ansible-playbook", "-i", "localhost,", "-c", "local", "--check", "--tags", "nvidia_driver_verify",
                "-e", json.dumps({"ansible_python_interpreter": TARGET_PYTHON, **extra}),
                "roles/nvidia_driver/tests/detect.yml"]
    script = 'mount --bind "$0" /sys/bus/pci/devices && exec "$@"'
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(pci), *playbook],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@needs_root
def test_a_gpu_the_driver_does_not_list_fails_the_play(tmp_path):
    proc = _run_verify(tmp_path, gpus=1, smi=SMI_BLIND)
    assert proc.returncode != 0, proc.stdout[-4000:]
    assert "NVIDIA driver verification failed" in proc.stdout, proc.stdout[-4000:]
    assert "lists 0 GPU(s); 1 expected" in proc.stdout, proc.stdout[-4000:]


@needs_root
def test_a_gpu_the_driver_lists_passes(tmp_path):
    proc = _run_verify(tmp_path, gpus=1, smi=SMI_WORKING)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Verified: nvidia-smi -L lists 1 GPU(s) (Tesla T4)" in proc.stdout, proc.stdout[-4000:]


@needs_root
def test_a_driver_that_lists_but_cannot_be_queried_is_reported_not_a_crash(tmp_path):
    proc = _run_verify(tmp_path, gpus=1, smi=SMI_NO_QUERY)
    assert "No first item" not in proc.stdout, proc.stdout[-4000:]
    assert "driver unknown" in proc.stdout, proc.stdout[-4000:]


@needs_root
def test_no_gpu_on_the_bus_fails_when_gpus_were_requested(tmp_path):
    proc = _run_verify(tmp_path, gpus=0, smi=SMI_BLIND, nvidia_driver_require_gpu=True)
    assert proc.returncode != 0, proc.stdout[-4000:]
    assert "No NVIDIA GPU on the PCI bus" in proc.stdout and "nvidia_driver_require_gpu is true" in proc.stdout


def _require_gpu(tmp_path: Path, **extra) -> bool:
    """nvidia_driver_require_gpu as group_vars/all/software.yml sets it, for these inputs."""
    (tmp_path / "group_vars").symlink_to(REPO / "group_vars")
    (tmp_path / "show.yml").write_text(yaml.safe_dump([{
        "hosts": "all", "gather_facts": False,
        "tasks": [{"name": "Show", "ansible.builtin.debug": {"msg": "REQUIRE={{ nvidia_driver_require_gpu | bool }}"}}],
    }]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", json.dumps(extra),
                           str(tmp_path / "show.yml")], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return "REQUIRE=True" in proc.stdout


@pytest.mark.parametrize("extra,required", [
    ({"gce_vm_gpu_count": 1}, True),
    ({"gce_vm_gpu_count": 4, "gcp_target": "gcp"}, True),
    ({"gce_vm_gpu_count": 1, "gcp_target": "sandbox"}, False),
    ({"gce_vm_gpu_count": 0}, False),
    # GPUs built into the machine type: requested although gce_vm_gpu_count is 0.
    ({"gce_vm_machine_type": "g2-standard-4", "gce_vm_gpu_count": 0}, True),
    ({"gce_vm_machine_type": "a3-highgpu-8g", "gce_vm_gpu_count": 0, "gcp_target": "gcp"}, True),
    ({"gce_vm_machine_type": "g4-standard-48", "gce_vm_gpu_count": 0, "gcp_target": "sandbox"}, False),
    ({"gce_vm_machine_type": "n2-standard-8", "gce_vm_gpu_count": 0}, False),
])
def test_group_vars_require_a_gpu_whenever_gpus_are_requested_outside_the_sandbox(tmp_path, extra, required):
    assert _require_gpu(tmp_path, **extra) is required


def test_unshare_is_there():
    """The fake PCI bus needs util-linux's unshare (Debian's util-linux, always installed)."""
    assert shutil.which("unshare"), "unshare is missing"
