"""The sandbox's local attack surface: CONNECT host names never become paths outside its state
directory, key files never follow a planted symlink, and the admin endpoints want the token."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import stat
import urllib.error
import urllib.request

import pytest
import requests

from gce_sandbox.envfiles import ADMIN_TOKEN_HEADER, ensure_admin_token, read_admin_token
from gce_sandbox.server import SERVED_HOSTS
from gce_sandbox.tlsca import CertificateAuthority, InvalidHostError, check_host

from .helpers import PROJECT, ZONE

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _connect(port: int, target: str) -> bytes:
    """Send a raw CONNECT and return the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


def _tree(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---- host names -------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", [
    "../../../../tmp/x/a.googleapis.com", "/tmp/x/a.googleapis.com", "compute.googleapis.com/../x",
    "a..googleapis.com", "..googleapis.com", "x\\..\\a.googleapis.com", "*.googleapis.com",
    "compute.googleapis.com.", "", "compute", "a.googleapis.com\0", "-a.googleapis.com",
    "COMPUTE.googleapis.com", "a" * 64 + ".googleapis.com",
])
def test_invalid_host_names_are_refused(host):
    with pytest.raises(InvalidHostError):
        check_host(host)


def test_only_served_hosts_get_a_certificate():
    for host in SERVED_HOSTS:
        assert check_host(host, SERVED_HOSTS) == host
    with pytest.raises(InvalidHostError):
        check_host("bigquery.googleapis.com", SERVED_HOSTS)


def test_traversal_connect_writes_nothing_outside_the_state_dir(sandbox_server, tmp_path):
    sb = sandbox_server
    target = tmp_path / "x"
    target.mkdir()
    tls = sb.state_dir / "tls"
    before = _tree(sb.state_dir)
    rel = os.path.relpath(target, tls)
    attempts = [f"{rel}/a.googleapis.com:443", f"{target}/a.googleapis.com:443",
                f"compute.googleapis.com/../../{rel}/a.googleapis.com:443",
                f"{rel}/compute.googleapis.com:443", "..:443", "a..googleapis.com:443",
                "bigquery.googleapis.com:443", "compute.googleapis.com:80"]
    for attempt in attempts:
        status = _connect(sb.port, attempt)
        assert status.split()[1] in (b"400", b"403"), (attempt, status)
    assert list(target.iterdir()) == []
    assert list(tmp_path.iterdir()) == [target]
    assert _tree(sb.state_dir) - before <= {"requests.jsonl", "server.log"}
    # The hosts it serves still work through the proxy.
    resp = requests.get(f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/zones/{ZONE}",
                        proxies={"https": sb.url}, verify=sb.env["REQUESTS_CA_BUNDLE"], timeout=10)
    assert resp.status_code in (200, 403)   # 403: the test left Compute disabled; TLS worked either way


# ---- key files and symlinks ---------------------------------------------------------------------------
def test_planted_symlink_at_leaf_key_is_not_followed(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    ca = CertificateAuthority(state, SERVED_HOSTS)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    key_path = ca.dir / "leaf-compute.googleapis.com-key.pem"
    cert_path = ca.dir / "leaf-compute.googleapis.com.pem"
    key_path.symlink_to(victim)
    cert_victim = tmp_path / "cert-victim.txt"
    cert_victim.write_text("also precious\n")
    cert_path.symlink_to(cert_victim)

    ca.context_for("compute.googleapis.com")

    assert victim.read_text() == "precious\n"
    assert cert_victim.read_text() == "also precious\n"
    for path in (key_path, cert_path):
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode), path
    assert stat.S_IMODE(os.lstat(key_path).st_mode) == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()


def test_planted_symlink_at_ca_key_is_not_followed(tmp_path):
    state = tmp_path / "state"
    (state / "tls").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (state / "tls" / "ca-key.pem").symlink_to(victim)
    ca = CertificateAuthority(state, SERVED_HOSTS)
    assert victim.read_text() == "precious\n"
    st = os.lstat(ca.ca_key_path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca.dir).st_mode) == 0o700


def test_invalid_host_writes_no_certificate(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    ca = CertificateAuthority(state, SERVED_HOSTS)
    before = _tree(tmp_path)
    for host in ("../../a.googleapis.com", "bigquery.googleapis.com"):
        with pytest.raises(InvalidHostError):
            ca.context_for(host)
    assert _tree(tmp_path) == before


def test_admin_token_file_is_private_and_never_follows_a_link(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    token = ensure_admin_token(state)
    assert len(token) >= 32 and read_admin_token(state) == token == ensure_admin_token(state)
    assert stat.S_IMODE(os.lstat(state / "admin-token").st_mode) == 0o600

    other = tmp_path / "other"
    other.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (other / "admin-token").symlink_to(victim)
    assert read_admin_token(other) is None
    with pytest.raises(SystemExit):
        ensure_admin_token(other)
    assert victim.read_text() == "precious\n"


# ---- admin endpoints ------------------------------------------------------------------------------------
ADMIN_CALLS = [("GET", "state", None), ("GET", "requests", None), ("DELETE", "requests", None),
               ("GET", "faults", None), ("POST", "faults", {"kind": "http_error", "status": 503}),
               ("DELETE", "faults", None), ("POST", "quotas", {"metric": "CPUS_ALL_REGIONS", "limit": 1}),
               ("POST", "preempt", {"zone": ZONE, "name": "nope"}), ("POST", "reset", None)]


def _raw_admin(sb, method: str, name: str, body=None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers[ADMIN_TOKEN_HEADER] = token
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{sb.url}/_sandbox/{name}", data=data, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 43])
def test_admin_without_the_token_is_refused(sb, token):
    for method, name, body in ADMIN_CALLS:
        status, out = _raw_admin(sb, method, name, body, token)
        assert status == 403, (method, name, out)
        assert str(sb.state_dir / "admin-token") in out["error"] and ADMIN_TOKEN_HEADER in out["error"]
    assert sb.faults() == []          # the refused POST faults changed nothing
    assert sb.state()["quota_limits"]["global"] == {}


def test_admin_with_the_token_works(sb):
    token = sb.admin_token
    assert token and (sb.state_dir / "admin-token").read_text().strip() == token
    assert stat.S_IMODE(os.lstat(sb.state_dir / "admin-token").st_mode) == 0o600
    assert _raw_admin(sb, "POST", "faults", {"kind": "http_error", "status": 503}, token)[0] == 200
    assert len(_raw_admin(sb, "GET", "faults", None, token)[1]["faults"]) == 1
    assert _raw_admin(sb, "DELETE", "faults", None, token)[0] == 200
    assert _raw_admin(sb, "POST", "quotas", {"metric": "CPUS_ALL_REGIONS", "limit": 1}, token)[0] == 200
    assert _raw_admin(sb, "GET", "state", None, token)[1]["quota_limits"]["global"] == {"CPUS_ALL_REGIONS": 1.0}
    assert _raw_admin(sb, "GET", "requests", None, token)[0] == 200
    assert _raw_admin(sb, "POST", "preempt", {"zone": ZONE, "name": "nope"}, token)[0] == 404
    assert _raw_admin(sb, "POST", "reset", None, token)[0] == 200


def test_health_stays_open(sb):
    status, out = _raw_admin(sb, "GET", "health")
    assert status == 200 and out["pid"] == sb.proc.pid
