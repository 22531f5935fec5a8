"""The nvidia_driver role's Ubuntu and NVIDIA-repository paths, in check mode.

The Molecule scenario installs the real Debian packages; NVIDIA's repository and Ubuntu cannot be
reached or booted here. So this runs the role with `--check --diff` against this machine, with the
OS facts of Ubuntu 24.04 / 22.04 / Debian 12 substituted (molecule/nvidia_driver/render/), and
asserts what it would write: the deb822 source, its keyring path, the apt pin, and which packages
it would install. Check mode changes nothing. The keyring download is answered by a loopback HTTP
server standing in for a mirror of NVIDIA's repository (`nvidia_driver_cuda_repo_url`).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "molecule" / "nvidia_driver" / "render" / "render.yml"
TARGET_PYTHON = "/usr/bin/python3"  # the apt module needs the system's python3-apt


def _facts(distribution, version, major, release):
    return {
        "distribution": distribution,
        "distribution_version": version,
        "distribution_major_version": major,
        "distribution_release": release,
        "architecture": "x86_64",
        "kernel": "6.8.0-1019-gcp" if distribution == "Ubuntu" else "6.1.0-28-cloud-amd64",
        "virtualization_type": "kvm",
        "virtualization_role": "guest",
        "os_family": "Debian",
    }


UBUNTU_2404 = _facts("Ubuntu", "24.04", "24", "noble")
UBUNTU_2204 = _facts("Ubuntu", "22.04", "22", "jammy")
DEBIAN_12 = _facts("Debian", "12.8", "12", "bookworm")
DEBIAN_13 = _facts("Debian", "13.1", "13", "trixie")


def _skip_reason():
    if not shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)):
        return "ansible-playbook not in the test venv"
    if not Path(TARGET_PYTHON).exists():
        return f"{TARGET_PYTHON} missing"
    probe = subprocess.run([TARGET_PYTHON, "-c", "import apt"], capture_output=True)
    if probe.returncode != 0:
        return "python3-apt missing (needs a Debian/Ubuntu machine)"
    if shutil.which("apt-cache") is None:
        return "apt-cache missing"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A loopback HTTP server laid out like NVIDIA's repository (only the keyring package)."""
    root = tmp_path_factory.mktemp("cuda-mirror")
    for slug in ("ubuntu2404", "ubuntu2204", "debian12", "debian13"):
        d = root / slug / "x86_64"
        d.mkdir(parents=True)
        (d / "cuda-keyring_1.1-1_all.deb").write_bytes(b"not fetched in check mode\n")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/compute/cuda/repos", root
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def translate_path(self, path):
        return super().translate_path(path.replace("/compute/cuda/repos", "", 1))

    def do_HEAD(self):
        _QuietHandler.requests.append(("HEAD", self.path))
        super().do_HEAD()

    def do_GET(self):
        _QuietHandler.requests.append(("GET", self.path))
        super().do_GET()

    def log_message(self, *args):
        pass


