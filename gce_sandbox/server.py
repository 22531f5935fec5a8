"""The sandbox server: one TCP port on 127.0.0.1 that serves

  * plain HTTP API requests (gcloud with api_endpoint_overrides, tests, curl),
  * an HTTPS proxy: CONNECT host:443 for the googleapis hosts in SERVED_HOSTS (validated
    before the name is used for a certificate file) is answered by terminating TLS
    with a certificate from the sandbox CA and serving the requests inside the tunnel with
    the same handler (Host / SNI pick the API); CONNECT anywhere else is refused (403),
  * admin endpoints under /_sandbox/ (plain HTTP only; all but GET health need the token in
    STATE/admin-token, sent as the X-Sandbox-Admin-Token header).
"""

from __future__ import annotations

import copy
import hmac
import json
import os
import pathlib
import re
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import catalog, cloudquotas, discovery, metadata_server
from .iam import Iam
from .resourcemanager import ResourceManager
from .storage import Storage
from .compute import Compute, Faults, RetryAfter, now_rfc3339, public
from .compute.timing import settings as timing_settings
from .envfiles import (ADMIN_TOKEN_FILE, ADMIN_TOKEN_HEADER, DEFAULT_PROJECT, STATIC_TOKEN, ensure_admin_token,
                       ensure_service_account, ensure_ssh_key, write_client_files)
from .errors import ApiError
from .oauth import TokenEndpoint
from .podman_vms import PodmanBackend
from .serviceusage import ServiceUsage
from .tlsca import CertificateAuthority, InvalidHostError, check_host

STATE_VERSION = 1
# Hosts the sandbox answers inside a CONNECT tunnel.
SERVED_HOSTS = ("compute.googleapis.com", "www.googleapis.com", "serviceusage.googleapis.com",
                "oauth2.googleapis.com", "cloudresourcemanager.googleapis.com", "cloudquotas.googleapis.com",
                "iam.googleapis.com", "storage.googleapis.com")
# Read-only methods that are POSTs: not "mutating" in the request log.
READ_ONLY_POSTS = {"compute.zoneOperations.wait", "compute.regionOperations.wait",
                   "compute.globalOperations.wait", "serviceusage.services.batchGet",
                   "cloudresourcemanager.projects.getIamPolicy"}

INVALID_CREDENTIALS = ApiError(
    401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
         "valid authentication credential. See https://developers.google.com/identity/sign-in/web/"
         "devconsole-project.", "authError",
    extra={"location": "Authorization", "locationType": "header"})


def _new_state(project: str) -> dict:
    return {"version": STATE_VERSION, "project": project, "created": now_rfc3339(),
            "instances": {}, "disks": {}, "firewalls": {}, "operations": {}, "faults": [],
            "quota_limits": {"global": {}, "regions": {}}}


def default_firewalls(compute: Compute) -> None:
    """The four rules a new project's `default` network comes with."""
    rules = [
        ("default-allow-internal", 65534, [{"IPProtocol": "tcp", "ports": ["0-65535"]},
                                          {"IPProtocol": "udp", "ports": ["0-65535"]},
                                          {"IPProtocol": "icmp"}], ["10.128.0.0/9"],
         "Allow internal traffic on the default network"),
        ("default-allow-ssh", 65534, [{"IPProtocol": "tcp", "ports": ["22"]}], ["0.0.0.0/0"],
         "Allow SSH from anywhere"),
        ("default-allow-rdp", 65534, [{"IPProtocol": "tcp", "ports": ["3389"]}], ["0.0.0.0/0"],
         "Allow RDP from anywhere"),
        ("default-allow-icmp", 65534, [{"IPProtocol": "icmp"}], ["0.0.0.0/0"], "Allow ICMP from anywhere"),
    ]
    for name, prio, allowed, ranges, desc in rules:
        compute.firewalls()[name] = compute._firewall_record(
            {"name": name, "priority": prio, "allowed": allowed, "sourceRanges": ranges, "description": desc,
             "network": "global/networks/default"}, None)


