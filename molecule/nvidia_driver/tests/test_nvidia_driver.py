"""Verify the nvidia_driver role on a GPU-less Debian 12 container (testinfra, `host` fixture)."""

import json

DRIVER_PACKAGES = ["nvidia-driver", "libcuda1", "nvidia-smi", "nvidia-persistenced", "nvidia-kernel-dkms", "dkms"]


def test_driver_packages_installed_from_non_free(host):
    for name in DRIVER_PACKAGES:
        assert host.package(name).is_installed, name
    version = host.package("nvidia-driver").version
    assert version.startswith("535."), version
    policy = host.check_output("apt-cache policy nvidia-driver")
    assert "non-free" in policy


def test_non_free_source_is_deb822_and_signed(host):
    src = host.file("/etc/apt/sources.list.d/nvidia-driver-debian-nonfree.sources")
    assert src.mode == 0o644
    content = src.content_string
    assert "Components: contrib non-free non-free-firmware" in content
    assert "Suites: bookworm bookworm-updates" in content
    assert "Suites: bookworm-security" in content
    assert content.count("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg") == 2
    # The system's own source still carries only main: the role adds, it does not rewrite.
    assert "Components: main\n" in host.file("/etc/apt/sources.list.d/debian.sources").content_string


def test_driver_packages_are_held(host):
    held = set(host.check_output("apt-mark showhold").split())
    assert {"nvidia-driver", "nvidia-smi", "nvidia-persistenced", "nvidia-kernel-dkms"} <= held
    # The whole family, so a library upgrade cannot outrun the loaded module.
    assert {"libcuda1", "nvidia-kernel-support", "firmware-nvidia-gsp", "nvidia-driver-libs"} <= held
    assert not {"dkms", "nvidia-cuda-toolkit"} & held
    installed_family = [
        p for p in host.check_output("dpkg-query -W -f='${Package}\\n' 'libnvidia*' 'nvidia-*'").split()
        if host.package(p).is_installed
    ]
    assert set(installed_family) <= held, set(installed_family) - held
    # The container runs its host's kernel: no kernel package exists to hold, and none is invented.
    kernel = host.check_output("uname -r")
    assert f"linux-image-{kernel}" not in held


def test_dkms_registered_the_module(host):
    status = host.check_output("dkms status")
    assert "nvidia-current/535" in status, status


def test_nouveau_blacklisted(host):
    conf = host.file("/etc/modprobe.d/nvidia-driver-blacklist-nouveau.conf")
    assert conf.mode == 0o644
    lines = [ln.strip() for ln in conf.content_string.splitlines() if ln.strip() and not ln.startswith("#")]
    assert "blacklist nouveau" in lines
    assert "options nouveau modeset=0" in lines
    # What modprobe itself makes of the configuration.
    assert "blacklist nouveau" in host.check_output("modprobe --showconfig | grep -w nouveau")


def test_persistenced_enabled(host):
    assert host.service("nvidia-persistenced").is_enabled


def test_nvidia_smi_cannot_reach_a_driver(host):
    cmd = host.run("nvidia-smi -L")
    assert cmd.rc == 9
    assert "couldn't communicate with the NVIDIA driver" in cmd.stdout + cmd.stderr


def test_fact_file_says_no_gpu_plainly(host):
    fact = host.file("/etc/ansible/facts.d/nvidia_driver.fact")
    assert fact.mode == 0o644
    facts = json.loads(fact.content_string)
    assert facts["gpu_present"] is False
    assert facts["gpu_count"] == 0
    assert facts["verified"] is False
    assert facts["reboot_required"] is False
    assert facts["source"] == "distro"
    assert facts["nvidia_smi"]["state"] == "no_driver"
    assert facts["nvidia_smi"]["rc"] == 9
    assert facts["message"].startswith("No NVIDIA GPU on the PCI bus (a container): driver verification skipped.")
    assert "\n" not in facts["message"]
    assert "exit 9" in facts["message"]
    assert "nvidia-driver" in facts["held"]
