"""Instances: the set* methods that change an existing VM."""

# ruff: noqa: N802 - handler names are Compute API method names (h_instances__setMachineType)
from __future__ import annotations

from .. import catalog
from ..errors import (
    ApiError,
    bad_request,
    fingerprint_mismatch,
    invalid_field,
)
from .common import NAME_RE, check_labels, new_fingerprint, public, same_fingerprint
from .emulated import ANY, GUEST_ACCELERATORS, LABELS, METADATA, SCHEDULING, check_fields


class InstanceUpdatesMixin:
    # ---- instances: updates -------------------------------------------------------------
    def _simple_op(self, inst: dict, op_type: str, zone: str) -> tuple[int, dict]:
        inst["fingerprint"] = new_fingerprint()
        return self.op_response(self.new_operation(op_type, inst["selfLink"], inst["id"], zone=zone))

    def h_instances__setMachineType(self, p, q, body):
        check_fields(body, {"machineType": ANY}, "", "compute.instances.setMachineType")
        inst = self.get_instance(p["zone"], p["instance"])
        if inst["status"] != "TERMINATED":
            # GCE: "Instance 'x' must be stopped before you can change its machine type." with
            # reason resourceNotReady? The documented rule: only on a TERMINATED instance (400).
            raise ApiError(400, f"Invalid resource usage: 'Instance '{inst['name']}' must be stopped before "
                                "its machine type can be changed.'.", "invalidResourceUsage")
        machine = self._resolve_machine_type(body.get("machineType"), p["zone"], "machineType")
        accels = self._resolve_accelerators(
            [] if catalog.MACHINE_TYPES[machine].get("gpu") else
            [{"acceleratorType": a["acceleratorType"], "acceleratorCount": a["acceleratorCount"]}
             for a in inst.get("guestAccelerators") or []
             if not catalog.MACHINE_TYPES[inst["machineType"].rsplit("/", 1)[-1]].get("gpu")],
            p["zone"], machine, "guestAccelerators")
        if accels and inst["scheduling"].get("onHostMaintenance") != "TERMINATE":
            raise bad_request("Instances with guest accelerators do not support live migration.")
        inst["machineType"] = self.link(f"zones/{p['zone']}/machineTypes/{machine}")
        if accels:
            inst["guestAccelerators"] = accels
        else:
            inst.pop("guestAccelerators", None)
        return self._simple_op(inst, "setMachineType", p["zone"])

    def h_instances__setMachineResources(self, p, q, body):
        check_fields(body, {"guestAccelerators": GUEST_ACCELERATORS}, "", "compute.instances.setMachineResources")
        inst = self.get_instance(p["zone"], p["instance"])
        if inst["status"] != "TERMINATED":
            raise ApiError(400, f"Invalid resource usage: 'Instance '{inst['name']}' must be stopped before "
                                "its accelerators can be changed.'.", "invalidResourceUsage")
        machine = inst["machineType"].rsplit("/", 1)[-1]
        accels = self._resolve_accelerators(body.get("guestAccelerators") or [], p["zone"], machine,
                                            "guestAccelerators")
        if accels and inst["scheduling"].get("onHostMaintenance") != "TERMINATE":
            raise bad_request("Instances with guest accelerators do not support live migration.")
        if accels:
            inst["guestAccelerators"] = accels
        else:
            inst.pop("guestAccelerators", None)
        return self._simple_op(inst, "setMachineResources", p["zone"])

    def h_instances__setScheduling(self, p, q, body):
        check_fields(body, SCHEDULING, "", "compute.instances.setScheduling")
        inst = self.get_instance(p["zone"], p["instance"])
        merged = {k: v for k, v in inst["scheduling"].items()}
        merged.update(body)
        for k in list(merged):
            if k not in body and k in ("automaticRestart", "onHostMaintenance", "instanceTerminationAction"):
                if k == "instanceTerminationAction" and merged.get("provisioningModel") != "SPOT" \
                        and not (merged.get("maxRunDuration") or merged.get("terminationTime")):
                    merged.pop(k)
        sched = self._scheduling(merged, bool(inst.get("guestAccelerators")))
        if sched.get("provisioningModel") != inst["scheduling"].get("provisioningModel") \
                and inst["status"] != "TERMINATED":
            raise ApiError(400, "Invalid resource usage: 'Provisioning model can only be changed on a stopped "
                                "instance.'.", "invalidResourceUsage")
        inst["scheduling"] = sched
        return self._simple_op(inst, "setScheduling", p["zone"])

    def h_instances__setMetadata(self, p, q, body):
        check_fields(body, METADATA, "", "compute.instances.setMetadata")
        inst = self.get_instance(p["zone"], p["instance"])
        if not same_fingerprint(body.get("fingerprint"), inst["metadata"]["fingerprint"]):
            raise fingerprint_mismatch("metadata")
        keys = [i.get("key") for i in body.get("items") or []]
        if len(keys) != len(set(keys)):
            raise invalid_field("metadata.items", "", "Duplicate metadata key.")
        inst["metadata"] = {"kind": "compute#metadata", "fingerprint": new_fingerprint()}
        if body.get("items"):
            inst["metadata"]["items"] = body["items"]
        self._metadata_changed(inst)
        return self._simple_op(inst, "setMetadata", p["zone"])

    def _metadata_changed(self, inst: dict) -> None:
        """The guest agent reacts to metadata (ssh-keys): so does a backend that has a guest."""
        hook = getattr(self.backend, "on_metadata", None)
        if hook:
            hook(public(inst))

    def h_instances__setLabels(self, p, q, body):
        check_fields(body, LABELS, "", "compute.instances.setLabels")
        inst = self.get_instance(p["zone"], p["instance"])
        if not same_fingerprint(body.get("labelFingerprint"), inst["labelFingerprint"]):
            # GCE answers 412 conditionNotMet with "Labels fingerprint either invalid or resource labels have changed"
            raise ApiError(412, "Labels fingerprint either invalid or resource labels have changed",
                           "conditionNotMet")
        check_labels(body.get("labels"), "labels")
        if body.get("labels"):
            inst["labels"] = dict(body["labels"])
        else:
            inst.pop("labels", None)
        inst["labelFingerprint"] = new_fingerprint()
        return self._simple_op(inst, "setLabels", p["zone"])

    def h_instances__setTags(self, p, q, body):
        check_fields(body, {"items": ANY, "fingerprint": ANY}, "", "compute.instances.setTags")
        inst = self.get_instance(p["zone"], p["instance"])
        if not same_fingerprint(body.get("fingerprint"), inst["tags"]["fingerprint"]):
            raise fingerprint_mismatch("tags")
        for i, tag in enumerate(body.get("items") or []):
            if not NAME_RE.match(tag):
                raise invalid_field(f"tags.items[{i}]", tag, "Must be a match of regex '[a-z]([-a-z0-9]*[a-z0-9])?'")
        inst["tags"] = {"fingerprint": new_fingerprint()}
        if body.get("items"):
            inst["tags"]["items"] = list(body["items"])
        return self._simple_op(inst, "setTags", p["zone"])

    def h_instances__setServiceAccount(self, p, q, body):
        check_fields(body, {"email": ANY, "scopes": ANY}, "", "compute.instances.setServiceAccount")
        inst = self.get_instance(p["zone"], p["instance"])
        if inst["status"] != "TERMINATED":
            raise ApiError(400, "Invalid resource usage: 'The instance must be stopped before its service account "
                                "can be changed.'.", "invalidResourceUsage")
        email = body.get("email", "default")
        if email == "default":
            email = f"{self.number}-compute@developer.gserviceaccount.com"
        elif not self.service_account_exists(email):
            raise ApiError(400, f"The resource 'One of [{email}]' of type 'serviceAccount' was not found.", "invalid")
        inst["serviceAccounts"] = [{"email": email, "scopes": list(body.get("scopes") or [])}]
        return self._simple_op(inst, "setServiceAccount", p["zone"])

    def h_instances__setDeletionProtection(self, p, q, body):
        inst = self.get_instance(p["zone"], p["resource"])
        # A boolean query parameter is true or false, nothing else: google.cloud's update path sends
        # deletionProtection=None, which must not turn protection on. (GCE's wording for a bad bool
        # parameter is not public; this follows its "Invalid value" pattern.)
        value = str(q.get("deletionProtection", "true")).lower()
        if value not in ("true", "false"):
            raise bad_request(f"Invalid value '{q.get('deletionProtection')}' for query parameter "
                              "'deletionProtection': must be true or false.", "invalid")
        inst["deletionProtection"] = value == "true"
        return self._simple_op(inst, "setDeletionProtection", p["zone"])
