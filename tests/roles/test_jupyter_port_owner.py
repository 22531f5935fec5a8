"""Unit tests for roles/jupyter/library/jupyter_port_owner.py (no root, no container needed)."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

MODULE = Path(__file__).resolve().parents[2] / "roles" / "jupyter" / "library" / "jupyter_port_owner.py"
spec = importlib.util.spec_from_file_location("jupyter_port_owner", MODULE)
owner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(owner)

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def proc_hex(address: str) -> str:
    """Encode an address as the kernel writes it: each 32-bit word in host byte order."""
    packed = ipaddress.ip_address(address).packed
    words = [packed[i:i + 4] for i in range(0, len(packed), 4)]
    return "".join(struct.pack("<I", struct.unpack(">I", w)[0]).hex().upper() for w in words)


def line(address, port, state="0A", uid=1000, inode=4242, sl=0):
    return (f"{sl:4}: {proc_hex(address)}:{port:04X} {proc_hex('0.0.0.0' if '.' in address else '::')}:0000 "
            f"{state} 00000000:00000000 00:00000000 00000000 {uid:5} 0 {inode} 1 0000000000000000 100 0 0 10 0\n")


def test_decodes_the_kernel_examples():
    assert owner.decode_address("0100007F") == "127.0.0.1"
    assert owner.decode_address("00000000") == "0.0.0.0"
    assert owner.decode_address("00000000000000000000000001000000") == "::1"


@given(st.ip_addresses())
def test_decode_inverts_the_kernel_encoding(address):
    assert owner.decode_address(proc_hex(str(address))) == str(address)


def test_keeps_only_listeners_on_the_port():
    text = HEADER + line("127.0.0.1", 8080, inode=1) + line("0.0.0.0", 22, inode=2, uid=0) \
        + line("127.0.0.1", 8080, state="01", inode=3) + line("10.0.0.5", 8080, inode=4, uid=0)
    assert owner.parse_proc_net_tcp(text, 8080) == [
        {"address": "127.0.0.1", "uid": 1000, "inode": 1},
        {"address": "10.0.0.5", "uid": 0, "inode": 4},
    ]


def test_ipv6_table():
    text = HEADER + line("::1", 8080, inode=7) + line("::", 8081, inode=8)
    assert owner.parse_proc_net_tcp(text, 8080) == [{"address": "::1", "uid": 1000, "inode": 7}]


@pytest.mark.parametrize(("cgroup", "unit"), [
    ("0::/system.slice/jupyter.service\n", "jupyter.service"),
    ("1:name=systemd:/libpod_parent/libpod-abc/system.slice/jupyter.service\n0::/libpod_parent/libpod-abc\n",
     "jupyter.service"),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope"),
    ("0::/system.slice/docker-0123.scope/init.scope\n", "init.scope"),
    ("0::/\n", ""),
    ("", ""),
])
def test_unit_of_cgroup(cgroup, unit):
    assert owner.unit_of_cgroup(cgroup) == unit


def test_finds_its_own_listening_socket():
    """End to end on this machine's /proc: a socket this test opens is found, with its pid."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        found = owner.find_listeners(port)
    assert len(found) == 1
    assert found[0]["address"] == "127.0.0.1"
    assert found[0]["uid"] == os.geteuid()
    assert os.getpid() in found[0]["pids"]
    assert found[0]["commands"] == [Path(f"/proc/{os.getpid()}/comm").read_text().strip()]


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="needs root to take another uid")
def test_searches_as_the_socket_owner():
    """The fork-and-setuid path returns a map for the owner's uid without failing."""
    assert owner.pids_holding_as(65534, {999999999}) == {}
