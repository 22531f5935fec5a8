"""Instances: create, read, delete, start, stop, preempt."""

# ruff: noqa: N802 - handler names are Compute API method names (h_instances__setMachineType)
from __future__ import annotations

import re
import time
from typing import Any

from .. import catalog
from ..errors import (
    ApiError,
    already_exists,
    bad_request,
    invalid_field,
    not_found,
    operation_error,
)
from .common import NAME_RE, check_labels, check_name, metadata_value, new_fingerprint, now_rfc3339, parse_ref, public
from .scheduling import check_flex_start, check_run_limit
from .emulated import CATALOG_SERIES, INSTANCE, UNEMULATED_ACCELERATORS, check_fields, check_query, not_emulated


class InstancesMixin:
    # ---- instances: create ------------------------------------------------------------
    def _resolve_machine_type(self, ref: Any, zone: str, field: str = "resource.machineType") -> str:
        if not isinstance(ref, str) or not ref:
            raise invalid_field(field, ref or "", "Machine type must be specified.")
        project, rest = parse_ref(ref)
        m = re.match(r"^(?:zones/([^/]+)/machineTypes/)?([^/]+)$", rest)
        if not m:
            raise invalid_field(field, ref, "Invalid machine type URL.")
        mzone, name = m.group(1) or zone, m.group(2)
        if mzone != zone:
            raise invalid_field(field, ref, f"Machine type must be in zone '{zone}'.")
        if name not in catalog.MACHINE_TYPES and "-" in name and name.rsplit("-", 1)[0] not in CATALOG_SERIES:
            # A real GCE type (n2-standard-8, a3-highgpu-8g, custom-4-16384, ...) the catalog lacks: GCE
            # would create it, so its "does not exist" would mislead.
            raise not_emulated(f"Machine type '{name}' ({field})", "compute.instances")
        if name not in catalog.machine_types_in(zone):
            # GCE wording: "Machine type with name 'x' does not exist in zone 'z'."
            raise invalid_field(field, ref, f"Machine type with name '{name}' does not exist in zone '{zone}'.")
        return name

    def _resolve_accelerators(self, accels: list, zone: str, machine: str, field: str) -> list[dict]:
        mt = catalog.MACHINE_TYPES[machine]
        out = []
        family = mt["family"]
        if accels and family != "n1":
            # Only N1 takes attached GPUs (A2/G2 have them built in, E2 has none). GCE's 400, as users
            # quote it: "[e2-standard-2, nvidia-tesla-t4] features are not compatible for creating
            # instance." (GPU machine types page: "you can attach GPUs only to N1 machine types").
            names = ", ".join(parse_ref(a.get("acceleratorType", ""))[1].rsplit("/", 1)[-1] for a in accels)
            raise bad_request(f"[{machine}, {names}] features are not compatible for creating instance.", "invalid")
        for i, acc in enumerate(accels):
            ref = acc.get("acceleratorType", "")
            project, rest = parse_ref(ref)
            m = re.match(r"^(?:zones/([^/]+)/acceleratorTypes/)?([^/]+)$", rest)
            if not m:
                raise invalid_field(f"{field}[{i}].acceleratorType", ref, "Invalid accelerator type URL.")
            azone, name = m.group(1) or zone, m.group(2)
            if name in UNEMULATED_ACCELERATORS:
                raise not_emulated(f"Accelerator type '{name}' ({field}[{i}].acceleratorType)", "compute.instances")
            if azone != zone or name not in catalog.ZONES.get(zone, []):
                # GCE resolves the reference and answers as for any missing resource; users quote it for
                # a GPU the zone does not offer: "The resource 'projects/P/zones/Z/acceleratorTypes/T'
                # was not found" (GPU regions and zones page lists what each zone offers).
                raise not_found(self.res_path(f"zones/{azone}/acceleratorTypes/{name}"))
            info = catalog.ACCELERATORS[name]
            count = int(acc.get("acceleratorCount", 0))
            if not info["counts"]:
                raise invalid_field(f"{field}[{i}].acceleratorType", ref,
                                    f"Accelerator type '{name}' is only available built into its accelerator-"
                                    f"optimized machine types (A2/G2) and cannot be attached.")
            if count not in info["counts"] or count > info["max"]:
                raise invalid_field(f"{field}[{i}].acceleratorCount", count,
                                    f"Accelerator count {count} is not valid for accelerator type '{name}'. "
                                    f"Valid values: {info['counts']}.")
            limit = catalog.N1_MAX_VCPUS.get(name, {}).get(count)
            if limit is not None and mt["cpus"] > limit:
                # GCE's wording (public issue threads quote it verbatim).
                raise bad_request(f"At most {limit} vCPUs can be used along with {count} accelerator cards in an "
                                  "instance.", "invalid")
            out.append({"acceleratorType": self.link(f"zones/{zone}/acceleratorTypes/{name}"),
                        "acceleratorCount": count})
        if mt.get("gpu"):
            out = [{"acceleratorType": self.link(f"zones/{zone}/acceleratorTypes/{mt['gpu'][0]}"),
                    "acceleratorCount": mt["gpu"][1]}]
        return out

    def _scheduling(self, sched: dict, has_gpu: bool) -> dict:
        out = dict(sched)
        check_run_limit(out)
        limited = bool(out.get("maxRunDuration") or out.get("terminationTime"))
        spot = out.get("provisioningModel") in ("SPOT", "FLEX_START")
        preemptible = bool(out.get("preemptible")) or spot
        out.setdefault("provisioningModel", "STANDARD")
        out.setdefault("preemptible", False)
        if limited:
            out.setdefault("instanceTerminationAction", "STOP")
        if preemptible:
            if out.get("automaticRestart") is True:
                # GCE: "Invalid value for field 'resource.scheduling.automaticRestart': 'true'.
                # Preemptible instances cannot be automatically restarted."
                raise invalid_field("resource.scheduling.automaticRestart", True,
                                    "Preemptible instances cannot be automatically restarted.")
            if out.get("onHostMaintenance") == "MIGRATE":
                raise invalid_field("resource.scheduling.onHostMaintenance", "MIGRATE",
                                    "Scheduling must have preemptible be false when OnHostMaintenance isn't TERMINATE.")
            out.setdefault("automaticRestart", False)
            out.setdefault("onHostMaintenance", "TERMINATE")
            if spot:
                out.setdefault("instanceTerminationAction", "STOP")
        else:
            if out.get("instanceTerminationAction") and not limited:
                raise invalid_field("resource.scheduling.instanceTerminationAction",
                                    out["instanceTerminationAction"],
                                    "instanceTerminationAction is only supported for SPOT VMs "
                                    "(or VMs with maxRunDuration/terminationTime).")
            out.setdefault("automaticRestart", True)
            out.setdefault("onHostMaintenance", "MIGRATE")
        if has_gpu and out["onHostMaintenance"] != "TERMINATE":
            # GCE (400): "Instances with guest accelerators do not support live migration."
            raise bad_request("Instances with guest accelerators do not support live migration.")
        return out

    def h_instances__insert(self, p, q, body):
        check_fields(body, INSTANCE, "resource", "compute.instances.insert")
        check_query(q, ("sourceInstanceTemplate", "sourceMachineImage"), "compute.instances.insert")
        zone = p["zone"]
        self.check_project(p["project"])
        self.check_zone(zone, resource=True)
        name = body.get("name")
        check_name(name)
        if name in self.instances(zone):
            raise already_exists(self.res_path(f"zones/{zone}/instances/{name}"))
        machine = self._resolve_machine_type(body.get("machineType"), zone)
        check_labels(body.get("labels"), "resource.labels")
        for i, tag in enumerate((body.get("tags") or {}).get("items") or []):
            if not NAME_RE.match(tag):
                raise invalid_field(f"resource.tags.items[{i}]", tag,
                                    "Must be a match of regex '[a-z]([-a-z0-9]*[a-z0-9])?'")
        accels = self._resolve_accelerators(body.get("guestAccelerators") or [], zone, machine,
                                            "resource.guestAccelerators")
        scheduling = self._scheduling(body.get("scheduling") or {}, bool(accels))
        check_flex_start(scheduling, body, machine)
        policies = self.resolve_resource_policies(body.get("resourcePolicies") or [], zone, machine)
        new_disks, attached = self._insert_disks(body, zone, name)
        nics = self._insert_nics(body.get("networkInterfaces") or [], zone)
        inst = self._instance_record(body, zone, name, machine, accels, scheduling, nics, attached)
        if policies:
            inst["resourcePolicies"] = policies

        if scheduling["provisioningModel"] == "FLEX_START":
            # Waits for capacity (PENDING) instead of failing on a stockout: compute/scheduling.py.
            return self._insert_flex_start(zone, inst, new_disks)
        # Capacity and quota: refused as errors of the insert operation, like GCE.
        errors = self._insert_errors(zone, inst, new_disks)
        if errors:
            http = (403, "FORBIDDEN") if errors[0]["code"] == "QUOTA_EXCEEDED" else (503, "SERVICE UNAVAILABLE")
            op = self.new_operation("insert", inst["selfLink"], inst["id"], zone=zone, error=errors, http_error=http)
            return self.op_response(op)
        self._materialise(zone, inst, new_disks)
        partial = self.faults.take("partial_insert", zone=zone)
        if partial:
            # The VM and its disks exist and stay (TERMINATED) though the insert fails: GCE's partial
            # failure, which leaves the cleanup to the client.
            op = self.new_operation("insert", inst["selfLink"], inst["id"], zone=zone,
                                    error=self._partial_insert_errors(zone, inst, partial),
                                    http_error=(503, "SERVICE UNAVAILABLE"),
                                    on_error={"action": "instance_status", "zone": zone, "name": name,
                                              "status": "TERMINATED"})
            inst["status"] = "STAGING" if op["status"] != "DONE" else inst["status"]
            return self.op_response(op)
        op = self.new_operation("insert", inst["selfLink"], inst["id"], zone=zone,
                                on_done={"action": "instance_status", "zone": zone, "name": name,
                                         "status": "RUNNING"})
        inst["status"] = "STAGING" if op["status"] != "DONE" else inst["status"]
        return self.op_response(op)

    def _partial_insert_errors(self, zone: str, inst: dict, fault: dict) -> list[dict]:
        code = fault.get("code") or "ZONE_RESOURCE_POOL_EXHAUSTED"
        if code.startswith("ZONE_RESOURCE_POOL_EXHAUSTED"):
            return self.zone_exhausted_errors(zone, inst, dict(fault, with_details=code.endswith("_WITH_DETAILS")
                                                                or fault.get("with_details")))
        return [operation_error(code, fault.get("message") or f"The instance '{inst['name']}' could not be "
                                "started after it was created.")]

    def _insert_disks(self, body: dict, zone: str, name: str) -> tuple[list[dict], list[dict]]:
        """The disks an insert creates (from initializeParams) and every disk it attaches."""
        disks_in = body.get("disks") or []
        if not disks_in or not any(d.get("boot") for d in disks_in):
            if disks_in and len(disks_in) >= 1 and not any(d.get("boot") for d in disks_in):
                disks_in = [dict(disks_in[0], boot=True)] + disks_in[1:]
            else:
                raise invalid_field("resource.disks", "", "At least one boot disk must be specified.")
        new_disks: list[dict] = []
        attached: list[dict] = []
        for i, d in enumerate(disks_in):
            field = f"resource.disks[{i}]"
            boot = bool(d.get("boot"))
            if d.get("source"):
                disk = self._existing_disk_for_insert(d, zone, field)
                new = False
            elif d.get("initializeParams") is not None:
                disk = self._new_disk_for_insert(d["initializeParams"], zone, name, i, boot, field, new_disks)
                new_disks.append(disk)
                new = True
            else:
                raise invalid_field(field, "", "Either source or initializeParams must be specified.")
            attached.append({
                "kind": "compute#attachedDisk", "type": d.get("type", "PERSISTENT"),
                "mode": d.get("mode", "READ_WRITE"), "source": disk["selfLink"],
                "deviceName": d.get("deviceName") or (f"persistent-disk-{i}" if new else disk["name"]),
                "index": i, "boot": boot,
                "autoDelete": bool(d.get("autoDelete", new)) if "autoDelete" in d else new,
                "interface": d.get("interface", "SCSI"), "diskSizeGb": disk["sizeGb"],
                "architecture": "X86_64",
                **({"licenses": disk["licenses"]} if disk.get("licenses") else {}),
                **({"guestOsFeatures": disk["guestOsFeatures"]} if disk.get("guestOsFeatures") else {}),
            })
        return new_disks, attached

    def _existing_disk_for_insert(self, d: dict, zone: str, field: str) -> dict:
        sproject, rest = parse_ref(d["source"])
        m = re.match(r"^zones/([^/]+)/disks/([^/]+)$", rest)
        if not m or m.group(1) != zone:
            raise invalid_field(f"{field}.source", d["source"], "The referenced disk resource cannot be found.")
        disk = self.disks(zone).get(m.group(2))
        if disk is None:
            raise not_found(self.res_path(f"zones/{zone}/disks/{m.group(2)}"))
        if disk.get("users") and d.get("mode", "READ_WRITE") == "READ_WRITE":
            res = self.res_path(f"zones/{zone}/disks/{m.group(2)}")
            user = self.res_path(parse_ref(disk["users"][0])[1])
            raise ApiError(400, f"The disk resource '{res}' is already being used by '{user}'",
                           "resourceInUseByAnotherResource")
        return disk

    def _new_disk_for_insert(self, ip: dict, zone: str, name: str, i: int, boot: bool, field: str,
                             new_disks: list[dict]) -> dict:
        dname = ip.get("diskName") or (name if boot else f"{name}-{i}")
        check_name(dname, f"{field}.initializeParams.diskName")
        if dname in self.disks(zone) or any(nd["name"] == dname for nd in new_disks):
            raise already_exists(self.res_path(f"zones/{zone}/disks/{dname}"))
        image = None
        if ip.get("sourceImage"):
            image = self.resolve_image(ip["sourceImage"], f"{field}.initializeParams.sourceImage")
        elif boot:
            raise invalid_field(f"{field}.initializeParams.sourceImage", "",
                                "Boot disk must be created from an image or snapshot.")
        dtype = self._resolve_disk_type(ip.get("diskType"), zone, f"{field}.initializeParams.diskType")
        size = int(ip.get("diskSizeGb") or (image["diskSizeGb"] if image else 10))
        if image and size < int(image["diskSizeGb"]):
            # SkyPilot matches GCE's text "Requested disk size cannot be smaller than the image size".
            raise invalid_field(f"{field}.initializeParams.diskSizeGb", size,
                                f"Requested disk size cannot be smaller than the image size "
                                f"({image['diskSizeGb']} GB)")
        if size < catalog.DISK_TYPES[dtype]["min"] or size > 65536:
            raise invalid_field(f"{field}.initializeParams.diskSizeGb", size,
                                "Disk size must be between 10 GB and 65536 GB.")
        check_labels(ip.get("labels"), f"{field}.initializeParams.labels")
        return self._disk_record(zone, dname, size, dtype, image, ip.get("labels") or {})

    def _insert_nics(self, nics_in: list, zone: str) -> list[dict]:
        if not nics_in:
            raise invalid_field("resource.networkInterfaces", "", "At least one network interface is required.")
        nics = []
        region = catalog.region_of(zone)
        for i, nic in enumerate(nics_in):
            field = f"resource.networkInterfaces[{i}]"
            if nic.get("subnetwork") and not nic.get("network"):
                network = self.link("global/networks/default")
            else:
                network = self.resolve_network(nic.get("network") or "global/networks/default", f"{field}.network")
            subnet = self.link(f"regions/{region}/subnetworks/default")
            if nic.get("subnetwork"):
                sp, srest = parse_ref(nic["subnetwork"])
                if not re.match(rf"^(regions/{region}/subnetworks/)?default$", srest):
                    raise invalid_field(f"{field}.subnetwork", nic["subnetwork"],
                                        "The referenced subnetwork resource cannot be found.")
            acs = []
            for j, ac in enumerate(nic.get("accessConfigs") or []):
                if ac.get("type", "ONE_TO_ONE_NAT") != "ONE_TO_ONE_NAT":
                    raise invalid_field(f"{field}.accessConfigs[{j}].type", ac["type"],
                                        "Unsupported access config type.")
                acs.append({"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT",
                            "name": ac.get("name", "External NAT"),
                            "networkTier": ac.get("networkTier", "PREMIUM"), "_wants_ip": True,
                            **({"natIP": ac["natIP"], "_static": True} if ac.get("natIP") else {})})
            nics.append({"kind": "compute#networkInterface", "network": network, "subnetwork": subnet,
                         "name": f"nic{i}", "fingerprint": new_fingerprint(), "stackType": "IPV4_ONLY",
                         "accessConfigs": acs, **({"nicType": nic["nicType"]} if nic.get("nicType") else {}),
                         **({"_networkIP": nic["networkIP"]} if nic.get("networkIP") else {})})
        return nics

    def _instance_record(self, body: dict, zone: str, name: str, machine: str, accels: list[dict],
                         scheduling: dict, nics: list[dict], attached: list[dict]) -> dict:
        sas = []
        for sa in body.get("serviceAccounts") or []:
            email = sa.get("email", "default")
            if email == "default":
                email = f"{self.number}-compute@developer.gserviceaccount.com"
            elif not self.service_account_exists(email):
                # GCE refuses a VM whose account is not there (yet: IAM is eventually consistent),
                # in the words quoted by terraform-google-managed-instance-group #40.
                raise ApiError(400, f"The resource 'One of [{email}]' of type 'serviceAccount' was not found.",
                               "invalid")
            sas.append({"email": email, "scopes": list(sa.get("scopes") or [])})
        metadata = body.get("metadata") or {}
        now = now_rfc3339()
        inst: dict[str, Any] = {
            "kind": "compute#instance", "id": catalog.stable_id("instance", zone, name, str(time.time_ns())),
            "creationTimestamp": now, "name": name, "description": body.get("description", ""),
            "tags": {"items": list((body.get("tags") or {}).get("items") or []), "fingerprint": new_fingerprint()},
            "machineType": self.link(f"zones/{zone}/machineTypes/{machine}"),
            "status": "PROVISIONING", "zone": self.link(f"zones/{zone}"),
            "canIpForward": bool(body.get("canIpForward", False)),
            "networkInterfaces": nics, "disks": attached,
            "metadata": {"kind": "compute#metadata", "fingerprint": new_fingerprint(),
                         "items": list(metadata.get("items") or [])},
            "serviceAccounts": sas,
            "selfLink": self.link(f"zones/{zone}/instances/{name}"), "scheduling": scheduling,
            "cpuPlatform": "Unknown CPU Platform",
            "labels": dict(body.get("labels") or {}), "labelFingerprint": new_fingerprint(),
            "startRestricted": False, "deletionProtection": bool(body.get("deletionProtection", False)),
            "shieldedInstanceConfig": body.get("shieldedInstanceConfig") or {
                "enableSecureBoot": False, "enableVtpm": True, "enableIntegrityMonitoring": True},
            "shieldedInstanceIntegrityPolicy": {"updateAutoLearnPolicy": True},
            "fingerprint": new_fingerprint(), "lastStartTimestamp": now,
            "satisfiesPzi": True,
        }
        if accels:
            inst["guestAccelerators"] = accels
        if not inst["tags"]["items"]:
            del inst["tags"]["items"]
        if not inst["metadata"]["items"]:
            del inst["metadata"]["items"]
        if not inst["labels"]:
            del inst["labels"]
        for key in ("hostname", "minCpuPlatform", "confidentialInstanceConfig", "advancedMachineFeatures",
                    "reservationAffinity", "displayDevice", "params"):
            if body.get(key) is not None:
                inst[key] = body[key]
        return inst

    def _insert_errors(self, zone: str, inst: dict, new_disks: list[dict]) -> list[dict]:
        errors = self.capacity_errors(zone, inst)
        if not errors:
            need = self.instance_needs(inst, include_static=True)
            for disk in new_disks:
                metric = "SSD_TOTAL_GB" if catalog.DISK_TYPES[disk["type"].rsplit("/", 1)[-1]]["ssd"] \
                    else "DISKS_TOTAL_GB"
                need[metric] = need.get(metric, 0) + int(disk["sizeGb"])
            errors = self.quota_errors(catalog.region_of(zone), need)
        return errors

    def _materialise(self, zone: str, inst: dict, new_disks: list[dict]) -> None:
        """The instance and its new disks exist from here on: addresses, disk users, the table."""
        nics = inst["networkInterfaces"]
        addrs = self.backend.on_create(public(inst), external=any(n["accessConfigs"] for n in nics))
        for i, nic in enumerate(nics):
            nic["networkIP"] = nic.pop("_networkIP", None) or (addrs.internal_ip if i == 0 else addrs.internal_ip)
            for ac in nic["accessConfigs"]:
                if not ac.get("natIP") and i == 0 and addrs.external_ip:
                    ac["natIP"] = addrs.external_ip
        inst_link = inst["selfLink"]
        for disk in new_disks:
            disk["users"] = [inst_link]
            disk["lastAttachTimestamp"] = inst["creationTimestamp"]
            self.disks(zone)[disk["name"]] = disk
        for a in inst["disks"]:
            dname = a["source"].rsplit("/", 1)[-1]
            disk = self.disks(zone)[dname]
            if inst_link not in disk.setdefault("users", []):
                disk["users"].append(inst_link)
        self.instances(zone)[inst["name"]] = inst

    # ---- instances: read ---------------------------------------------------------------
    def h_instances__get(self, p, q, body):
        return 200, public(self.get_instance(p["zone"], p["instance"]))

    def h_instances__list(self, p, q, body):
        self.check_zone(p["zone"], resource=True)
        items = [public(i) for i in self.instances(p["zone"]).values()]
        return 200, self._list(items, q, "compute#instanceList", self.link(f"zones/{p['zone']}/instances"))

    def h_instances__aggregatedList(self, p, q, body):
        scoped = {f"zones/{z}": [public(i) for i in self.instances(z).values()] for z in catalog.ZONES}
        return 200, self._aggregated(scoped, q, "compute#instanceAggregatedList", "instances",
                                     self.link("aggregated/instances"))

    def h_instances__getSerialPortOutput(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        console = getattr(self.backend, "console", None)
        contents = console(public(inst)) if console else f"{inst['name']} (sandbox): no console\n"
        # `start` is a byte offset into the port's buffer; GCE keeps the last 1 MB.
        data = contents.encode()
        start = max(0, min(int(q.get("start") or 0), len(data)))
        if len(data) - start > 1024 * 1024:
            start = len(data) - 1024 * 1024
        return 200, {"kind": "compute#serialPortOutput", "contents": data[start:].decode(errors="replace"),
                     "start": str(start), "next": str(len(data)), "selfLink": inst["selfLink"] + "/serialPort"}

    def h_instances__getGuestAttributes(self, p, q, body):
        """Only the `hostkeys/` namespace, which the guest agent fills with the SSH host keys when
        the instance's metadata has enable-guest-attributes=TRUE (gcloud reads it to pin them)."""
        inst = self.get_instance(p["zone"], p["instance"])
        query = q.get("queryPath") or ""
        items = metadata_value(inst, "enable-guest-attributes").upper() == "TRUE" and \
            inst["status"] == "RUNNING" and getattr(self.backend, "host_keys", None)
        items = [i for i in (items(public(inst)) if items else []) if f"{i['namespace']}/".startswith(query)
                 or f"{i['namespace']}/{i['key']}" == query]
        if not items:
            # GCE answers an empty or disabled namespace with 404.
            raise not_found(self.res_path(f"zones/{p['zone']}/instances/{inst['name']}/guestAttributes/{query}"))
        return 200, {"kind": "compute#guestAttributes", "queryPath": query, "queryValue": {"items": items},
                     "selfLink": inst["selfLink"] + "/guestAttributes/" + query}

    # ---- instances: lifecycle -------------------------------------------------------------
    def h_instances__delete(self, p, q, body):
        inst = self.get_instance(p["zone"], p["instance"])
        if inst.get("deletionProtection"):
            # GCE: "Invalid resource usage: 'Resource cannot be deleted if it's protected against deletion.'."
            raise ApiError(400, "Invalid resource usage: 'Resource cannot be deleted if it's protected against "
                                "deletion.'.", "invalidResourceUsage")
        inst["status"] = "STOPPING"
        op = self.new_operation("delete", inst["selfLink"], inst["id"], zone=p["zone"],
                                on_done={"action": "delete_instance", "zone": p["zone"], "name": p["instance"]})
        return self.op_response(op)

    def _delete_instance_now(self, zone: str, name: str) -> None:
        inst = self.instances(zone).pop(name, None)
        if inst is None:
            return
        self.backend.on_delete(public(inst))
        for a in inst.get("disks", []):
            dname = a["source"].rsplit("/", 1)[-1]
            disk = self.disks(zone).get(dname)
            if disk is None:
                continue
            if a.get("autoDelete"):
                del self.disks(zone)[dname]
            else:
                disk["users"] = [u for u in disk.get("users", []) if u != inst["selfLink"]]
                if not disk["users"]:
                    del disk["users"]
                disk["lastDetachTimestamp"] = now_rfc3339()

    def h_instances__start(self, p, q, body):
        zone = p["zone"]
        inst = self.get_instance(zone, p["instance"])
        if inst["status"] in ("RUNNING", "PROVISIONING", "STAGING"):
            op = self.new_operation("start", inst["selfLink"], inst["id"], zone=zone, done=True)
            return self.op_response(op)
        if inst["status"] == "STOPPING":
            # SkyPilot notes GCE answers RESOURCE_NOT_READY while a VM is still STOPPING.
            res = self.res_path(f"zones/{zone}/instances/{inst['name']}")
            op = self.new_operation("start", inst["selfLink"], inst["id"], zone=zone, http_error=(400, "BAD REQUEST"),
                                    error=[operation_error("RESOURCE_NOT_READY",
                                                           f"The resource '{res}' is not ready")])
            return self.op_response(op)
        errors = self.capacity_errors(zone, inst)
        if not errors:
            errors = self.quota_errors(catalog.region_of(zone), self.instance_needs(inst, include_static=False))
        if errors:
            http = (403, "FORBIDDEN") if errors[0]["code"] == "QUOTA_EXCEEDED" else (503, "SERVICE UNAVAILABLE")
            op = self.new_operation("start", inst["selfLink"], inst["id"], zone=zone, error=errors, http_error=http)
            return self.op_response(op)
        external = any(ac for nic in inst["networkInterfaces"] for ac in nic.get("accessConfigs", []))
        addrs = self.backend.on_start(public(inst), external)
        nic0 = inst["networkInterfaces"][0]
        if addrs.internal_ip:
            nic0["networkIP"] = addrs.internal_ip
        for ac in nic0.get("accessConfigs", []):
            if not ac.get("_static"):
                ac.pop("natIP", None)
                if addrs.external_ip:
                    ac["natIP"] = addrs.external_ip
        inst["status"] = "STAGING"
        op = self.new_operation("start", inst["selfLink"], inst["id"], zone=zone,
                                on_done={"action": "instance_status", "zone": zone, "name": inst["name"],
                                         "status": "RUNNING"})
        return self.op_response(op)

    def h_instances__stop(self, p, q, body):
        zone = p["zone"]
        inst = self.get_instance(zone, p["instance"])
        if inst["status"] in ("TERMINATED",):
            op = self.new_operation("stop", inst["selfLink"], inst["id"], zone=zone, done=True)
            return self.op_response(op)
        self._stop_now(inst)
        op = self.new_operation("stop", inst["selfLink"], inst["id"], zone=zone,
                                on_done={"action": "instance_status", "zone": zone, "name": inst["name"],
                                         "status": "TERMINATED"})
        return self.op_response(op)

    def _stop_now(self, inst: dict) -> None:
        inst["status"] = "STOPPING"
        for nic in inst["networkInterfaces"]:
            for ac in nic.get("accessConfigs", []):
                if not ac.get("_static"):
                    ac.pop("natIP", None)   # ephemeral external IPs are released on stop

    def preempt(self, zone: str, name: str) -> dict:
        """What GCE does to a Spot/preemptible VM it reclaims: a system operation
        `compute.instances.preempted`, then TERMINATED (or deleted for terminationAction DELETE)."""
        inst = self.get_instance(zone, name)
        sched = inst.get("scheduling", {})
        if not (sched.get("preemptible") or sched.get("provisioningModel") == "SPOT"):
            raise bad_request(f"Instance '{name}' is neither Spot nor preemptible: GCE never preempts it.")
        if inst["status"] not in ("RUNNING", "STAGING", "PROVISIONING"):
            raise bad_request(f"Instance '{name}' is {inst['status']}: only a running VM can be preempted.")
        action = sched.get("instanceTerminationAction", "STOP")
        self._stop_now(inst)
        inst["lastStopTimestamp"] = now_rfc3339()
        if action == "DELETE":
            self._delete_instance_now(zone, name)
        else:
            inst["status"] = "TERMINATED"
            self.backend.on_stop(public(inst))
        op = self.new_operation("compute.instances.preempted", inst["selfLink"], inst["id"], zone=zone,
                                user="system", done=True, status_message="Instance was preempted.")
        return public(op)