class Sandbox:
    """All of the sandbox's state and logic, independent of the HTTP plumbing."""

    def __init__(self, state_dir: pathlib.Path, project: str | None = None, serving: bool = True,
                 vms: str | None = None, timing: dict | None = None):
        self.state_dir = pathlib.Path(state_dir).resolve()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_path = self.state_dir / "state.json"
        self.log_path = self.state_dir / "requests.jsonl"
        self.lock = threading.RLock()
        self.log_lock = threading.Lock()
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text())
            if project and project != self.state["project"]:
                raise SystemExit(f"{self.state_dir} holds the state of project {self.state['project']!r}, "
                                 f"not {project!r}: use another --state-dir or `reset`.")
        else:
            self.state = _new_state(project or DEFAULT_PROJECT)
        self.project = self.state["project"]
        # What stands behind an instance: "none" (a record with addresses) or "podman" (a
        # container per VM). Kept in the state, so a restart serves the same VMs.
        self.vms = vms or self.state.get("vm_backend", "none")
        self.state["vm_backend"] = self.vms
        # How long operations run (compute/timing.py): the start's choice, else the state's, else
        # instant. `reset` comes back to it, whatever an admin call set since.
        self.timing_default = timing or self.state.get("timing") or timing_settings()
        self.state["timing"] = self.timing_default
        self.backend = PodmanBackend(self.state, self.state_dir) if self.vms == "podman" else None
        self.service_account = ensure_service_account(self.state_dir, self.project)
        if serving and self.vms == "podman":
            ensure_ssh_key(self.state_dir)
        self._wire()
        if not self.state_path.exists():
            default_firewalls(self.compute)
            self.save()
        self.admin_token: str | None = None
        if serving:
            # Keys, tokens and the request log live here: the owner's only.
            os.chmod(self.state_dir, 0o700)
            self.admin_token = ensure_admin_token(self.state_dir)
            self.ca = CertificateAuthority(self.state_dir, SERVED_HOSTS)
            # Compute's discovery document is large: parse it once up front, not on a first request.
            discovery.compute()
            discovery.serviceusage()

    def _wire(self) -> None:
        self.faults = Faults(self.state)
        if self.backend is not None:
            self.backend.state = self.state
        self.compute = Compute(self.state, backend=self.backend, faults=self.faults)
        self.compute_handlers = self.compute.handlers()
        self.serviceusage = ServiceUsage(self.state)
        self.tokens = TokenEndpoint(self.state, self.service_account)
        self.quotas_api = cloudquotas.CloudQuotas(self.state, self.compute)
        self.iam = Iam(self.state)
        self.resourcemanager = ResourceManager(self.state, self.iam)
        self.storage = Storage(self.state, self.iam)
        self.compute.service_account_exists = self.iam.exists

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        os.replace(tmp, self.state_path)

    def reset(self) -> None:
        with self.lock:
            if self.backend is not None:
                self.backend.purge()
            self.state.clear()
            self.state.update(_new_state(self.project))
            self.state["vm_backend"] = self.vms
            self.state["timing"] = self.timing_default
            self._wire()
            default_firewalls(self.compute)
            self.save()
        with self.log_lock:
            self.log_path.write_text("")

    # ---- container VMs ---------------------------------------------------------------
    def _running_instances(self) -> list[dict]:
        return [inst for table in self.state.get("instances", {}).values() for inst in table.values()
                if inst.get("status") == "RUNNING"]

    def reconcile_vms(self) -> None:
        """After a restart: every instance the state calls RUNNING gets its container back."""
        with self.lock:
            for inst in self.backend.exited(self._running_instances()):
                external = any(ac for nic in inst["networkInterfaces"] for ac in nic.get("accessConfigs", []))
                addrs = self.backend.on_start(public(inst), external)
                nic0 = inst["networkInterfaces"][0]
                nic0["networkIP"] = addrs.internal_ip or nic0.get("networkIP")
                for ac in nic0.get("accessConfigs", []):
                    if addrs.external_ip:
                        ac["natIP"] = addrs.external_ip
            self.save()

    def watch_guests(self, stop: threading.Event, interval: float = 2.0) -> None:
        """A guest that powered itself off (idle auto-stop) is TERMINATED, as on GCE."""
        while not stop.wait(interval):
            try:
                with self.lock:
                    # Run-time limits end VMs with no request arriving, as on GCE.
                    expired = self.compute.expire_run_limits()
                    gone = self.backend.exited(self._running_instances())
                    for inst in gone:
                        self.compute._stop_now(inst)
                        inst["status"] = "TERMINATED"
                        inst["lastStopTimestamp"] = now_rfc3339()
                    if gone or expired:
                        self.save()
            except Exception as exc:  # noqa: BLE001 - a failed poll must not end the watcher
                print(f"gce-sandbox: guest watch: {exc}", file=sys.stderr, flush=True)

    # ---- request log -----------------------------------------------------------------
    def log(self, entry: dict) -> None:
        with self.log_lock:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")

    def read_log(self) -> list[dict]:
        with self.log_lock:
            if not self.log_path.exists():
                return []
            return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    # ---- auth ------------------------------------------------------------------------
    def check_auth(self, header: str | None) -> None:
        if not header:
            return   # anonymous: gcloud with auth/disable_credentials sends none
        m = re.match(r"^Bearer\s+(\S+)$", header)
        if not m:
            raise INVALID_CREDENTIALS
        token = m.group(1)
        if token == STATIC_TOKEN:
            return
        until = self.state.get("issued_tokens", {}).get(token)
        if until is None or until < time.time():
            raise INVALID_CREDENTIALS

    # ---- dispatch --------------------------------------------------------------------
    def handle_api(self, method: str, host: str, path: str, query: dict, raw_body: bytes,
                   headers: dict) -> tuple[int, Any, dict]:
        """Returns (status, json body or None, log extras)."""
        info: dict = {}
        fault = None
        with self.lock:
            fault = self.faults.http_error(method, host, path)
            drop = None if fault else self.faults.on_request("disconnect", method, path)
            if fault or drop:
                self.save()
        if fault:
            return _http_fault(fault) + (info,)
        if drop:
            # The handler closes the connection without an answer, before or after serving it.
            info["disconnect"] = drop["when"]
            if drop["when"] == "before":
                return 0, None, info

        # OAuth token endpoint (form-encoded)
        if (host in ("oauth2.googleapis.com", "plain") and path == "/token") or \
                (host == "www.googleapis.com" and path == "/oauth2/v4/token"):
            if method != "POST":
                return 405, {"error": "invalid_request", "error_description": "POST only"}, info
            with self.lock:
                status, body = self.tokens.handle(raw_body)
                self.save()
            info["token_request"] = True
            return status, body, info

        try:
            body = json.loads(raw_body) if raw_body.strip() else None
        except json.JSONDecodeError as exc:
            return _err(ApiError(400, f"Invalid JSON payload received. {exc.msg}.", "parseError")) + (info,)

        api, rel = _pick_api(host, path)
        if api is None:
            return _err(ApiError(404, f"The requested URL {path} was not found on this server "
                                      f"(the sandbox does not emulate {host if host != 'plain' else 'this path'}).",
                                 "notFound")) + (info,)
        try:
            self.check_auth(headers.get("authorization"))
            waited = 0.0
            while True:
                try:
                    with self.lock:
                        result = self._dispatch(api, method, rel, dict(query, _waited=waited)
                                                if waited else query, body, info)
                        # GETs change nothing unless an operation finished on the way.
                        if method != "GET" or info.get("dirty") or api != "compute":
                            self.save()
                    return result + (info,)
                except RetryAfter as ra:
                    step = min(ra.seconds, 5.0)
                    time.sleep(max(step, 0.01))
                    waited += step
        except ApiError as exc:
            if method != "GET" or info.get("dirty"):
                with self.lock:
                    self.save()
            return _err(exc) + (info,)

    def _dispatch(self, api: str, method: str, rel: str, query: dict, body: Any, info: dict) -> tuple[int, Any]:
        if self.compute.advance() | self.serviceusage.advance():
            info["dirty"] = True
        if api == "compute":
            doc = discovery.compute()
            matched = doc.match(method, rel)
            if matched is None:
                raise ApiError(404, f"The requested URL /compute/v1/{rel} was not found on this server.",
                               "notFound")
            route, params = matched
            info["method_id"] = route.method_id
            self.serviceusage.require("compute.googleapis.com")
            project = params.get("project")
            public_images = route.method_id.startswith(("compute.images.", "compute.imageFamilyViews."))
            if project and project != self.project and not public_images:
                raise ApiError(404, f"The resource 'projects/{project}' was not found", "notFound")
            doc.validate_request(route, body)
            handler = self.compute_handlers.get(route.method_id)
            if handler is None:
                raise ApiError(501, f"Method {route.method_id} is not implemented by the sandbox.",
                               "notImplemented")
            # requestId: a retried mutation with the same id gets the first call's operation back.
            request_id = query.get("requestId") if method != "GET" else None
            seen = self.state.setdefault("request_ids", {})
            if request_id:
                op_name = seen.get(f"{route.method_id}/{request_id}")
                op = self.compute.operations().get(op_name) if op_name else None
                if op is not None:
                    return self.compute.op_response(op)
            status, result = handler(params, query, body if body is not None else {})
            if request_id and isinstance(result, dict) and result.get("kind") == "compute#operation":
                seen[f"{route.method_id}/{request_id}"] = result["name"]
                if len(seen) > 2000:
                    for key in list(seen)[:500]:
                        del seen[key]
            return status, result
        if api == "serviceusage":
            doc = discovery.serviceusage()
            matched = doc.match(method, rel)
            if matched is None:
                raise ApiError(404, f"The requested URL /v1/{rel} was not found on this server.", "notFound")
            route, params = matched
            info["method_id"] = route.method_id
            doc.validate_request(route, body)
            return self.serviceusage.handle(route.method_id, params, query, body)
        if api == "cloudquotas":
            self.serviceusage.require("cloudquotas.googleapis.com")
            method_id, result = self.quotas_api.handle(method, rel, query, body)
            info["method_id"] = method_id
            return result
        if api in ("iam", "cloudresourcemanager", "storage"):
            return self._iam_apis(api, method, rel, query, body, info)
        raise ApiError(404, "Not found", "notFound")

    def _iam_apis(self, api: str, method: str, rel: str, query: dict, body: Any, info: dict) -> tuple[int, Any]:
        """IAM service accounts, the project's IAM policy and buckets with theirs."""
        version = rel.split("/", 1)[0]
        if api == "iam":
            doc = discovery.iam()
        elif api == "storage":
            doc = discovery.storage()
        elif version in ("v1", "v3"):
            doc = discovery.cloudresourcemanager(version)
        else:
            doc = None
        matched = doc.match(method, rel) if doc else None
        if matched is None:
            raise ApiError(404, f"The requested URL /{rel} was not found on this server.", "notFound")
        route, params = matched
        info["method_id"] = route.method_id
        doc.validate_request(route, body)
        if api == "iam":
            self.serviceusage.require("iam.googleapis.com")
            return self.iam.handle(route.method_id, params, body)
        if api == "storage":
            return self.storage.handle(route.method_id, params, query, body)
        return self.resourcemanager.handle(route.method_id, version, params, body)

    # ---- admin -----------------------------------------------------------------------
    def admin_state(self) -> dict:
        with self.lock:
            self.compute.advance()
            self.serviceusage.advance()
            state = public(copy.deepcopy(self.state))
            state.pop("issued_tokens", None)
            state["usage"] = {"global": self.compute.quotas_list(None),
                              "regions": {r: self.compute.quotas_list(r) for r in catalog.REGIONS}}
            return state


