"""Is everything a complete run touched covered by what its record holds?

`uncovered`: the configure play's converged_state record on each VM. `provision_uncovered`: the
gce_vm role's gce_provision_state record on the controller (the project's resources).

A rerun skips the roles when the record still matches the VM, so a path, unit, package or account
a role manages but the record leaves out could drift without a rerun ever repairing it. The
journeys log every module result of their first, complete run (tests/support/callbacks) and check
it against the keys of the record the run wrote.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

CALLBACKS = Path(__file__).resolve().parent / "callbacks"
CONFIGURE_PLAY = "Configure the GPU VMs"
# The one role that runs whether or not the shortcut is taken (a bucket may have new objects).
ALWAYS_RUNS = {"gcs_pull"}
FILE_ACTIONS = {"file", "copy", "template", "lineinfile", "blockinfile", "replace", "ini_file", "get_url",
                "unarchive"}
UNIT_ACTIONS = {"systemd_service", "systemd", "service"}
# Commands that change the VM, and the recorded key that sees what they change.
COMMANDS = {
    "Install | Create the Ray virtual environment": "/opt/ray/venv",
    "Install | Create the virtual environment": "/opt/jupyter/venv",
    "Install | Hold the driver packages at the installed version": "/var/lib/dpkg/status",
}
# Files written on the controller (delegate_to: localhost): the play hands them to converged_state
# as controller_files, whose digest is part of the record.
CONTROLLER_FILES = {"gpu_jupyter_cluster.json"}
# Actions that only read, report or decide.
READ_ONLY = {"assert", "set_fact", "validate_argument_spec", "debug", "stat", "find", "setup", "include_vars",
             "getent", "slurp", "wait_for", "uri", "meta", "jupyter_pip_satisfied", "jupyter_port_owner",
             "converged_state", "include_tasks", "import_tasks", "include_role", "command", "shell"}


def env(log: Path) -> dict[str, str]:
    return {"ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS), "ANSIBLE_CALLBACKS_ENABLED": "invocations",
            "INVOCATIONS_LOG": str(log)}


def _short(action: str) -> str:
    return action.rsplit(".", 1)[-1]


def _unit(name: str) -> str:
    return "unit " + (name if "." in name else name + ".service")


def _covered(path: str, keys: set[str]) -> bool:
    """Recorded itself, or (when it is gone) below a recorded directory."""
    return path in keys or posixpath.dirname(path.rstrip("/")) in keys


def uncovered(log: Path, recorded_keys: set[str], host: str) -> list[str]:
    """What the configure roles touched on `host` that its record does not cover, as lines."""
    missing = []
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if r["play"] != CONFIGURE_PLAY or r["role"] in ALWAYS_RUNS or r["host"] != host:
            continue
        action, args, where = _short(r["action"]), r["args"], "%s (%s)" % (r["task"], r["action"])
        if r.get("delegate_to") in ("localhost", "127.0.0.1"):
            path = args.get("path") or args.get("dest") or ""
            if r["changed"] and posixpath.basename(path) not in CONTROLLER_FILES:
                missing.append("%s wrote %s on the controller, which the record does not cover" % (where, path))
        elif action in FILE_ACTIONS:
            path = args.get("path") or args.get("dest")
            if path and not _covered(posixpath.normpath(path), recorded_keys):
                missing.append("%s: %s" % (where, path))
        elif action in UNIT_ACTIONS:
            if args.get("name") and args.get("enabled") and _unit(args["name"]) not in recorded_keys:
                missing.append("%s: %s" % (where, _unit(args["name"])))
        elif action in ("apt", "package", "dpkg_selections"):
            if "/var/lib/dpkg/status" not in recorded_keys:
                missing.append("%s: /var/lib/dpkg/status" % where)
        elif action in ("user", "group"):
            if {"/etc/passwd", "/etc/group"} - recorded_keys:
                missing.append("%s: /etc/passwd and /etc/group" % where)
        elif action == "pip":
            venv = args.get("virtualenv")
            if not venv or venv not in recorded_keys:
                missing.append("%s: virtualenv %s" % (where, venv))
        elif action in ("command", "shell") and r["changed"]:
            key = COMMANDS.get(r["task"].split(" : ", 1)[-1])
            if key is None or key not in recorded_keys:
                missing.append("%s changed the VM: name the key that records it in COMMANDS" % where)
        elif action not in READ_ONLY and r["changed"]:
            missing.append("%s changed the VM and is not known to this check" % where)
    return missing


def recorded_keys(container: str) -> set[str]:
    import subprocess

    out = subprocess.run(["podman", "exec", container, "cat", "/var/lib/gpu-jupyter/converged.json"],
                         capture_output=True, text=True, check=True).stdout
    return set(json.loads(out)["state"])


PROVISION_PLAY = "Provision the GPU VMs"


def _provision_label(action: str, args: dict, vm: str):
    """The record label that sees what this module manages; None: it only reads, or nothing to see."""
    name = args.get("name", "")
    if action in ("gcp_compute_instance", "gce_instance_config", "gce_instance_place"):
        return "instance " + vm
    if action == "gcp_compute_firewall":
        return "firewall rule " + name
    if action == "gcp_compute_resource_policy":
        return "placement policy " + name
    if action == "gcp_iam_service_account":
        return "service account " + name
    if action == "gce_iam_binding":
        return ("IAM policy of project " + args.get("project", "") if args.get("resource_type") == "project"
                else "IAM policy of bucket " + args.get("resource", ""))
    if action == "gce_cloud_nat":
        return "Cloud NAT router " + args.get("router", "")
    return None


# Modules of the provision play that change nothing the record must see: reads, decisions, the
# run's own bookkeeping; the APIs a recorded read could not succeed without; files on the
# controller (their digest is the record's `controller`).
PROVISION_OTHERS = READ_ONLY | {"gce_preflight", "gce_instances_info", "gce_provision_state",
                                "gcp_serviceusage_service", "add_host", "wait_for_connection", "known_hosts",
                                "blockinfile"}


def provision_uncovered(log: Path, record: dict, vm: str) -> list[str]:
    """What the provision play managed for `vm` that its record does not read again, as lines."""
    labels = {r["label"] for r in record["reads"]}
    missing = []
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if r["play"] != PROVISION_PLAY or r["host"] != "gce/" + vm:
            continue
        action = _short(r["action"])
        label = _provision_label(action, r["args"], vm)
        if label is None and action not in PROVISION_OTHERS:
            missing.append("%s (%s) is not known to this check" % (r["task"], r["action"]))
        elif label is not None and label not in labels:
            missing.append("%s (%s): the record does not read %s" % (r["task"], r["action"], label))
    return missing
