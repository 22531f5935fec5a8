"""The Compute Engine rules the sandbox enforces, over plain HTTP against a real server."""

from __future__ import annotations

import time

import pytest

from gce_sandbox.testing import SandboxError

from .helpers import BASE, PROJECT, ZONE, create_vm, path_of, vm_body, wait_op, zpath


def refused(sb, method, path, body=None) -> tuple[int, dict]:
    status, out = sb.call(method, path, body)
    assert status >= 400, out
    return status, out["error"]


# ---- request validation against the discovery document ----------------------------------

def test_unknown_field_is_refused_like_gce(sb):
    status, err = refused(sb, "POST", zpath("instances"), vm_body(colour="blue"))
    assert status == 400
    assert err["message"] == ("Invalid JSON payload received. Unknown name \"colour\" at 'instance_resource': "
                              "Cannot find field.")
    status, err = refused(sb, "POST", zpath("instances"),
                          vm_body(scheduling={"onHostMaintenance": "TERMINATE", "spot": True}))
    assert "Unknown name \"spot\" at 'instance_resource.scheduling'" in err["message"]


def test_bad_enum_names_field_and_value(sb):
    status, err = refused(sb, "POST", zpath("instances"), vm_body(scheduling={"onHostMaintenance": "SOMETIMES"}))
    assert status == 400
    assert "instance_resource.scheduling.on_host_maintenance" in err["message"]
    assert '"SOMETIMES"' in err["message"]


def test_wrong_json_type_is_refused(sb):
    body = vm_body(metadata={"items": [{"key": "install-nvidia-driver", "value": True}]})
    status, err = refused(sb, "POST", zpath("instances"), body)
    assert status == 400 and "(TYPE_STRING), true" in err["message"]