def _pick_api(host: str, path: str) -> tuple[str | None, str]:
    if host in ("compute.googleapis.com", "www.googleapis.com", "plain") and path.startswith("/compute/v1/"):
        return "compute", path[len("/compute/v1/"):]
    if host == "serviceusage.googleapis.com" and path.startswith("/v1/"):
        return "serviceusage", path[1:]
    if host == "plain" and path.startswith("/serviceusage/v1/"):
        return "serviceusage", path[len("/serviceusage/"):]
    if host == "cloudquotas.googleapis.com" and path.startswith("/v1/"):
        return "cloudquotas", path[1:]
    if host == "plain" and path.startswith("/cloudquotas/v1/"):
        return "cloudquotas", path[len("/cloudquotas/"):]
    if host == "cloudresourcemanager.googleapis.com":
        return "cloudresourcemanager", path[1:]
    if host == "iam.googleapis.com" and path.startswith("/v1/"):
        return "iam", path[1:]
    if host == "plain" and path.startswith("/iam/v1/"):
        return "iam", path[len("/iam/"):]
    if host in ("storage.googleapis.com", "www.googleapis.com", "plain") and path.startswith("/storage/v1/"):
        return "storage", path[len("/storage/v1/"):]
    if host == "plain" and path.startswith("/cloudresourcemanager/"):
        return "cloudresourcemanager", path[len("/cloudresourcemanager/"):]
    return None, path


