"""Snapshots in the sandbox: created from a disk, READY after their operation, billed by
storageBytes, and outliving the disk they were taken from; setDiskAutoDelete keeps a disk."""

from __future__ import annotations

import pytest

from gce_sandbox.testing import SandboxError

from .helpers import BASE, PROJECT, create_vm, path_of, wait_op, zpath

SNAPS = f"/compute/v1/projects/{PROJECT}/global/snapshots"


def test_a_snapshot_of_a_boot_disk_survives_the_vm_and_its_disk(sb):
    create_vm(sb, disk_size=120)
    op = sb.api("POST", zpath("disks/vm1/createSnapshot"), {"name": "vm1-keep", "labels": {"kept-from": "vm1"}})
    assert op["operationType"] == "createSnapshot" and op["targetLink"].endswith("/disks/vm1")
    wait_op(sb, op)
    snap = sb.api("GET", f"{SNAPS}/vm1-keep")
    assert snap["status"] == "READY" and snap["storageBytesStatus"] == "UP_TO_DATE"
    assert snap["sourceDisk"] == f"{BASE}projects/{PROJECT}/zones/us-central1-a/disks/vm1"
    assert snap["diskSizeGb"] == "120" and int(snap["storageBytes"]) == 120 * 1024 ** 3
    assert snap["storageLocations"] == ["us"] and snap["labels"] == {"kept-from": "vm1"}
    wait_op(sb, sb.api("DELETE", zpath("instances/vm1")))          # the boot disk goes with it
    with pytest.raises(SandboxError):
        sb.api("GET", zpath("disks/vm1"))
    assert [s["name"] for s in sb.api("GET", SNAPS)["items"]] == ["vm1-keep"]
    with pytest.raises(SandboxError) as dup:
        sb.api("POST", SNAPS, {"name": "vm1-keep", "sourceDisk": "zones/us-central1-a/disks/vm1"})
    assert dup.value.status in (404, 409)
    wait_op(sb, sb.api("DELETE", f"{SNAPS}/vm1-keep"))
    assert sb.api("GET", SNAPS).get("items", []) == []


def test_snapshots_insert_and_set_disk_auto_delete(sb):
    create_vm(sb)
    inst = sb.api("GET", zpath("instances/vm1"))
    device = inst["disks"][0]["deviceName"]
    op = sb.api("POST", SNAPS, {"name": "s1", "sourceDisk": inst["disks"][0]["source"]})
    assert wait_op(sb, op)["targetLink"].endswith("/global/snapshots/s1")
    assert sb.api("GET", f"{SNAPS}/s1")["status"] == "READY"
    wait_op(sb, sb.api("POST", zpath(f"instances/vm1/setDiskAutoDelete?autoDelete=false&deviceName={device}")))
    assert sb.api("GET", zpath("instances/vm1"))["disks"][0]["autoDelete"] is False
    wait_op(sb, sb.api("DELETE", zpath("instances/vm1")))
    disk = sb.api("GET", zpath("disks/vm1"))
    assert "users" not in disk and disk["lastDetachTimestamp"]
    with pytest.raises(SandboxError):
        sb.api("POST", zpath("disks/nope/createSnapshot"), {"name": "s2"})
    assert path_of(disk["selfLink"]).endswith("/disks/vm1")
