#!/usr/bin/python
"""Report which processes, and which systemd units, listen on a TCP port."""

from __future__ import annotations

DOCUMENTATION = r"""
module: jupyter_port_owner
short_description: Find the processes and systemd units listening on a TCP port
description:
  - Reads C(/proc/net/tcp) and C(/proc/net/tcp6) for sockets in LISTEN state on I(port), then
    finds the processes holding them and the systemd unit each belongs to (from its cgroup).
  - Works where root lacks CAP_SYS_PTRACE (containers), where C(ss -p) shows no process; the
    socket's owner is searched for under that owner's own uid.
  - Read-only; supports check mode.
options:
  port:
    description: TCP port to look at.
    type: int
    required: true
author: gpu-jupyter
"""

EXAMPLES = r"""
- name: Find what listens on 8080
  jupyter_port_owner:
    port: 8080
  register: listeners
"""

RETURN = r"""
listeners:
  description: One entry per listening socket.
  type: list
  elements: dict
  returned: always
  contains:
    address: {description: Bound address, type: str}
    uid: {description: Owner uid of the socket, type: int}
    pids: {description: Processes holding the socket (empty when they cannot be found), type: list}
    units: {description: systemd units of those processes (e.g. jupyter.service), type: list}
    commands: {description: Command names of those processes, type: list}
"""

import ipaddress
import os
import re

from ansible.module_utils.basic import AnsibleModule

LISTEN = "0A"


def decode_address(hexaddr: str) -> str:
    """Decode a /proc/net/tcp{,6} address: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hexaddr)
    swapped = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(swapped))


def parse_proc_net_tcp(text: str, port: int) -> list[dict]:
    """Sockets listening on `port` in the text of /proc/net/tcp or tcp6."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        host, _, hexport = fields[1].partition(":")
        if int(hexport, 16) != port:
            continue
        found.append({"address": decode_address(host), "uid": int(fields[7]), "inode": int(fields[9])})
    return found


def unit_of_cgroup(text: str) -> str:
    """The systemd unit in a /proc/<pid>/cgroup text ("" when there is none)."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    path = paths.get("name=systemd") or paths.get("", "")
    for part in reversed(path.split("/")):
        if re.search(r"\.(service|scope)$", part):
            return part
    return ""


def pids_holding(inodes: set[int]) -> dict[int, list[int]]:
    """Map socket inode -> pids, scanning /proc/<pid>/fd as the current credentials allow."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    found: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in wanted:
                found.setdefault(wanted[target], []).append(int(pid))
    return found


def pids_holding_as(uid: int, inodes: set[int]) -> dict[int, list[int]]:
    """pids_holding() run in a child that took the socket owner's uid.

    Without CAP_SYS_PTRACE (root in a container), root cannot read other users' fd tables, but
    a process can always read those of its own uid.
    """
    import json
    import pwd

    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        os.close(read_end)
        try:
            gid = pwd.getpwuid(uid).pw_gid if uid_has_entry(uid) else uid
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            payload = json.dumps({str(k): v for k, v in pids_holding(inodes).items()})
        except Exception:  # noqa: BLE001 - the parent just gets nothing
            payload = "{}"
        os.write(write_end, payload.encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(child, 0)
    return {int(k): v for k, v in json.loads(b"".join(chunks) or b"{}").items()}


def uid_has_entry(uid: int) -> bool:
    import pwd

    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def find_listeners(port: int) -> list[dict]:
    sockets = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        sockets.extend(parse_proc_net_tcp(read(table), port))
    holders = pids_holding({s["inode"] for s in sockets})
    for uid in {s["uid"] for s in sockets if s["inode"] not in holders}:
        if os.geteuid() == 0 and uid != 0:
            mine = {s["inode"] for s in sockets if s["uid"] == uid}
            holders.update(pids_holding_as(uid, mine))
    listeners = []
    for sock in sockets:
        pids = sorted(set(holders.get(sock["inode"], [])))
        listeners.append({
            "address": sock["address"],
            "uid": sock["uid"],
            "pids": pids,
            "units": sorted({unit_of_cgroup(read(f"/proc/{p}/cgroup")) for p in pids} - {""}),
            "commands": sorted({read(f"/proc/{p}/comm").strip() for p in pids} - {""}),
        })
    return listeners


def main() -> None:
    module = AnsibleModule(argument_spec={"port": {"type": "int", "required": True}}, supports_check_mode=True)
    port = module.params["port"]
    if not 0 < port < 65536:
        module.fail_json(msg=f"port must be 1-65535, got {port}")
    module.exit_json(changed=False, listeners=find_listeners(port))


if __name__ == "__main__":
    main()