def _err(exc: ApiError) -> tuple[int, dict]:
    return exc.code, exc.body()


def _http_fault(fault: dict) -> tuple[int, dict]:
    status = int(fault["status"])
    if status == 429:
        exc = ApiError(429, "Rate Limit Exceeded", "rateLimitExceeded", "usageLimits")
    elif status == 503:
        exc = ApiError(503, "The service is currently unavailable.", "backendError")
    elif status == 500:
        exc = ApiError(500, "Internal error. Please try again or contact Google Support.", "backendError")
    else:
        exc = ApiError(status, fault.get("message") or f"Injected HTTP {status} (sandbox fault).", "sandboxFault")
    return _err(exc)


def _flat_query(qs: str) -> dict:
    out: dict[str, Any] = {}
    for key, values in parse_qs(qs, keep_blank_values=True).items():
        out[key] = values if len(values) > 1 or key == "names" else values[0]
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server_version = "gce-sandbox"
    sys_version = ""
    tunnel_host: str | None = None

    @property
    def sandbox(self) -> Sandbox:
        return self.server.sandbox  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if os.environ.get("GCE_SANDBOX_DEBUG"):
            sys.stderr.write("%s - %s\n" % (self.tunnel_host or "plain", format % args))

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if isinstance(self.connection, ssl.SSLSocket):
                try:
                    self.connection.close()
                except OSError:
                    pass

    # ---- CONNECT ---------------------------------------------------------------------
    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        host = host.lower()
        shown = ascii(self.path)[1:-1][:200]
        if self.tunnel_host is not None:
            self._send_raw(400, b"gce-sandbox: CONNECT inside a tunnel\n", "text/plain; charset=utf-8", close=True)
            return
        try:
            check_host(host)
        except InvalidHostError:
            msg = f"gce-sandbox refuses CONNECT {shown}: not a host:port with a valid DNS host name.\n"
            self._send_raw(400, msg.encode(), "text/plain; charset=utf-8", close=True)
            return
        if port != "443" or host not in SERVED_HOSTS:
            msg = (f"gce-sandbox refuses CONNECT {shown}: it only serves {', '.join(SERVED_HOSTS)} on port 443 "
                   "and never tunnels to the outside. Unset HTTPS_PROXY (or add the host to NO_PROXY) for "
                   "other traffic.\n")
            self._send_raw(403, msg.encode(), "text/plain; charset=utf-8", close=True)
            return
        try:
            context = self.sandbox.ca.context_for(host)
        except (InvalidHostError, OSError, ValueError) as exc:
            self._send_raw(500, f"gce-sandbox: no certificate for {host}: {exc}\n".encode(),
                           "text/plain; charset=utf-8", close=True)
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        try:
            conn = context.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        conn.settimeout(600)
        self.connection = conn
        self.rfile = conn.makefile("rb", -1)
        self.wfile = socketserver._SocketWriter(conn)  # type: ignore[attr-defined]
        self.tunnel_host = host
        self.close_connection = False

    # ---- verbs -----------------------------------------------------------------------
    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self, method: str) -> None:
        raw = self._read_body()
        target = self.path
        host = self.tunnel_host
        if host is None and target.startswith("http://"):
            # Plain proxy request in absolute form: only for the hosts we serve.
            parts = urlsplit(target)
            host = parts.hostname or ""
            if host not in SERVED_HOSTS:
                self._send_raw(403, f"gce-sandbox refuses to proxy {target}\n".encode(), "text/plain", close=False)
                return
            target = parts.path + ("?" + parts.query if parts.query else "")
        parts = urlsplit(target)
        path, query = parts.path, _flat_query(parts.query)

        if host is None and path.startswith("/_sandbox/"):
            self._admin(method, path, query, raw)
            return
        if host is None and path.startswith(metadata_server.PREFIX):
            self._metadata(method, path, query, raw)
            return
        if host is not None and host not in SERVED_HOSTS:
            status, body, info = 404, ApiError(404, f"The sandbox does not emulate {host}.", "notFound").body(), {}
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body, info = self.sandbox.handle_api(method, host or "plain", path, query, raw, headers)
        # Logged before the answer leaves: a client that reads the log (or clears it) right after
        # its call must find the call there (or gone), never appended a moment later.
        if info.get("disconnect"):
            self._log(method, host, path, query, raw, 0, info)
            self.close_connection = True    # no answer: the client sees the connection drop
            return
        self._log(method, host, path, query, raw, status, info)
        self._send_json(status, body)

    def _metadata(self, method: str, path: str, query: dict, raw: bytes) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.sandbox.lock:
            status, ctype, data = metadata_server.handle(self.sandbox.state, method, path, headers)
            if status == 200 and path.endswith("/token"):
                self.sandbox.save()
        self._log(method, "metadata", path, query, b"", status, {"token_request": True})
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _log(self, method, host, path, query, raw, status, info) -> None:
        try:
            body = json.loads(raw) if raw.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            form = _flat_query(raw.decode("utf-8", "replace"))
            if "assertion" in form:
                form["assertion"] = "<jwt>"
            body = form
        token = bool(info.get("token_request"))
        mutating = method != "GET" and not token and info.get("method_id") not in READ_ONLY_POSTS
        self.sandbox.log({
            "ts": now_rfc3339(), "method": method, "host": host or f"127.0.0.1:{self.server.server_address[1]}",
            "path": path, "query": query, "body": body, "status": status, "mutating": mutating,
            "method_id": info.get("method_id"),
        })

    def _send_json(self, status: int, body: Any) -> None:
        if status == 204 or body is None:
            self.send_response(status if status != 200 else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps(body, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Vary", "Origin, X-Origin, Referer")
        self.end_headers()
        self.wfile.write(data)

    def _send_raw(self, status: int, data: bytes, ctype: str, close: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    # ---- admin -----------------------------------------------------------------------
    def _admin_authorized(self) -> bool:
        expected = self.sandbox.admin_token
        given = self.headers.get(ADMIN_TOKEN_HEADER)
        if not expected or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), expected.encode())

    def _admin(self, method: str, path: str, query: dict, raw: bytes) -> None:
        sb = self.sandbox
        route = path[len("/_sandbox/"):].rstrip("/")
        if not (route == "health" and method == "GET") and not self._admin_authorized():
            self._send_json(403, {"error": (
                f"admin endpoint {method} {path} needs the sandbox's admin token in the {ADMIN_TOKEN_HEADER} "
                f"header; the token is in {sb.state_dir / ADMIN_TOKEN_FILE} (mode 0600, readable by the "
                "user who runs the sandbox). `python -m gce_sandbox` and gce_sandbox.testing send it.")})
            return
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            self._send_json(400, {"error": "body must be JSON"})
            return
        try:
            if route == "health" and method == "GET":
                self._send_json(200, {"status": "ok", "project": sb.project, "pid": os.getpid(),
                                      "port": self.server.server_address[1]})
            elif route == "requests" and method == "GET":
                entries = sb.read_log()
                if "mutating" in query:
                    want = str(query["mutating"]).lower() == "true"
                    entries = [e for e in entries if e["mutating"] == want]
                self._send_json(200, {"requests": entries})
            elif route == "requests" and method == "DELETE":
                with sb.log_lock:
                    sb.log_path.write_text("")
                self._send_json(200, {})
            elif route == "faults" and method == "GET":
                with sb.lock:
                    self._send_json(200, {"faults": list(sb.faults.all())})
            elif route == "faults" and method == "POST":
                kind = body.pop("kind", None)
                with sb.lock:
                    fault = sb.faults.add(kind, body)
                    sb.save()
                self._send_json(200, fault)
            elif route == "faults" and method == "DELETE":
                with sb.lock:
                    sb.faults.clear()
                    sb.save()
                self._send_json(200, {})
            elif route == "quotas" and method == "POST":
                self._send_json(200, set_quota(sb.state, body.get("metric"), body.get("limit"), body.get("region"),
                                               sb.lock, sb.save))
            elif route == "state" and method == "GET":
                self._send_json(200, sb.admin_state())
            elif route == "preempt" and method == "POST":
                with sb.lock:
                    sb.compute.advance()
                    op = sb.compute.preempt(body.get("zone", ""), body.get("name", ""))
                    sb.save()
                self._send_json(200, op)
            elif route == "age" and method == "POST":
                # Moves one instance's timestamps into the past: a run-time limit or a stop that
                # long ago is then what GCE would make of it (compute/scheduling.py).
                with sb.lock:
                    sb.compute.advance()
                    inst = sb.compute.age_instance(body.get("zone", ""), body.get("name", ""), body.get("seconds"))
                    sb.save()
                self._send_json(200, inst)
            elif route == "timing" and method == "GET":
                self._send_json(200, sb.state.get("timing") or {})
            elif route == "timing" and method == "POST":
                with sb.lock:
                    sb.state["timing"] = timing_settings(body.get("profile", "instant"), body.get("scale"))
                    sb.save()
                self._send_json(200, sb.state["timing"])
            elif route == "reset" and method == "POST":
                sb.reset()
                self._send_json(200, {})
            else:
                self._send_json(404, {"error": f"no admin endpoint {method} {path}"})
        except ApiError as exc:
            self._send_json(exc.code, exc.body())


def set_quota(state: dict, metric: Any, limit: Any, region: Any, lock=None, save=None) -> dict:
    if not metric or limit is None:
        raise ApiError(400, "metric and limit are required", "badRequest")
    metric = str(metric).upper()
    limit = float(limit)
    if region:
        if region not in catalog.REGIONS:
            raise ApiError(400, f"Unknown region '{region}'", "badRequest")
        if metric not in catalog.DEFAULT_REGION_QUOTAS:
            raise ApiError(400, f"Unknown regional quota metric '{metric}'", "badRequest")
    elif metric not in catalog.DEFAULT_PROJECT_QUOTAS:
        raise ApiError(400, f"Unknown project-wide quota metric '{metric}' (regional metrics need a region)",
                       "badRequest")

    def apply() -> None:
        limits = state.setdefault("quota_limits", {"global": {}, "regions": {}})
        if region:
            limits.setdefault("regions", {}).setdefault(region, {})[metric] = limit
        else:
            limits.setdefault("global", {})[metric] = limit
        if save:
            save()

    if lock:
        with lock:
            apply()
    else:
        apply()
    return {"metric": metric, "limit": limit, "region": region}


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sandbox: Sandbox, port: int = 0):
        self.sandbox = sandbox
        super().__init__(("127.0.0.1", port), Handler)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def serve(state_dir: pathlib.Path, port: int = 0, project: str | None = None, vms: str | None = None,
          timing: dict | None = None) -> None:
    sandbox = Sandbox(state_dir, project, vms=vms, timing=timing)
    server = SandboxServer(sandbox, port)
    actual = server.server_address[1]
    write_client_files(sandbox.state_dir, actual, sandbox.project, sandbox.vms)
    watch_stop = threading.Event()
    if sandbox.backend is not None:
        sandbox.reconcile_vms()
        threading.Thread(target=sandbox.watch_guests, args=(watch_stop,), daemon=True).start()
    info = {"port": actual, "pid": os.getpid(), "project": sandbox.project, "url": f"http://127.0.0.1:{actual}",
            "started": now_rfc3339()}
    (sandbox.state_dir / "server.json").write_text(json.dumps(info, indent=1) + "\n")
    timing = sandbox.state["timing"]
    print(f"gce-sandbox serving project {sandbox.project} on http://127.0.0.1:{actual} "
          f"(state: {sandbox.state_dir}; operations: {timing['profile']}"
          f"{'' if timing.get('scale', 1.0) == 1.0 else ' x' + str(timing['scale'])})", flush=True)
    import signal

    def _stop(signum, frame):  # noqa: ARG001
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        watch_stop.set()
        server.server_close()
        if sandbox.backend is not None:
            # The sandbox's "cloud" pauses with it: containers stop, the next start boots them.
            sandbox.backend.stop_all()
        try:
            current = json.loads((sandbox.state_dir / "server.json").read_text())
            if current.get("pid") == os.getpid():
                (sandbox.state_dir / "server.json").unlink()
        except (OSError, ValueError):
            pass
