"""The sandbox answers as GCE does: each case names GCE's documented or publicly quoted answer.

Sources: Google's "GPU machine types" page (vCPUs per attached GPU on N1; GPUs attach to N1 only),
"GPU regions and zones" (which zone offers which GPU), error bodies quoted in public issue threads
(unknown zone, protected delete, GPU not in the zone, E2 + GPU), gcloud's own image resolution (it
asks imageFamilyViews for its default image flags), and the Compute Engine v1 API reference for each
method and field the sandbox does not emulate (those answer 501 naming it: GCE would act on them).

Elsewhere: operation timing (test_timing.py), partial failures (test_rules.py, partial_insert),
429/503 bursts and lost connections (tests/unit/test_gce_client_sandbox.py), clients and every
google.cloud auth kind through env.sh (test_clients.py).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .helpers import PROJECT, ZONE, create_vm, vm_body, wait_op, zpath
from conftest import NO_GCLOUD


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


@pytest.mark.skipif(shutil.which("gcloud") is None, reason=NO_GCLOUD)
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


def test_gpu_the_zone_does_not_offer_is_a_missing_resource(sb):
    # GCE resolves the accelerator type like any reference; users quote its answer for a GPU a zone
    # lacks: "The resource 'projects/P/zones/Z/acceleratorTypes/T' was not found" (which zone offers
    # which GPU: Google's "GPU regions and zones" page).
    status, err = refused(sb, "POST", zpath("instances", "us-east1-b"), vm_body(zone="us-east1-b"))
    assert (status, err["errors"][0]["reason"]) == (404, "notFound")
    assert err["message"] == (f"The resource 'projects/{PROJECT}/zones/us-east1-b/acceleratorTypes/nvidia-tesla-t4' "
                              "was not found")


@pytest.mark.parametrize("machine", ["e2-standard-2", "a2-highgpu-1g"])
def test_gpu_on_a_machine_that_takes_none_attached(sb, machine):
    # GCE (400), as users quote it: "[e2-standard-2, nvidia-tesla-t4] features are not compatible for
    # creating instance." Google's GPU machine types page: GPUs attach to N1 only; A2/G2 have theirs built in.
    status, err = refused(sb, "POST", zpath("instances"), vm_body(machine=machine))
    assert status == 400
    assert err["message"] == f"[{machine}, nvidia-tesla-t4] features are not compatible for creating instance."


# ---- what the sandbox does not emulate: 501 naming the method or field, never GCE's words ----------
# Each of these GCE accepts and acts on (source: the Compute Engine v1 API reference page of the method
# or field named); the sandbox must neither refuse it as GCE would refuse something else nor drop it.

def _with_disk(**attached):
    body = vm_body()
    body["disks"].append(attached)
    return body


def _boot_disk(**extra):
    body = vm_body()
    body["disks"][0].update(extra)
    return body


def _nic(**extra):
    body = vm_body()
    body["networkInterfaces"][0].update(extra)
    return body


NOT_EMULATED_METHODS = [
    # (method id, HTTP method, path, body)  -- reference: instances.attachDisk, .detachDisk,
    # addresses.insert/.list, networks.insert, subnetworks.insert
    ("compute.instances.attachDisk", "POST", zpath("instances/vm1/attachDisk"), {"source": zpath("disks/data")}),
    ("compute.instances.detachDisk", "POST", zpath("instances/vm1/detachDisk?deviceName=data"), None),
    ("compute.addresses.insert", "POST", f"/compute/v1/projects/{PROJECT}/regions/us-central1/addresses",
     {"name": "jupyter-ip"}),
    ("compute.addresses.list", "GET", f"/compute/v1/projects/{PROJECT}/regions/us-central1/addresses", None),
    ("compute.networks.insert", "POST", f"/compute/v1/projects/{PROJECT}/global/networks",
     {"name": "private", "autoCreateSubnetworks": False}),
    ("compute.subnetworks.insert", "POST", f"/compute/v1/projects/{PROJECT}/regions/us-central1/subnetworks",
     {"name": "private", "network": "global/networks/private", "ipCidrRange": "10.0.0.0/24"}),
]


@pytest.mark.parametrize("method_id,verb,path,body", NOT_EMULATED_METHODS, ids=[m[0] for m in NOT_EMULATED_METHODS])
def test_methods_the_sandbox_does_not_emulate_answer_501(sb, method_id, verb, path, body):
    create_vm(sb)
    status, err = refused(sb, verb, path, body)
    assert (status, err["errors"][0]["reason"]) == (501, "notImplemented"), err
    assert method_id in err["message"]


NOT_EMULATED_FIELDS = [
    # (case, request path, body, what the 501 names)
    # AttachedDisk.diskEncryptionKey: customer-supplied/managed encryption keys.
    ("diskEncryptionKey", zpath("instances"), _boot_disk(diskEncryptionKey={"rawKey": "c2VjcmV0"}),
     "'resource.disks[0].diskEncryptionKey'"),
    ("sourceImageEncryptionKey", zpath("instances"),
     _boot_disk(initializeParams=dict(vm_body()["disks"][0]["initializeParams"],
                                      sourceImageEncryptionKey={"kmsKeyName": "k"})),
     "'resource.disks[0].initializeParams.sourceImageEncryptionKey'"),
    # Local SSDs: AttachedDisk.type SCRATCH with diskTypes/local-ssd.
    ("local-ssd", zpath("instances"),
     _with_disk(type="SCRATCH", autoDelete=True, interface="NVME",
                initializeParams={"diskType": f"zones/{ZONE}/diskTypes/local-ssd"}),
     "'resource.disks[1].type' = 'SCRATCH'"),
    ("local-ssd disk type", zpath("disks"), {"name": "scratch", "type": f"zones/{ZONE}/diskTypes/local-ssd"},
     "Disk type 'local-ssd'"),
    ("hyperdisk", zpath("instances"),
     _boot_disk(initializeParams=dict(vm_body()["disks"][0]["initializeParams"],
                                      diskType=f"zones/{ZONE}/diskTypes/hyperdisk-balanced")),
     "Disk type 'hyperdisk-balanced'"),
    ("aliasIpRanges", zpath("instances"), _nic(aliasIpRanges=[{"ipCidrRange": "/24"}]),
     "'resource.networkInterfaces[0].aliasIpRanges'"),
    ("instance template", zpath("instances?sourceInstanceTemplate=global/instanceTemplates/t"), vm_body(),
     "'sourceInstanceTemplate'"),
    ("machine type outside the catalog", zpath("instances"), vm_body(machine="n2-standard-8", gpus=0),
     "Machine type 'n2-standard-8'"),
    ("GPU outside the catalog", zpath("instances"), vm_body(gpu="nvidia-h100-80gb"), "'nvidia-h100-80gb'"),
    ("disk from a snapshot", zpath("disks"), {"name": "restored", "sourceSnapshot": "global/snapshots/s"},
     "'resource.sourceSnapshot'"),
]


@pytest.mark.parametrize("case,path,body,named", NOT_EMULATED_FIELDS, ids=[f[0] for f in NOT_EMULATED_FIELDS])
def test_fields_the_sandbox_cannot_honour_answer_501_and_create_nothing(sb, case, path, body, named):
    status, err = refused(sb, "POST", path, body)
    assert (status, err["errors"][0]["reason"]) == (501, "notImplemented"), (case, err)
    assert named in err["message"], err["message"]
    assert "not emulated by the sandbox" in err["message"]
    state = sb.state()
    assert not any(state.get("instances", {}).values()) and not any(state.get("disks", {}).values())


def test_disk_type_get_of_a_real_type_the_catalog_lacks(sb):
    status, err = refused(sb, "GET", zpath("diskTypes/local-ssd"))
    assert status == 501 and "local-ssd" in err["message"]
    assert sb.call("GET", zpath("diskTypes/pd-turbo"))[0] == 404


ROUTERS = f"/compute/v1/projects/{PROJECT}/regions/us-central1/routers"
NAT = {"name": "nat", "natIpAllocateOption": "AUTO_ONLY",
       "sourceSubnetworkIpRangesToNat": "ALL_SUBNETWORKS_ALL_IP_RANGES"}


def test_router_with_cloud_nat_insert_get_patch_delete(sb):
    # Compute v1 routers: regional, `nats` replaced whole by PATCH, a regional operation each.
    op = sb.api("POST", ROUTERS, {"name": "r1", "network": "global/networks/default", "nats": [NAT]})
    assert op["selfLink"].split("/operations/")[0].endswith("/regions/us-central1")
    wait_op(sb, op)
    router = sb.api("GET", f"{ROUTERS}/r1")
    assert router["kind"] == "compute#router" and router["nats"] == [NAT]
    assert router["network"].endswith(f"/projects/{PROJECT}/global/networks/default")
    assert router["region"].endswith("/regions/us-central1")
    assert [r["name"] for r in sb.api("GET", ROUTERS)["items"]] == ["r1"]
    wait_op(sb, sb.api("PATCH", f"{ROUTERS}/r1", {"nats": [NAT, dict(NAT, name="nat2")]}))
    assert [n["name"] for n in sb.api("GET", f"{ROUTERS}/r1")["nats"]] == ["nat", "nat2"]
    assert refused(sb, "POST", ROUTERS, {"name": "r1", "network": "global/networks/default"})[0] == 409
    wait_op(sb, sb.api("DELETE", f"{ROUTERS}/r1"))
    assert sb.call("GET", f"{ROUTERS}/r1")[0] == 404


@pytest.mark.parametrize("body,status,named", [
    ({"name": "r2", "network": "global/networks/nope"}, 404, "global/networks/nope"),
    ({"name": "r2", "network": "global/networks/default", "nats": [dict(NAT, sourceSubnetworkIpRangesToNat="X")]},
     400, "source_subnetwork_ip_ranges_to_nat"),
    ({"name": "r2", "network": "global/networks/default", "nats": [NAT, NAT]}, 400, "unique"),
    ({"name": "r2", "network": "global/networks/default", "bgp": {"asn": 64514}}, 501, "'resource.bgp'"),
    ({"name": "r2", "network": "global/networks/default",
      "nats": [dict(NAT, natIpAllocateOption="MANUAL_ONLY", natIps=["x"])]}, 501, "MANUAL_ONLY"),
])
def test_router_requests_gce_refuses_or_the_sandbox_cannot_honour(sb, body, status, named):
    got, err = refused(sb, "POST", ROUTERS, body)
    assert got == status and named in err["message"], err
    assert sb.call("GET", f"{ROUTERS}/r2")[0] == 404
