"""Unit tests for plugins/filter/nvidia_driver.py (the nvidia_driver role's probe parsers)."""

import os
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "filter"))

from nvidia_driver import (
    FilterModule,
    nvidia_apt_policy,
    nvidia_driver_branch,
    nvidia_gpus_requested,
    nvidia_pci_gpus,
    nvidia_smi_csv,
    nvidia_smi_list,
    nvidia_smi_state,
)

# What nvidia-smi prints when the kernel module is absent (container, VM before reboot).
NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)


# --- branch -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "version, branch",
    [
        ("535.247.01", "535"),
        ("580.82.07", "580"),
        ("550.163.01", "550"),
        ("570", "570"),
        (" 535.309.01 ", "535"),
        (535, "535"),
        ("535.309.01-0+deb12u1", "535"),
        ("N/A", None),
        ("", None),
        (None, None),
    ],
)
def test_branch_examples(version, branch):
    assert nvidia_driver_branch(version) == branch


@given(
    major=st.integers(min_value=1, max_value=9999),
    minor=st.integers(min_value=0, max_value=999),
    patch=st.one_of(st.none(), st.integers(min_value=0, max_value=99)),
)
def test_branch_is_major_of_any_version(major, minor, patch):
    version = f"{major}.{minor:02d}" + ("" if patch is None else f".{patch:02d}")
    assert nvidia_driver_branch(version) == str(major)


# --- nvidia-smi --query-gpu CSV ----------------------------------------------------------------

def test_csv_two_gpus():
    out = "535.247.01, Tesla T4\n535.247.01, Tesla T4\n"
    rows = nvidia_smi_csv(out, "driver_version,name")
    assert rows == [
        {"driver_version": "535.247.01", "name": "Tesla T4"},
        {"driver_version": "535.247.01", "name": "Tesla T4"},
    ]


def test_csv_na_and_blank_lines():
    out = "\n580.82.07, NVIDIA L4, [N/A]\n\n"
    assert nvidia_smi_csv(out, ["driver_version", "name", "persistence_mode"]) == [
        {"driver_version": "580.82.07", "name": "NVIDIA L4", "persistence_mode": None}
    ]


def test_csv_wrong_width_is_an_error():
    with pytest.raises(ValueError):
        nvidia_smi_csv("535.1, Tesla T4, extra\n", "driver_version,name")


def test_csv_empty():
    assert nvidia_smi_csv("", "driver_version,name") == []
    assert nvidia_smi_csv(None, "driver_version,name") == []


_name = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters=" -"),
    min_size=1, max_size=30,
).map(str.strip).filter(bool)


@given(rows=st.lists(st.tuples(st.from_regex(r"\A[1-9][0-9]{2}\.[0-9]{2,3}(\.[0-9]{2})?\Z"), _name), max_size=8))
def test_csv_roundtrip(rows):
    out = "".join(f"{v}, {n}\n" for v, n in rows)
    parsed = nvidia_smi_csv(out, "driver_version,name")
    assert [(r["driver_version"], r["name"]) for r in parsed] == list(rows)


# --- nvidia-smi -L ------------------------------------------------------------------------------

def test_list_gpus_and_mig():
    out = (
        "GPU 0: Tesla T4 (UUID: GPU-5a9c1b2e-0000-1111-2222-333344445555)\n"
        "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-0f0e0d0c-aaaa-bbbb-cccc-ddddeeeeffff)\n"
        "  MIG 1g.5gb      Device  0: (UUID: MIG-11111111-2222-3333-4444-555555555555)\n"
        "  MIG 1g.5gb      Device  1: (UUID: MIG-66666666-2222-3333-4444-555555555555)\n"
    )
    gpus = nvidia_smi_list(out)
    assert [g["index"] for g in gpus] == [0, 1]
    assert gpus[0]["name"] == "Tesla T4"
    assert gpus[0]["uuid"] == "GPU-5a9c1b2e-0000-1111-2222-333344445555"
    assert gpus[1]["name"] == "NVIDIA A100-SXM4-40GB"
    assert [m["index"] for m in gpus[1]["mig"]] == [0, 1]
    assert gpus[1]["mig"][0]["profile"] == "1g.5gb"


def test_list_no_driver_output_has_no_gpus():
    assert nvidia_smi_list(NO_DRIVER) == []


@given(names=st.lists(_name, max_size=16))
def test_list_counts_every_gpu(names):
    out = "".join(f"GPU {i}: {n} (UUID: GPU-{i:08x}-0000-0000-0000-000000000000)\n" for i, n in enumerate(names))
    gpus = nvidia_smi_list(out)
    assert len(gpus) == len(names)
    assert [g["name"] for g in gpus] == names


# --- nvidia-smi exit status ---------------------------------------------------------------------

def test_state_no_driver_exit_9():
    state = nvidia_smi_state({"rc": 9, "stdout": NO_DRIVER, "stderr": ""})
    assert state["state"] == "no_driver"
    assert "couldn't communicate with the NVIDIA driver" in state["detail"]


def test_state_missing_binary():
    # What ansible.builtin.command registers when the executable does not exist.
    result = {"rc": 2, "msg": "[Errno 2] No such file or directory: b'nvidia-smi'", "stdout": "", "stderr": ""}
    assert nvidia_smi_state(result)["state"] == "not_installed"
    assert nvidia_smi_state({})["state"] == "not_installed"
    # ansible-core 2.19 keeps the errno out of msg.
    result = {"rc": 2, "msg": "Error executing command.", "stdout": "", "stderr": "", "cmd": "nvidia-smi -L"}
    assert nvidia_smi_state(result)["state"] == "not_installed"
    # nvidia-smi's own exit 2 prints something.
    bad_arg = {"rc": 2, "stdout": "Invalid combination of input arguments.", "stderr": ""}
    assert nvidia_smi_state(bad_arg)["state"] == "invalid_argument"


