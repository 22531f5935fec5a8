"""A rerun that skips the configure roles still pulls: a bucket may have new objects.

make up with a pull from a storage emulator -> make up: the roles are skipped, the pull runs and
copies nothing -> an object is added to the bucket -> make up: the roles are skipped again and
the new object is on the VM.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import urllib.request

import pytest

from conftest import run_playbook
from test_journey import NAME, containers, took_shortcut

pytestmark = pytest.mark.journey

BUCKET = "gcs-pull-test"
DEST = "/home/jupyter/data/models"
PULL_PLAY = "PLAY [Pull the data onto the VMs that took the shortcut]"


@pytest.fixture(scope="module")
def pull_setup(tmp_path_factory):
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make test-deps` (scripts/bootstrap --tests)")
    from gce_sandbox.testing import SandboxProcess
    from tests.support.fakegcs import FakeGcs

    work = tmp_path_factory.mktemp("pull-after-shortcut")
    seed = work / "seed" / BUCKET / "models"
    seed.mkdir(parents=True)
    (seed / "config.json").write_text('{"layers": 12}\n')
    # The VMs (containers on podman's bridge) reach this machine at the bridge's gateway.
    net = json.loads(subprocess.run(["podman", "network", "inspect", "podman"], capture_output=True, text=True,
                                    check=True).stdout)
    gateway = net[0]["subnets"][0]["gateway"]
    with SandboxProcess(work / "sandbox", vms="podman", startup_timeout=120) as sb, \
            FakeGcs(work / "gcs", host=gateway, scheme="https", data_dir=work / "seed") as gcs:
        # The bucket as the sandbox's Cloud Storage knows it, for the VM account's read grant.
        sb.api("POST", f"/storage/v1/b?project={sb.project}", {"name": BUCKET})
        extra = {"gcs_pull_endpoint": gcs.https_url, "gcs_pull_endpoint_ca_cert": gcs.ca_file.read_text(),
                 "gcs_pull_pulls": [{"name": "models", "src": f"gs://{BUCKET}/models/", "dest": DEST,
                                     "owner": "jupyter"}]}
        yield sb, gcs, extra


def on_vm(sb, command: str) -> str:
    return subprocess.run(["podman", "exec", containers(sb)[0].split()[0], "sh", "-c", command],
                          capture_output=True, text=True, timeout=60, check=True).stdout


def upload(gcs, name: str, data: bytes) -> None:
    context = ssl.create_default_context(cafile=str(gcs.ca_file))
    req = urllib.request.Request(f"{gcs.https_url}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={name}",
                                 data=data, method="POST", headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=30, context=context) as resp:
        assert resp.status == 200


def test_a_rerun_that_skips_the_roles_still_pulls_new_objects(pull_setup):
    sb, gcs, extra = pull_setup
    first = run_playbook("site.yml", sb, extra_vars=extra, timeout=900)
    assert first.rc == 0, first
    assert on_vm(sb, f"cat {DEST}/config.json") == '{"layers": 12}\n'

    second = run_playbook("site.yml", sb, extra_vars=extra, timeout=600)
    assert second.rc == 0 and second.changed == 0, second
    assert took_shortcut(second), second
    assert "TASK [gcs_pull : Pull | Synchronise each source into its destination]" in second.stdout.split(PULL_PLAY)[-1]

    upload(gcs, "models/new.bin", b"new weights\n")
    third = run_playbook("site.yml", sb, extra_vars=extra, timeout=600)
    assert third.rc == 0, third
    assert took_shortcut(third), third
    assert third.recap[NAME]["changed"] == 1, third
    assert on_vm(sb, f"cat {DEST}/new.bin") == "new weights\n"
    assert on_vm(sb, f"stat -c %U {DEST}/new.bin").strip() == "jupyter"