def run_role(facts: dict, tags: str, **role_vars) -> dict:
    """Run render.yml in check+diff mode; return {task name: [host results]} from the JSON callback."""
    extra = {"nvidia_driver_test_facts": facts, "ansible_python_interpreter": TARGET_PYTHON, **role_vars}
    env = dict(os.environ)
    env.update(
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", "--check", "--diff", "--tags", tags,
         "-e", json.dumps(extra), str(PLAYBOOK)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    tasks: dict[str, dict] = {}
    for play in out["plays"]:
        for task in play["tasks"]:
            if "localhost" in task["hosts"]:
                # "nvidia_driver : Repository | ..." -> "Repository | ..."
                tasks[task["task"]["name"].split(" : ", 1)[-1]] = task["hosts"]["localhost"]
    assert out["stats"]["localhost"]["failures"] == 0
    return tasks


def rendered(result: dict) -> str:
    diffs = result.get("diff")
    if isinstance(diffs, dict):
        diffs = [diffs]
    return "".join(d.get("after", "") for d in diffs or [])


def test_ubuntu_2404_cuda_repo_source(mirror):
    url, _ = mirror
    _QuietHandler.requests.clear()
    tasks = run_role(UBUNTU_2404, "nvidia_driver_repo", nvidia_driver_cuda_repo_url=url)

    source = tasks["Repository | Add NVIDIA's CUDA repository"]
    assert source["changed"] is True
    assert "/etc/apt/sources.list.d/nvidia-driver-cuda.sources" in json.dumps(source)
    text = rendered(source)
    stanza = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert stanza == [
        "Types: deb",
        f"URIs: {url}/ubuntu2404/x86_64/",
        "Suites: /",
        "Signed-By: /usr/share/keyrings/cuda-archive-keyring.gpg",
    ]
    assert "Ansible managed" in text or "ansible" in text.lower()

    pin = rendered(tasks["Repository | Prefer NVIDIA's packages over same-named distribution packages"])
    assert "Pin: release l=NVIDIA CUDA" in pin and "Pin-Priority: 600" in pin

    # The keyring package would come from the mirror's ubuntu2404 directory, checksum-pinned;
    # check mode only asks (HEAD), it downloads nothing.
    fetch = tasks["Repository | Download the cuda-keyring package"]
    assert fetch["changed"] is True
    assert ("HEAD", "/compute/cuda/repos/ubuntu2404/x86_64/cuda-keyring_1.1-1_all.deb") in _QuietHandler.requests
    assert not [r for r in _QuietHandler.requests if r[0] == "GET"]
    assert not Path("/var/cache/nvidia-driver/cuda-keyring_1.1-1_all.deb").exists() or fetch.get("skipped")

    # The Debian non-free source is not for Ubuntu, nor for this source.
    assert "Repository | Enable Debian's non-free components" not in tasks or \
        tasks["Repository | Enable Debian's non-free components"].get("skipped")


def test_ubuntu_distro_packages_and_no_extra_source():
    tasks = run_role(
        UBUNTU_2404, "nvidia_driver_install", nvidia_driver_source="distro", nvidia_driver_cuda_toolkit=True
    )
    # Ubuntu's driver is in "restricted", already enabled: no source is written.
    for name in ("Repository | Add NVIDIA's CUDA repository", "Repository | Enable Debian's non-free components"):
        assert name not in tasks or tasks[name].get("skipped"), name
    # This machine's apt has never heard of Ubuntu's packages: check mode names them instead.
    note = tasks["Packages | Say what check mode cannot show"]["msg"]
    for pkg in ("nvidia-driver-570-server", "nvidia-utils-570-server", "nvidia-cuda-toolkit"):
        assert pkg in note, note
    assert "would be installed from distro" in note


def test_cuda_repo_packages_follow_branch_and_toolkit(mirror):
    url, _ = mirror
    tasks = run_role(UBUNTU_2204, "nvidia_driver_install", nvidia_driver_cuda_repo_url=url,
                     nvidia_driver_branch="570", nvidia_driver_cuda_toolkit=True,
                     nvidia_driver_cuda_toolkit_version="12-8")
    assert f"URIs: {url}/ubuntu2204/x86_64/" in rendered(tasks["Repository | Add NVIDIA's CUDA repository"])
    note = tasks["Packages | Say what check mode cannot show"]["msg"]
    assert "cuda-drivers-570" in note and "cuda-toolkit-12-8" in note
    assert "would be installed from cuda_repo" in note


@pytest.mark.usefixtures("mirror")
def test_debian_12_distro_source():
    tasks = run_role(DEBIAN_12, "nvidia_driver_repo", nvidia_driver_source="distro")
    text = rendered(tasks["Repository | Enable Debian's non-free components"])
    stanzas = [s for s in text.split("\n\n") if "Types:" in s]
    assert len(stanzas) == 2
    assert "Suites: bookworm bookworm-updates" in stanzas[0]
    assert "Suites: bookworm-security" in stanzas[1]
    for s in stanzas:
        assert "Components: contrib non-free non-free-firmware" in s
        assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in s


def test_debian_13_cuda_repo_has_no_pinned_checksum(mirror):
    url, _ = mirror
    tasks = run_role(DEBIAN_13, "nvidia_driver_repo", nvidia_driver_cuda_repo_url=url)
    assert f"URIs: {url}/debian13/x86_64/" in rendered(tasks["Repository | Add NVIDIA's CUDA repository"])


def test_distro_branch_not_in_debian_fails_fast():
    extra = {"nvidia_driver_test_facts": DEBIAN_12, "ansible_python_interpreter": TARGET_PYTHON,
             "nvidia_driver_source": "distro", "nvidia_driver_branch": "570"}
    env = dict(os.environ, ANSIBLE_NOCOLOR="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", "--check", "--tags", "nvidia_driver_repo",
         "-e", json.dumps(extra), str(PLAYBOOK)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "nvidia_driver_branch=570 is not available from nvidia_driver_source=distro" in proc.stdout


def test_detect_playbook_on_a_machine_without_gpu():
    """The standalone detection/verification entry point, as documented, on this GPU-less machine."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", "--check", "--tags", "nvidia_driver_verify",
         "-e", json.dumps({"ansible_python_interpreter": TARGET_PYTHON}),
         "roles/nvidia_driver/tests/detect.yml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    names = [t["task"]["name"].split(" : ", 1)[-1] for p in out["plays"] for t in p["tasks"]]
    # Only detection and verification ran: nothing was installed, held or configured.
    assert not [n for n in names if n.split(" | ")[0] in ("Repository", "Packages", "Configure", "Hold", "Reboot")]
    report = [t["hosts"]["localhost"] for p in out["plays"] for t in p["tasks"]
              if t["task"]["name"].endswith("Verify | Report the result")][0]
    assert report["msg"].startswith("No NVIDIA GPU on the PCI bus")
    assert "\n" not in report["msg"]
    assert "driver verification skipped" in report["msg"]
