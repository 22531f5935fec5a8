"""The sandbox answers as GCE does: each case names GCE's documented or publicly quoted answer.

Sources: Google's "GPU machine types" page (vCPUs per attached GPU on N1), error bodies quoted in
public issue threads (unknown zone, protected delete), gcloud's own image resolution (it asks
imageFamilyViews for its default image flags).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .helpers import PROJECT, ZONE, create_vm, vm_body, wait_op, zpath


def refused(sb, method, path, body=None):
    status, out = sb.call(method, path, body)
    assert status >= 400, out
    return status, out["error"]


# (case, request, GCE's status, reason, message)
def test_unknown_zone_on_an_instance_is_invalid_not_missing(sb):
    # GCE: 400 invalid "Invalid value for field 'zone': 'us-east1'. Unknown zone."
    status, err = refused(sb, "POST", zpath("instances", "us-central1-z"), vm_body(zone="us-central1-z"))
    assert (status, err["errors"][0]["reason"]) == (400, "invalid")
    assert err["message"] == "Invalid value for field 'zone': 'us-central1-z'. Unknown zone."
    status, err = refused(sb, "GET", zpath("instances/vm1", "us-central1-z"))
    assert (status, err["errors"][0]["reason"]) == (400, "invalid")
    # zones.get of a zone that does not exist stays a plain 404.
    assert sb.call("GET", f"/compute/v1/projects/{PROJECT}/zones/us-central1-z")[0] == 404


@pytest.mark.parametrize("machine,gpus,limit", [("n1-standard-64", 1, 48), ("n1-standard-96", 2, 48),
                                                ("n1-standard-16", 1, None), ("n1-standard-96", 4, None)])
def test_n1_vcpus_per_attached_t4(sb, machine, gpus, limit):
    # GCE: 400 "At most 48 vCPUs can be used along with 1 accelerator cards in an instance."
    body = vm_body(machine=machine, gpus=gpus)
    if limit is None:
        wait_op(sb, sb.api("POST", zpath("instances"), body))
        return
    status, err = refused(sb, "POST", zpath("instances"), body)
    assert status == 400
    assert err["message"] == f"At most {limit} vCPUs can be used along with {gpus} accelerator cards in an instance."


def test_deleting_a_protected_vm_is_invalid_resource_usage(sb):
    create_vm(sb, deletionProtection=True)
    status, err = refused(sb, "DELETE", zpath("instances/vm1"))
    # GCE: 400 invalidResourceUsage "Resource cannot be deleted if it's protected against deletion."
    assert (status, err["errors"][0]["reason"]) == (400, "invalidResourceUsage")
    assert "protected against deletion" in err["message"]


def test_deletion_protection_takes_true_or_false_only(sb):
    create_vm(sb)
    # google.cloud's update path sends deletionProtection=None: refused, protection stays off.
    status, _err = refused(sb, "POST", zpath("instances/vm1/setDeletionProtection?deletionProtection=None"))
    assert status == 400
    assert not sb.api("GET", zpath("instances/vm1")).get("deletionProtection")
    wait_op(sb, sb.api("POST", zpath("instances/vm1/setDeletionProtection?deletionProtection=true")))
    assert sb.api("GET", zpath("instances/vm1"))["deletionProtection"] is True
    wait_op(sb, sb.api("POST", zpath("instances/vm1/setDeletionProtection?deletionProtection=false")))
    assert sb.api("GET", zpath("instances/vm1"))["deletionProtection"] is False


def test_image_family_views_resolve_like_gce(sb):
    view = sb.api("GET", "/compute/v1/projects/debian-cloud/zones/-/imageFamilyViews/debian-12")
    assert view["image"]["family"] == "debian-12"
    assert view["image"]["selfLink"].startswith("https://www.googleapis.com/compute/v1/projects/debian-cloud/")
    assert sb.call("GET", "/compute/v1/projects/debian-cloud/zones/-/imageFamilyViews/no-such-family")[0] == 404


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed")
def test_gcloud_create_with_its_default_image_flags(sb, tmp_path):
    env = {**sb.env, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "HOME": str(tmp_path)}
    out = subprocess.run(["gcloud", "compute", "instances", "create", "plain", f"--zone={ZONE}",
                          "--machine-type=e2-small", "--image-project=debian-cloud", "--image-family=debian-12"],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    vm = sb.api("GET", zpath("instances/plain"))
    assert vm["status"] in ("RUNNING", "STAGING")
    # gcloud sends the family view as the source image; the disk is made from the family's image.
    disk = sb.api("GET", zpath("disks/plain"))
    assert "/projects/debian-cloud/global/images/" in disk["sourceImage"], disk["sourceImage"]
