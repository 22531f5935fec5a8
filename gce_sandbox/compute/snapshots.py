"""Snapshots: disks.createSnapshot, snapshots insert/get/list/delete.

A snapshot is a global resource that outlives its source disk (deleting the disk, or the VM that
auto-deletes it, leaves the snapshot and its sourceDisk link as they were). It is CREATING until its
operation ends, then READY. storageBytes is what it bills: GCE stores the blocks the disk has
written, compressed; the sandbox knows no blocks, so it records the disk's full size, the most a
first snapshot of that disk can cost (the figure a cost estimate should not undercut).
"""

# ruff: noqa: N802 - handler names are Compute API method names (h_disks__createSnapshot)
from __future__ import annotations

import time

from .. import catalog
from ..errors import already_exists, invalid_field, not_found
from .common import check_labels, check_name, new_fingerprint, now_rfc3339, parse_ref, public
from .emulated import ANY, check_fields

SNAPSHOT = {"name": ANY, "description": ANY, "labels": ANY, "labelFingerprint": ANY, "sourceDisk": ANY,
            "storageLocations": ANY, "snapshotType": ANY}
GIB = 1024 ** 3


class SnapshotsMixin:
    def snapshots(self) -> dict:
        return self.state.setdefault("snapshots", {})

    def _snapshot_of(self, zone: str, disk: dict, body: dict) -> tuple[int, dict]:
        name = body.get("name")
        check_name(name)
        if name in self.snapshots():
            raise already_exists(self.res_path(f"global/snapshots/{name}"))
        check_labels(body.get("labels"), "resource.labels")
        if body.get("snapshotType") not in (None, "STANDARD"):
            raise invalid_field("resource.snapshotType", body["snapshotType"],
                                "The sandbox keeps STANDARD snapshots only.")
        size = int(disk["sizeGb"])
        region = catalog.region_of(zone)
        snap = {
            "kind": "compute#snapshot", "id": catalog.stable_id("snapshot", name, str(time.time_ns())),
            "creationTimestamp": now_rfc3339(), "name": name, "description": body.get("description", ""),
            "status": "CREATING", "sourceDisk": disk["selfLink"], "sourceDiskId": disk["id"],
            "diskSizeGb": str(size), "storageBytes": str(size * GIB), "storageBytesStatus": "UPDATING",
            # GCE's default: the multi-region of the disk's region.
            "storageLocations": body.get("storageLocations") or [region.split("-", 1)[0]],
            "snapshotType": "STANDARD", "architecture": disk.get("architecture", "X86_64"),
            "labels": dict(body.get("labels") or {}), "labelFingerprint": new_fingerprint(),
            "selfLink": self.link(f"global/snapshots/{name}"), "satisfiesPzi": False,
        }
        for key in ("licenses", "guestOsFeatures"):
            if disk.get(key):
                snap[key] = list(disk[key])
        if not snap["labels"]:
            del snap["labels"]
        self.snapshots()[name] = snap
        return snap

    def h_disks__createSnapshot(self, p, q, body):
        check_fields(body, SNAPSHOT, "resource", "compute.disks.createSnapshot")
        disk = self.get_disk(p["zone"], p["disk"])
        snap = self._snapshot_of(p["zone"], disk, body)
        # GCE answers with a zone operation on the disk.
        op = self.new_operation("createSnapshot", disk["selfLink"], disk["id"], zone=p["zone"],
                                on_done={"action": "snapshot_ready", "name": snap["name"]})
        return self.op_response(op)

    def h_snapshots__insert(self, p, q, body):
        check_fields(body, SNAPSHOT, "resource", "compute.snapshots.insert")
        source = body.get("sourceDisk")
        if not source:
            raise invalid_field("resource.sourceDisk", "", "A source disk must be specified.")
        _, rest = parse_ref(source)
        parts = rest.split("/")
        if len(parts) != 4 or parts[0] != "zones" or parts[2] != "disks":
            raise invalid_field("resource.sourceDisk", source, "The referenced disk resource cannot be found.")
        disk = self.get_disk(parts[1], parts[3])
        snap = self._snapshot_of(parts[1], disk, body)
        op = self.new_operation("insert", snap["selfLink"], snap["id"],
                                on_done={"action": "snapshot_ready", "name": snap["name"]})
        return self.op_response(op)

    def _snapshot_ready(self, name: str) -> None:
        snap = self.snapshots().get(name)
        if snap is not None:
            snap["status"] = "READY"
            snap["storageBytesStatus"] = "UP_TO_DATE"

    def h_snapshots__get(self, p, q, body):
        snap = self.snapshots().get(p["snapshot"])
        if snap is None:
            raise not_found(self.res_path(f"global/snapshots/{p['snapshot']}"))
        return 200, public(snap)

    def h_snapshots__list(self, p, q, body):
        items = [public(s) for s in self.snapshots().values()]
        return 200, self._list(items, q, "compute#snapshotList", self.link("global/snapshots"))

    def h_snapshots__delete(self, p, q, body):
        snap = self.snapshots().get(p["snapshot"])
        if snap is None:
            raise not_found(self.res_path(f"global/snapshots/{p['snapshot']}"))
        snap["status"] = "DELETING"
        op = self.new_operation("delete", snap["selfLink"], snap["id"],
                                on_done={"action": "delete_snapshot", "name": snap["name"]})
        return self.op_response(op)

    def h_instances__setDiskAutoDelete(self, p, q, body):
        """Whether deleting the VM deletes this attached disk (keep a disk before deleting its VM)."""
        inst = self.get_instance(p["zone"], p["instance"])
        value = str(q.get("autoDelete", "")).lower()
        if value not in ("true", "false"):
            raise invalid_field("autoDelete", q.get("autoDelete", ""), "Must be true or false.")
        for attached in inst.get("disks") or []:
            if attached.get("deviceName") == q.get("deviceName"):
                attached["autoDelete"] = value == "true"
                inst["fingerprint"] = new_fingerprint()
                op = self.new_operation("setDiskAutoDelete", inst["selfLink"], inst["id"], zone=p["zone"])
                return self.op_response(op)
        raise invalid_field("deviceName", q.get("deviceName", ""),
                            f"No disk with deviceName '{q.get('deviceName')}' is attached to the instance.")
