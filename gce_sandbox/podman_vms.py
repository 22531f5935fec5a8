"""Sandbox VMs that are machines: one podman container (systemd as PID 1, sshd) per instance.

The API layer keeps the instance record; this backend makes the record true on this machine:
insert runs a container from the project's systemd test image, stop/start/delete stop, start and
remove it, and the container's address on podman's bridge is the instance's networkIP (and its
natIP when it has an external address): the address the controller reaches it on, as a machine in
the VPC would. What GCE's guest agent does on a real VM is done here from outside the container:
users and authorized keys from `ssh-keys` metadata (instance, then project unless
`block-project-ssh-keys`), with passwordless sudo through the `google-sudoers` group; the SSH host
keys are served as guest attributes (`hostkeys/`), the way gcloud learns them.

A VM keeps its internal address while it exists, stopped or not, as on GCE (a cluster's workers
find their head again after a stop and start): each container gets a fixed address on podman's
bridge, drawn from the upper quarter of its subnet (podman hands out the lower addresses in order
to other containers), never one of this sandbox's other instances, retried on a clash.

A guest that powers itself off (idle auto-stop) leaves a stopped container: `exited()` tells the
server, which moves the instance to TERMINATED as GCE does. GPUs are recorded on the instance
only: no device exists in the container, and nothing pretends one does.

Every container carries the label `gce-sandbox=<id>` (the id derives from the state directory), so
a sandbox only ever touches its own containers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
import re
import shutil
import subprocess
import threading
from pathlib import Path

from .backend import Addresses

DEFAULT_IMAGE = "localhost/gpu-jupyter-test:debian12"
# POSIX user names the guest agent accepts (a name the metadata supplies never reaches a shell).
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
KEY_RE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( .*)?$")
# Users the guest agent never manages.
RESERVED_USERS = {"root", "bin", "daemon", "sys", "sync", "nobody", "jupyter"}

# Runs inside the container as root, fed a JSON map {user: [keys]} on stdin: what the guest
# agent's accounts daemon does (create the user, google-sudoers, authorized_keys it owns).
_ACCOUNTS_SCRIPT = r"""
import json, os, pwd, subprocess, sys
want = json.load(sys.stdin)
subprocess.run(["groupadd", "-f", "google-sudoers"], check=True)
sudoers = "/etc/sudoers.d/google_sudoers"
if not os.path.exists(sudoers):
    fd = os.open(sudoers, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o440)
    os.write(fd, b"%google-sudoers ALL=(ALL:ALL) NOPASSWD:ALL\n")
    os.close(fd)
for user, keys in want.items():
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-G", "google-sudoers", user], check=True)
        pw = pwd.getpwnam(user)
    subprocess.run(["usermod", "-aG", "google-sudoers", user], check=True)
    # As the user, so nothing in a home they own can redirect root's writes.
    os.setegid(pw.pw_gid); os.seteuid(pw.pw_uid)
    try:
        ssh = os.path.join(pw.pw_dir, ".ssh")
        os.makedirs(ssh, mode=0o700, exist_ok=True)
        tmp = os.path.join(ssh, ".authorized_keys.sandbox")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.write(fd, ("".join(k + "\n" for k in keys)).encode())
        os.close(fd)
        os.replace(tmp, os.path.join(ssh, "authorized_keys"))
    finally:
        os.seteuid(0); os.setegid(0)