def test_unknown_path_and_unimplemented_method(sb):
    status, err = refused(sb, "GET", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/widgets")
    assert status == 404
    status, err = refused(sb, "GET", f"/compute/v1/projects/{PROJECT}/global/routes")
    assert status == 501 and "compute.routes.list" in err["message"]


# ---- GPU rules ------------------------------------------------------------------------

def test_gpu_without_terminate_is_refused(sb):
    status, err = refused(sb, "POST", zpath("instances"), vm_body(scheduling={}))
    assert status == 400
    assert err["message"] == "Instances with guest accelerators do not support live migration."
    status, err = refused(sb, "POST", zpath("instances"), vm_body(scheduling={"onHostMaintenance": "MIGRATE"}))
    assert "live migration" in err["message"]


def test_spot_needs_no_automatic_restart_and_accepts_termination_action(sb):
    status, err = refused(sb, "POST", zpath("instances"), vm_body(
        scheduling={"provisioningModel": "SPOT", "automaticRestart": True}))
    assert "cannot be automatically restarted" in err["message"]
    create_vm(sb, scheduling={"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"})
    inst = sb.api("GET", zpath("instances/vm1"))
    assert inst["scheduling"]["provisioningModel"] == "SPOT"
    assert inst["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert inst["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert inst["scheduling"]["automaticRestart"] is False


def test_zone_without_that_accelerator_is_refused(sb):
    status, err = refused(sb, "POST", zpath("instances", "us-east1-b"), vm_body(zone="us-east1-b"))
    assert status == 404  # GCE: the reference does not resolve (test_conformance)
    assert "nvidia-tesla-t4" in err["message"] and "us-east1-b" in err["message"]
    offered = sb.api("GET", zpath("acceleratorTypes", "us-east1-b"))
    assert [a["name"] for a in offered["items"]] == ["nvidia-tesla-p100"]


@pytest.mark.parametrize("gpu,count", [("nvidia-tesla-t4", 3), ("nvidia-tesla-t4", 8), ("nvidia-tesla-v100", 6)])
def test_invalid_gpu_count_is_refused(sb, gpu, count):
    status, err = refused(sb, "POST", zpath("instances"), vm_body(gpu=gpu, gpus=count))
    assert status == 400 and f"Accelerator count {count} is not valid" in err["message"]


def test_a2_has_builtin_a100_and_refuses_extra_gpus(sb):
    status, err = refused(sb, "POST", zpath("instances"), vm_body(machine="a2-highgpu-1g"))
    assert status == 400 and "a2-highgpu-1g" in err["message"] and "not compatible" in err["message"]
    sb.set_quota("NVIDIA_A100_GPUS", 1, region="us-central1")
    create_vm(sb, machine="a2-highgpu-1g", gpus=0)
    inst = sb.api("GET", zpath("instances/vm1"))
    assert inst["guestAccelerators"] == [{"acceleratorType": f"{BASE}projects/{PROJECT}/zones/{ZONE}/"
                                                             "acceleratorTypes/nvidia-tesla-a100",
                                          "acceleratorCount": 1}]
    # Built-in GPUs need TERMINATE too.
    status, err = refused(sb, "POST", zpath("instances"), vm_body(name="vm2", machine="a2-highgpu-1g", gpus=0,
                                                                  scheduling={}))
    assert "live migration" in err["message"]


def test_e2_takes_no_gpu_and_l4_cannot_be_attached(sb):
    status, err = refused(sb, "POST", zpath("instances"), vm_body(machine="e2-standard-4"))
    assert "features are not compatible" in err["message"]  # GCE's wording: test_conformance
    status, err = refused(sb, "POST", zpath("instances"), vm_body(gpu="nvidia-l4"))
    assert "cannot be attached" in err["message"]


def test_machine_type_image_and_disk_rules(sb):
    status, err = refused(sb, "POST", zpath("instances"), vm_body(machine="n1-standard-3"))
    assert "Machine type with name 'n1-standard-3' does not exist in zone 'us-central1-a'" in err["message"]
    status, err = refused(sb, "POST", zpath("instances"), vm_body(disk_size=20))
    assert "Requested disk size cannot be smaller than the image size (50 GB)" in err["message"]
    status, err = refused(sb, "POST", zpath("instances"),
                          vm_body(image="projects/deeplearning-platform-release/global/images/family/no-such"))
    assert status == 404
    body = vm_body()
    body["disks"][0]["initializeParams"]["diskType"] = "zones/us-central1-a/diskTypes/pd-turbo"
    status, err = refused(sb, "POST", zpath("instances"), body)
    assert "diskType" in err["message"]


def test_deprecated_dlvm_family(sb):
    img = sb.api("GET", "/compute/v1/projects/deeplearning-platform-release/global/images/family/"
                        "pytorch-latest-gpu-debian-11-py310")
    assert img["deprecated"]["state"] == "DEPRECATED"
    img = sb.api("GET", "/compute/v1/projects/debian-cloud/global/images/family/debian-12")
    assert img["name"].startswith("debian-12-bookworm-v") and "deprecated" not in img


# ---- lifecycle rules --------------------------------------------------------------------

def test_disk_resize_only_grows(sb):
    create_vm(sb)
    status, err = refused(sb, "POST", zpath("disks/vm1/resize"), {"sizeGb": "60"})
    assert status == 400 and "must be larger than existing size '100' GiB" in err["message"]
    wait_op(sb, sb.api("POST", zpath("disks/vm1/resize"), {"sizeGb": "200"}))
    assert sb.api("GET", zpath("disks/vm1"))["sizeGb"] == "200"
    assert sb.api("GET", zpath("instances/vm1"))["disks"][0]["diskSizeGb"] == "200"


def test_set_machine_type_only_when_terminated(sb):
    create_vm(sb)
    body = {"machineType": f"zones/{ZONE}/machineTypes/n1-standard-8"}
    status, err = refused(sb, "POST", zpath("instances/vm1/setMachineType"), body)
    assert status == 400 and "must be stopped" in err["message"]
    status, err = refused(sb, "POST", zpath("instances/vm1/setMachineResources"),
                          {"guestAccelerators": []})
    assert status == 400
    wait_op(sb, sb.api("POST", zpath("instances/vm1/stop")))
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "TERMINATED"
    wait_op(sb, sb.api("POST", zpath("instances/vm1/setMachineType"), body))
    inst = sb.api("GET", zpath("instances/vm1"))
    assert inst["machineType"].endswith("/machineTypes/n1-standard-8")
    assert inst["guestAccelerators"][0]["acceleratorCount"] == 1


@pytest.mark.parametrize("method,fp_key,body", [
    ("setLabels", "labelFingerprint", {"labels": {"env": "dev"}}),
    ("setMetadata", "fingerprint", {"items": [{"key": "a", "value": "b"}]}),
    ("setTags", "fingerprint", {"items": ["jupyter"]}),
])
def test_fingerprint_mismatch_is_412_and_fingerprints_change(sb, method, fp_key, body):
    create_vm(sb)
    status, err = refused(sb, "POST", zpath(f"instances/vm1/{method}"), dict(body, **{fp_key: "c3RhbGU="}))
    assert status == 412 and err["errors"][0]["reason"] == "conditionNotMet"
    inst = sb.api("GET", zpath("instances/vm1"))
    current = {"setLabels": inst["labelFingerprint"], "setMetadata": inst["metadata"]["fingerprint"],
               "setTags": inst["tags"]["fingerprint"]}[method]
    wait_op(sb, sb.api("POST", zpath(f"instances/vm1/{method}"), dict(body, **{fp_key: current})))
    inst = sb.api("GET", zpath("instances/vm1"))
    new = {"setLabels": inst["labelFingerprint"], "setMetadata": inst["metadata"]["fingerprint"],
           "setTags": inst["tags"]["fingerprint"]}[method]
    assert new != current
    # The old fingerprint is now stale.
    status, _ = refused(sb, "POST", zpath(f"instances/vm1/{method}"), dict(body, **{fp_key: current}))
    assert status == 412


def test_instance_delete_honours_auto_delete(sb):
    wait_op(sb, sb.api("POST", zpath("disks"), {"name": "data", "sizeGb": "20"}))
    body = vm_body()
    body["disks"].append({"source": f"zones/{ZONE}/disks/data", "autoDelete": False})
    wait_op(sb, sb.api("POST", zpath("instances"), body))
    assert sb.api("GET", zpath("disks/data"))["users"][0].endswith("/instances/vm1")
    status, err = refused(sb, "DELETE", zpath("disks/data"))
    assert err["errors"][0]["reason"] == "resourceInUseByAnotherResource"
    wait_op(sb, sb.api("DELETE", zpath("instances/vm1")))
    assert sb.call("GET", zpath("disks/vm1"))[0] == 404            # boot disk auto-deleted
    assert "users" not in sb.api("GET", zpath("disks/data"))        # kept, detached


def test_not_found_and_already_exists_wording(sb):
    status, err = refused(sb, "GET", zpath("instances/ghost"))
    assert status == 404
    assert err["message"] == f"The resource 'projects/{PROJECT}/zones/{ZONE}/instances/ghost' was not found"
    assert err["errors"][0] == {"message": err["message"], "domain": "global", "reason": "notFound"}
    create_vm(sb)
    status, err = refused(sb, "POST", zpath("instances"), vm_body())
    assert status == 409 and err["errors"][0]["reason"] == "alreadyExists"


# ---- quotas -------------------------------------------------------------------------------

def quota(sb, metric, region="us-central1"):
    if region:
        quotas = sb.api("GET", f"/compute/v1/projects/{PROJECT}/regions/{region}")["quotas"]
    else:
        quotas = sb.api("GET", f"/compute/v1/projects/{PROJECT}")["quotas"]
    return next(q for q in quotas if q["metric"] == metric)


def test_quota_usage_follows_create_stop_start_delete(sb):
    assert quota(sb, "NVIDIA_T4_GPUS")["usage"] == 0
    create_vm(sb, gpus=2)
    assert quota(sb, "NVIDIA_T4_GPUS")["usage"] == 2
    assert quota(sb, "CPUS")["usage"] == 4
    assert quota(sb, "SSD_TOTAL_GB")["usage"] == 100
    assert quota(sb, "GPUS_ALL_REGIONS", None)["usage"] == 2
    assert quota(sb, "CPUS_ALL_REGIONS", None)["usage"] == 4
    wait_op(sb, sb.api("POST", zpath("instances/vm1/stop")))
    assert quota(sb, "NVIDIA_T4_GPUS")["usage"] == 0
    assert quota(sb, "CPUS")["usage"] == 0
    assert quota(sb, "SSD_TOTAL_GB")["usage"] == 100        # disks always count
    assert quota(sb, "INSTANCES")["usage"] == 1
    wait_op(sb, sb.api("POST", zpath("instances/vm1/start")))
    assert quota(sb, "NVIDIA_T4_GPUS")["usage"] == 2
    wait_op(sb, sb.api("DELETE", zpath("instances/vm1")))
    assert quota(sb, "NVIDIA_T4_GPUS")["usage"] == 0
    assert quota(sb, "SSD_TOTAL_GB")["usage"] == 0
    assert quota(sb, "GPUS_ALL_REGIONS", None)["usage"] == 0


def test_quota_exceeded_names_metric_limit_and_region(sb):
    sb.set_quota("NVIDIA_T4_GPUS", 1, region="us-central1")
    op = wait_op(sb, sb.api("POST", zpath("instances"), vm_body(gpus=2)))
    assert op["httpErrorStatusCode"] == 403
    errors = op["error"]["errors"]
    assert errors[0]["code"] == "QUOTA_EXCEEDED"
    assert errors[0]["message"] == "Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 1.0 in region us-central1."
    assert sb.call("GET", zpath("instances/vm1"))[0] == 404
    # Spot VMs draw on the PREEMPTIBLE_ metric, not the on-demand one.
    create_vm(sb, gpus=2, scheduling={"provisioningModel": "SPOT", "instanceTerminationAction": "STOP"})
    assert quota(sb, "PREEMPTIBLE_NVIDIA_T4_GPUS")["usage"] == 2
    # Project-wide limit.
    sb.set_quota("GPUS_ALL_REGIONS", 0)
    op = wait_op(sb, sb.api("POST", zpath("instances"), vm_body(name="vm2", gpus=1)))
    messages = [e["message"] for e in op["error"]["errors"]]
    assert "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 globally." in messages


def test_start_of_stopped_vm_checks_quota(sb):
    create_vm(sb, gpus=4)
    wait_op(sb, sb.api("POST", zpath("instances/vm1/stop")))
    sb.set_quota("NVIDIA_T4_GPUS", 2, region="us-central1")
    op = wait_op(sb, sb.api("POST", zpath("instances/vm1/start")))
    assert op["error"]["errors"][0]["code"] == "QUOTA_EXCEEDED"
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "TERMINATED"


# ---- faults ----------------------------------------------------------------------------------

def test_zone_exhausted_with_details_carries_zones_available(sb):
    sb.add_fault("zone_exhausted", zone=ZONE, with_details=True, zones_available=["us-central1-b", "us-central1-c"],
                 count=1)
    op = sb.api("POST", zpath("instances"), vm_body())
    assert op["status"] in ("RUNNING", "PENDING")
    op = wait_op(sb, op)
    err = op["error"]["errors"][0]
    assert err["code"] == "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
    assert err["message"].startswith(f"The zone 'projects/{PROJECT}/zones/{ZONE}' does not have enough resources")
    info = next(d["errorInfo"] for d in err["errorDetails"] if "errorInfo" in d)
    assert info["reason"] == "resource_availability"
    assert info["metadatas"]["zonesAvailable"] == "us-central1-b,us-central1-c"
    assert info["metadatas"]["vmType"] == "n1-standard-4"
    # count=1: the retry succeeds.
    assert "error" not in create_vm(sb)
    assert sb.state()["faults"] == []


def test_zone_exhausted_plain_and_on_start(sb):
    create_vm(sb)
    wait_op(sb, sb.api("POST", zpath("instances/vm1/stop")))
    sb.add_fault("zone_exhausted", zone=ZONE)
    op = wait_op(sb, sb.api("POST", zpath("instances/vm1/start")))
    assert op["error"]["errors"][0]["code"] == "ZONE_RESOURCE_POOL_EXHAUSTED"
    sb.clear_faults()
    assert "error" not in wait_op(sb, sb.api("POST", zpath("instances/vm1/start")))


def test_http_error_burst_fires_count_times(sb):
    sb.add_fault("http_error", status=429, count=2, method="GET", path_regex="/instances")
    results = [sb.call("GET", zpath("instances"))[0] for _ in range(3)]
    assert results == [429, 429, 200]
    sb.add_fault("http_error", status=503, count=1)
    status, out = sb.call("GET", zpath("instances"))
    assert status == 503 and out["error"]["errors"][0]["reason"] == "backendError"


def test_slow_operations_delay_done(sb):
    sb.add_fault("slow_operations", seconds=1.5)
    op = sb.api("POST", zpath("instances"), vm_body())
    again = sb.api("GET", path_of(op["selfLink"]))
    assert again["status"] != "DONE"
    assert sb.api("GET", zpath("instances/vm1"))["status"] != "RUNNING"
    started = time.time()
    done = sb.api("POST", path_of(op["selfLink"]) + "/wait")   # blocks until DONE
    assert done["status"] == "DONE" and time.time() - started > 0.5
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "RUNNING"


def test_preempt_spot_vm(sb):
    create_vm(sb, scheduling={"provisioningModel": "SPOT", "instanceTerminationAction": "STOP"})
    sb.preempt(ZONE, "vm1")
    inst = sb.api("GET", zpath("instances/vm1"))
    assert inst["status"] == "TERMINATED"
    assert "natIP" not in inst["networkInterfaces"][0]["accessConfigs"][0]
    ops = sb.api("GET", zpath("operations"))["items"]
    assert any(o["operationType"] == "compute.instances.preempted" for o in ops)
    create_vm(sb, name="vm2")
    with pytest.raises(SandboxError) as exc:
        sb.preempt(ZONE, "vm2")
    assert exc.value.status == 400


# ---- links, listing, services ---------------------------------------------------------------

def test_links_are_canonical(sb):
    create_vm(sb)
    inst = sb.api("GET", zpath("instances/vm1"))
    links = [inst["selfLink"], inst["zone"], inst["machineType"], inst["disks"][0]["source"],
             inst["networkInterfaces"][0]["network"], inst["networkInterfaces"][0]["subnetwork"],
             inst["guestAccelerators"][0]["acceleratorType"]]
    assert all(link.startswith(BASE + f"projects/{PROJECT}/") for link in links), links
    assert isinstance(inst["id"], str) and inst["id"].isdigit()
    disk = sb.api("GET", zpath("disks/vm1"))
    assert disk["sourceImage"].startswith(BASE + "projects/deeplearning-platform-release/global/images/")


def test_aggregated_list_filters_and_pages(sb):
    create_vm(sb, name="a1", labels={"role": "jupyter"})
    create_vm(sb, name="a2", labels={"role": "other"}, zone="us-west1-b")
    create_vm(sb, name="a3", labels={"role": "jupyter"}, zone="europe-west4-a")
    wait_op(sb, sb.api("POST", zpath("instances/a3/stop", "europe-west4-a")))
    agg = f"/compute/v1/projects/{PROJECT}/aggregated/instances"

    def names(query):
        out = sb.api("GET", agg + query)
        return sorted(i["name"] for scope in out["items"].values() for i in scope.get("instances", []))

    assert names("") == ["a1", "a2", "a3"]
    assert names("?filter=labels.role%20%3D%20jupyter") == ["a1", "a3"]
    assert names("?filter=%28labels.role%20%3D%20jupyter%29%20%28status%20%3D%20RUNNING%29") == ["a1"]
    assert names("?filter=name%20!%3D%20a2") == ["a1", "a3"]
    seen, token = [], None
    while True:
        out = sb.api("GET", agg + "?maxResults=1" + (f"&pageToken={token}" if token else ""))
        seen += [i["name"] for scope in out["items"].values() for i in scope.get("instances", [])]
        token = out.get("nextPageToken")
        if not token:
            break
    assert sorted(seen) == ["a1", "a2", "a3"]


def test_service_disabled_until_enabled(sandbox_server):
    sb = sandbox_server
    sb.reset()
    status, out = sb.call("GET", zpath("instances"))
    assert status == 403
    err = out["error"]
    assert err["errors"][0]["reason"] == "accessNotConfigured"
    assert err["message"].startswith("Compute Engine API has not been used in project ")
    assert "compute.googleapis.com/overview?project=" in err["message"]
    assert err["details"][0]["reason"] == "SERVICE_DISABLED"
    svc = sb.api("GET", f"/serviceusage/v1/projects/{PROJECT}/services/compute.googleapis.com")
    assert svc["state"] == "DISABLED"
    op = sb.api("POST", f"/serviceusage/v1/projects/{PROJECT}/services/compute.googleapis.com:enable")
    assert op.get("done") is not True
    op = sb.api("GET", f"/serviceusage/v1/{op['name']}")
    assert op["done"] is True and op["response"]["service"]["state"] == "ENABLED"
    assert sb.call("GET", zpath("instances"))[0] == 200


def test_catalog_endpoints(sb):
    zones = sb.api("GET", f"/compute/v1/projects/{PROJECT}/zones")["items"]
    assert {"us-central1-a", "us-central1-f", "europe-west4-c", "asia-east1-c"} <= {z["name"] for z in zones}
    mt = sb.api("GET", zpath("machineTypes/g2-standard-8"))
    assert mt["guestCpus"] == 8 and mt["accelerators"] == [{"guestAcceleratorType": "nvidia-l4",
                                                             "guestAcceleratorCount": 1}]
    t4 = sb.api("GET", zpath("acceleratorTypes/nvidia-tesla-t4"))
    assert t4["maximumCardsPerInstance"] == 4
    assert sb.call("GET", zpath("machineTypes/a2-highgpu-1g", "us-east1-b"))[0] == 404
    net = sb.api("GET", f"/compute/v1/projects/{PROJECT}/global/networks/default")
    assert net["autoCreateSubnetworks"] is True
    fws = sb.api("GET", f"/compute/v1/projects/{PROJECT}/global/firewalls")["items"]
    assert "default-allow-ssh" in {f["name"] for f in fws}


def test_firewall_insert_patch_delete(sb):
    body = {"name": "allow-jupyter", "network": f"{BASE}projects/{PROJECT}/global/networks/default",
            "allowed": [{"IPProtocol": "tcp", "ports": ["8080"]}], "targetTags": ["jupyter"],
            "sourceRanges": ["203.0.113.0/24"]}
    wait_op(sb, sb.api("POST", f"/compute/v1/projects/{PROJECT}/global/firewalls", body))
    fw = sb.api("GET", f"/compute/v1/projects/{PROJECT}/global/firewalls/allow-jupyter")
    assert fw["priority"] == 1000 and fw["direction"] == "INGRESS"
    wait_op(sb, sb.api("PATCH", f"/compute/v1/projects/{PROJECT}/global/firewalls/allow-jupyter",
                       {"sourceRanges": ["198.51.100.0/24"]}))
    fw = sb.api("GET", f"/compute/v1/projects/{PROJECT}/global/firewalls/allow-jupyter")
    assert fw["sourceRanges"] == ["198.51.100.0/24"] and fw["targetTags"] == ["jupyter"]
    status, err = refused(sb, "POST", f"/compute/v1/projects/{PROJECT}/global/firewalls",
                          {"name": "bad", "allowed": [], "denied": []})
    assert status == 400
    wait_op(sb, sb.api("DELETE", f"/compute/v1/projects/{PROJECT}/global/firewalls/allow-jupyter"))
    assert sb.call("GET", f"/compute/v1/projects/{PROJECT}/global/firewalls/allow-jupyter")[0] == 404


def test_request_log_marks_mutating(sb):
    create_vm(sb)
    # An insert can answer DONE at once (then create_vm polls nothing): read the VM explicitly.
    sb.api("GET", zpath("instances/vm1"))
    entries = sb.requests()
    inserts = [e for e in entries if e["method"] == "POST" and e["path"].endswith("/instances")]
    assert inserts and inserts[0]["mutating"] is True and inserts[0]["body"]["name"] == "vm1"
    gets = [e for e in entries if e["method"] == "GET"]
    assert gets and not any(e["mutating"] for e in gets)
    assert all(not e["path"].startswith("/_sandbox") for e in entries)
    sb.clear_requests()
    assert sb.requests() == []


def test_fingerprint_accepts_url_safe_base64(sb):
    """gcloud (apitools) sends bytes fields URL-safe encoded; GCE compares the bytes."""
    create_vm(sb)
    # Find a fingerprint whose two encodings differ: about 3 in 10 do, so 200 draws always find
    # one. Running out must fail here: after the last draw's setLabels `fp` is stale (HTTP 412).
    for _ in range(200):
        fp = sb.api("GET", zpath("instances/vm1"))["labelFingerprint"]
        if "+" in fp or "/" in fp:
            break
        wait_op(sb, sb.api("POST", zpath("instances/vm1/setLabels"), {"labelFingerprint": fp, "labels": {}}))
    else:
        pytest.fail("no fingerprint with + or / in 200 draws")
    assert fp.replace("+", "-").replace("/", "_") != fp
    url_safe = fp.replace("+", "-").replace("/", "_")
    wait_op(sb, sb.api("POST", zpath("instances/vm1/setLabels"), {"labelFingerprint": url_safe,
                                                                  "labels": {"x": "y"}}))
    assert sb.api("GET", zpath("instances/vm1"))["labels"] == {"x": "y"}


# ---- partial failures ---------------------------------------------------------------------

def test_partial_insert_fails_after_the_vm_and_its_disk_exist(sb):
    sb.add_fault("partial_insert", zone=ZONE, count=1)
    op = wait_op(sb, sb.api("POST", zpath("instances"), vm_body()))
    assert [e["code"] for e in op["error"]["errors"]] == ["ZONE_RESOURCE_POOL_EXHAUSTED"]
    assert op["httpErrorStatusCode"] == 503
    # Left behind, as GCE leaves them: the VM (stopped) and its boot disk, attached.
    vm = sb.api("GET", zpath("instances/vm1"))
    assert vm["status"] == "TERMINATED"
    assert sb.api("GET", zpath("disks/vm1"))["users"] == [vm["selfLink"]]
    # The fault fired once: cleaning up and trying again works.
    wait_op(sb, sb.api("DELETE", zpath("instances/vm1")))
    assert sb.call("GET", zpath("disks/vm1"))[0] == 404
    assert "error" not in wait_op(sb, sb.api("POST", zpath("instances"), vm_body()))
    assert sb.api("GET", zpath("instances/vm1"))["status"] == "RUNNING"


def test_partial_insert_with_another_code(sb):
    sb.add_fault("partial_insert", zone=ZONE, code="RESOURCE_OPERATION_RATE_EXCEEDED", message="slow down", count=1)
    op = wait_op(sb, sb.api("POST", zpath("instances"), vm_body()))
    assert op["error"]["errors"] == [{"code": "RESOURCE_OPERATION_RATE_EXCEEDED", "message": "slow down"}]