def test_state_ok_and_other_codes():
    assert nvidia_smi_state({"rc": 0, "stdout": "GPU 0: Tesla T4\n"})["state"] == "ok"
    assert (
        nvidia_smi_state({"rc": 15, "stdout": "Unable to determine the device handle for GPU..."})["state"]
        == "gpu_lost"
    )
    assert nvidia_smi_state({"rc": 77, "stdout": ""})["state"] == "error"


# --- PCI ----------------------------------------------------------------------------------------

def test_pci_sysfs_picks_display_class_only():
    out = (
        "sysfs 0000:00:00.0 0x8086 0x1237 0x060000\n"
        "sysfs 0000:00:05.0 0x10de 0x1eb8 0x030200\n"  # Tesla T4, 3D controller
        "sysfs 0000:00:04.0 0x10de 0x27b8 0x030000\n"  # L4 as VGA
        "sysfs 0000:00:06.0 0x10de 0x10f8 0x040300\n"  # NVIDIA HDMI audio: not a GPU
        "sysfs 0000:00:07.0 0x10de 0x22a3 0x068000\n"  # NVSwitch bridge: not a GPU
    )
    gpus = nvidia_pci_gpus(out)
    assert [g["slot"] for g in gpus] == ["0000:00:04.0", "0000:00:05.0"]
    assert gpus[1] == {"slot": "0000:00:05.0", "vendor": "10de", "device": "1eb8", "class": "0302", "source": "sysfs"}


def test_pci_lspci_fallback():
    out = (
        'lspci 0000:00:04.0 "0302" "10de" "1eb8" -ra1 "10de" "12a2"\n'
        'lspci 0000:00:03.0 "0200" "1af4" "1000" "1af4" "0001"\n'
    )
    gpus = nvidia_pci_gpus(out)
    assert len(gpus) == 1 and gpus[0]["source"] == "lspci" and gpus[0]["device"] == "1eb8"


def test_pci_nothing():
    assert nvidia_pci_gpus("") == []
    assert nvidia_pci_gpus("garbage\n") == []


@given(devices=st.lists(
    st.tuples(st.sampled_from(["10de", "8086", "1af4", "1002"]),
              st.from_regex(r"\A[0-9a-f]{4}\Z"),
              st.sampled_from(["030000", "030200", "030201", "040300", "068000", "020000"])),
    max_size=12, unique_by=lambda d: d))
def test_pci_counts_match_definition(devices):
    lines = "".join(f"sysfs 0000:00:{i:02x}.0 0x{v} 0x{d} 0x{c}\n" for i, (v, d, c) in enumerate(devices))
    expected = sum(1 for v, _, c in devices if v == "10de" and c.startswith("03"))
    assert len(nvidia_pci_gpus(lines)) == expected


# --- apt-cache policy ---------------------------------------------------------------------------

def test_apt_policy():
    out = (
        "nvidia-driver:\n"
        "  Installed: (none)\n"
        "  Candidate: 535.309.01-0+deb12u1\n"
        "  Version table:\n"
        "     535.309.01-0+deb12u1 500\n"
        "        500 http://deb.debian.org/debian bookworm-updates/non-free amd64 Packages\n"
        "linux-headers-6.1.0-28-cloud-amd64:\n"
        "  Installed: 6.1.119-1\n"
        "  Candidate: 6.1.119-1\n"
        "dkms:\n"
        "  Installed: (none)\n"
        "  Candidate: (none)\n"
    )
    pol = nvidia_apt_policy(out)
    assert pol["nvidia-driver"] == {"installed": None, "candidate": "535.309.01-0+deb12u1"}
    assert pol["linux-headers-6.1.0-28-cloud-amd64"]["installed"] == "6.1.119-1"
    assert pol["dkms"] == {"installed": None, "candidate": None}
    assert "linux-headers-6.18.44-fc-v782" not in pol


def test_filter_module_exports():
    assert set(FilterModule().filters()) == {
        "nvidia_driver_branch", "nvidia_smi_csv", "nvidia_smi_list", "nvidia_smi_state",
        "nvidia_pci_gpus", "nvidia_apt_policy", "nvidia_gpus_requested",
    }


def test_gpus_requested_counts_machine_types_with_built_in_gpus():
    """Every family of the one list (BUILTIN_GPU_FAMILIES) asks for GPUs with no attached count;
    other machine types only with an attached GPU."""
    import ansible.module_utils.gce_preflight_checks as pc

    for family in pc.BUILTIN_GPU_FAMILIES:
        assert nvidia_gpus_requested(f"{family}-standard-8", 0) is True
    assert nvidia_gpus_requested("a2-highgpu-1g") is True
    assert nvidia_gpus_requested("n1-standard-8", 1) is True
    assert nvidia_gpus_requested("n1-standard-8", "2") is True
    for machine_type, count in (("n1-standard-8", 0), ("n2-standard-8", None), ("e2-small", ""),
                                ("", 0), (None, 0), ("a22-standard-4", 0), ("g2x-standard-4", 0)):
        assert nvidia_gpus_requested(machine_type, count) is False, machine_type