"""


def sandbox_id(state_dir: Path) -> str:
    return hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:10]


def metadata_items(metadata: dict | None) -> dict[str, str]:
    return {i.get("key"): i.get("value", "") for i in (metadata or {}).get("items", []) if i.get("key")}


def ssh_users(instance_metadata: dict | None, project_metadata: dict | None) -> dict[str, list[str]]:
    """{user: [public keys]} as the guest agent reads them: instance `ssh-keys` (and legacy
    `sshKeys`), plus the project's unless the instance sets block-project-ssh-keys. OS Login
    (`enable-oslogin: TRUE`) turns metadata keys off, as on GCE."""
    inst = metadata_items(instance_metadata)
    proj = metadata_items(project_metadata)
    if str(inst.get("enable-oslogin", proj.get("enable-oslogin", ""))).upper() == "TRUE":
        return {}
    lines = (inst.get("ssh-keys", "") + "\n" + inst.get("sshKeys", "")).splitlines()
    if str(inst.get("block-project-ssh-keys", "")).lower() != "true":
        lines += (proj.get("ssh-keys", "") + "\n" + proj.get("sshKeys", "")).splitlines()
    users: dict[str, list[str]] = {}
    for line in lines:
        user, sep, key = line.strip().partition(":")
        key = key.strip()
        if not sep or not USER_RE.match(user) or user in RESERVED_USERS or not KEY_RE.match(key):
            continue
        if key not in users.setdefault(user, []):
            users[user].append(key)
    return users


class PodmanError(RuntimeError):
    pass


class PodmanBackend:
    """One container per instance; see the module docstring."""

    def __init__(self, state: dict, state_dir: Path, image: str = DEFAULT_IMAGE, podman: str | None = None):
        self.state = state
        self.id = sandbox_id(state_dir)
        self.image = image
        self.podman = podman or shutil.which("podman") or "podman"
        self._stopping: dict[str, threading.Thread] = {}

    # ---- podman ------------------------------------------------------------------------
    def _run(self, *args: str, stdin: str | None = None, timeout: float = 120, check: bool = True) -> str:
        proc = subprocess.run([self.podman, *args], input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise PodmanError(f"podman {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return proc.stdout

    def container(self, instance: dict) -> str:
        zone = instance["zone"].rsplit("/", 1)[-1]
        return f"gce-{self.id}-{zone}-{instance['name']}"

    def _ip(self, name: str) -> str:
        data = json.loads(self._run("inspect", "--type", "container", name))[0]
        nets = data.get("NetworkSettings", {})
        ip = nets.get("IPAddress") or next((n.get("IPAddress") for n in (nets.get("Networks") or {}).values()
                                            if n.get("IPAddress")), "")
        if not ip:
            raise PodmanError(f"container {name} has no address")
        return ip

    def _wait_stopped(self, name: str) -> None:
        thread = self._stopping.pop(name, None)
        if thread:
            thread.join(timeout=60)

    # ---- VmBackend ---------------------------------------------------------------------
    def _address_pool(self) -> ipaddress.IPv4Network | None:
        """The upper quarter of podman's default bridge subnet; None when podman does not say."""
        try:
            network = json.loads(self._run("network", "inspect", "podman"))[0]
            subnet = ipaddress.ip_network(network["subnets"][0]["subnet"])
        except (PodmanError, ValueError, KeyError, IndexError, TypeError):
            return None
        return list(subnet.subnets(prefixlen_diff=2))[-1] if subnet.version == 4 and subnet.prefixlen <= 24 else None

    def _addresses_in_use(self) -> set[str]:
        return {nic.get("networkIP") for table in self.state.get("instances", {}).values()
                for instance in table.values() for nic in instance.get("networkInterfaces") or []}

    def on_create(self, instance: dict, external: bool) -> Addresses:
        name = self.container(instance)
        pool = self._address_pool()
        taken = self._addresses_in_use()
        rng = random.SystemRandom()
        for attempt in range(8):
            self._run("rm", "--force", "--time", "0", name, check=False)   # a leftover from a crash or a clash
            ip = None
            if pool is not None:
                ip = str(pool[rng.randrange(2, pool.num_addresses - 1)])
                if ip in taken:
                    continue
            try:
                # --tty gives systemd a console to write the boot to: the VM's serial port 1.
                # NET_ADMIN: root on a VM manages its own packet filter (nftables), here in the
                # container's own network namespace only.
                self._run("run", "--detach", "--tty", "--name", name, "--hostname", instance["name"],
                          *(("--ip", ip) if ip else ()),
                          "--label", f"gce-sandbox={self.id}", "--label", f"gce-instance={instance['selfLink']}",
                          "--systemd", "always", "--cap-add", "NET_ADMIN",
                          "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
                          self.image, "/lib/systemd/systemd")
            except PodmanError as err:
                # Another container holds that address (a concurrent sandbox): draw another.
                if ip and attempt < 7 and ("not available" in str(err) or "already allocated" in str(err)):
                    continue
                raise
            return self._ready(instance, name, external)
        raise PodmanError(f"no free address for {name} in {pool}")

    def on_start(self, instance: dict, external: bool) -> Addresses:
        name = self.container(instance)
        self._wait_stopped(name)
        if not self._exists(name):   # removed behind the sandbox's back: boot a fresh disk
            return self.on_create(instance, external)
        self._run("start", name)
        return self._ready(instance, name, external)

    def _exists(self, name: str) -> bool:
        return subprocess.run([self.podman, "container", "exists", name]).returncode == 0

    def _ready(self, instance: dict, name: str, external: bool) -> Addresses:
        ip = self._ip(name)
        self.sync_accounts(instance)
        return Addresses(ip, ip if external else None)

    def on_stop(self, instance: dict) -> None:
        # systemd takes seconds to shut down: the API answers at once, as GCE's STOPPING does.
        name = self.container(instance)
        thread = threading.Thread(target=self._run, args=("stop", "--time", "20", name),
                                  kwargs={"check": False}, daemon=True)
        self._stopping[name] = thread
        thread.start()

    def on_delete(self, instance: dict) -> None:
        name = self.container(instance)
        self._wait_stopped(name)
        self._run("rm", "--force", "--time", "0", name, check=False)

    # ---- what the guest agent does -------------------------------------------------------
    def on_metadata(self, instance: dict) -> None:
        if instance.get("status") in ("RUNNING", "STAGING", "PROVISIONING"):
            self.sync_accounts(instance)

    def sync_accounts(self, instance: dict) -> None:
        project_md = self.state.get("common_metadata") or self.state.get("commonInstanceMetadata")
        users = ssh_users(instance.get("metadata"), project_md)
        if users:
            self._run("exec", "--interactive", self.container(instance), "python3", "-c", _ACCOUNTS_SCRIPT,
                      stdin=json.dumps(users))

    def host_keys(self, instance: dict) -> list[dict]:
        """Guest attributes `hostkeys/<type>`: the VM's SSH host public keys, once sshd made them."""
        out = self._run("exec", self.container(instance), "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null",
                        check=False)
        keys = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                keys.append({"namespace": "hostkeys", "key": parts[0], "value": parts[1]})
        return keys

    def console(self, instance: dict) -> str:
        """Serial port 1: the container's console, where systemd writes the boot."""
        return self._run("logs", self.container(instance), check=False, timeout=30)

    # ---- housekeeping ----------------------------------------------------------------------
    def running(self) -> set[str]:
        out = self._run("ps", "--filter", f"label=gce-sandbox={self.id}", "--format", "{{.Names}}", check=False)
        return set(out.split())

    def exited(self, instances: list[dict]) -> list[dict]:
        """Instances the API believes RUNNING whose container has stopped: the guest powered off."""
        live = self.running()
        return [i for i in instances if i.get("status") == "RUNNING" and self.container(i) not in live
                and self.container(i) not in self._stopping]

    def stop_all(self) -> None:
        names = self._run("ps", "--filter", f"label=gce-sandbox={self.id}", "--format", "{{.Names}}",
                          check=False).split()
        if names:
            self._run("stop", "--time", "10", *names, check=False)

    def purge(self) -> None:
        names = self._run("ps", "--all", "--filter", f"label=gce-sandbox={self.id}", "--format", "{{.Names}}",
                          check=False).split()
        if names:
            self._run("rm", "--force", "--time", "0", *names, check=False)
