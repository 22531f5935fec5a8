"""Helpers shared by the gce_sandbox tests."""

from __future__ import annotations

import time

PROJECT = "gpu-jupyter-sandbox"
ZONE = "us-central1-a"
BASE = "https://www.googleapis.com/compute/v1/"
DLVM = "projects/deeplearning-platform-release/global/images/family/pytorch-2-9-cu129-ubuntu-2404-nvidia-580"


def path_of(link: str) -> str:
    """Canonical self link -> plain-HTTP path on the sandbox."""
    assert link.startswith(BASE), link
    return "/compute/v1/" + link[len(BASE):]


def zpath(rest: str, zone: str = ZONE) -> str:
    return f"/compute/v1/projects/{PROJECT}/zones/{zone}/{rest}"


def wait_op(sb, op: dict, timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while op["status"] != "DONE":
        assert time.time() < deadline, op
        op = sb.api("GET", path_of(op["selfLink"]))
    return op


def vm_body(name: str = "vm1", zone: str = ZONE, machine: str = "n1-standard-4", gpus: int = 1,
            gpu: str = "nvidia-tesla-t4", scheduling: dict | None = None, disk_size: int = 100,
            image: str = DLVM, **extra) -> dict:
    body = {
        "name": name,
        "machineType": f"zones/{zone}/machineTypes/{machine}",
        "disks": [{"boot": True, "autoDelete": True,
                   "initializeParams": {"sourceImage": image, "diskSizeGb": str(disk_size),
                                        "diskType": f"zones/{zone}/diskTypes/pd-balanced"}}],
        "networkInterfaces": [{"network": "global/networks/default",
                               "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]}],
        "scheduling": scheduling if scheduling is not None else {"onHostMaintenance": "TERMINATE",
                                                                 "automaticRestart": True},
    }
    if gpus:
        body["guestAccelerators"] = [{"acceleratorType": f"zones/{zone}/acceleratorTypes/{gpu}",
                                      "acceleratorCount": gpus}]
    body.update(extra)
    return body


def create_vm(sb, **kw) -> dict:
    zone = kw.get("zone", ZONE)
    op = sb.api("POST", zpath("instances", zone), vm_body(**kw))
    return wait_op(sb, op)
