"""Python API for tests: run a sandbox in a subprocess and drive it.

    with SandboxProcess(tmp_path / "gce") as sb:
        env = dict(os.environ, **sb.env)        # point google.cloud / gcloud at it
        sb.add_fault("zone_exhausted", zone="us-central1-a", with_details=True,
                     zones_available=["us-central1-b"], count=1)
        ...
        assert not sb.requests(mutating=True)
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from .envfiles import ADMIN_TOKEN_HEADER, DEFAULT_PROJECT, read_admin_token

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SandboxError(RuntimeError):
    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}: {json.dumps(body)[:2000]}")
        self.status = status
        self.body = body


class SandboxProcess:
    """Starts `python -m gce_sandbox serve` on a free port; stops it (its own pid only) on exit."""

    def __init__(self, state_dir: pathlib.Path, project: str = DEFAULT_PROJECT, startup_timeout: float = 30,
                 vms: str = "none", timing: str = "instant", timing_scale: float = 1.0):
        self.state_dir = pathlib.Path(state_dir).resolve()
        self.project = project
        self.vms = vms   # "podman": every VM is a container, removed again by stop()
        # "realistic": operations stay RUNNING for seconds (x timing_scale), as on GCE.
        self.timing, self.timing_scale = timing, timing_scale
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.port = 0
        self.env: dict[str, str] = {}
        self.service_account_file = self.state_dir / "service-account.json"

    # ---- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> "SandboxProcess":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "server.json").unlink(missing_ok=True)
        env = dict(os.environ)
        pkg_root = str(pathlib.Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.state_dir / "server.log", "ab") as log:  # the server keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gce_sandbox", "serve", "--state-dir", str(self.state_dir), "--port", "0",
                 "--project", self.project, "--vms", self.vms, "--timing", self.timing,
                 "--timing-scale", str(self.timing_scale)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        deadline = time.time() + self.startup_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox exited with {self.proc.returncode}: "
                                   f"{(self.state_dir / 'server.log').read_text()[-3000:]}")
            try:
                info = json.loads((self.state_dir / "server.json").read_text())
            except (OSError, ValueError):
                info = None
            if info and info.get("pid") == self.proc.pid:
                self.port = int(info["port"])
                self.url = f"http://127.0.0.1:{self.port}"
                try:
                    self._admin("GET", "health")
                except OSError:
                    time.sleep(0.05)
                    continue
                self.env = json.loads((self.state_dir / "env.json").read_text())
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sandbox did not start within {self.startup_timeout}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self.vms == "podman":
            from .cli import purge_vms

            purge_vms(self.state_dir)

    # ---- HTTP ----------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with _OPENER.open(req, timeout=60) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    @property
    def shell_env(self) -> dict[str, str]:
        """What `. STATE/env.sh` exports (env.json also carries an accesstoken setup; see envfiles)."""
        out = {}
        for line in (self.state_dir / "env.sh").read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                out[key] = shlex.split(value)[0] if value else ""
        return out

    @property
    def admin_token(self) -> str | None:
        """The secret the admin endpoints want (STATE/admin-token, made by the server at its first start)."""
        return read_admin_token(self.state_dir)

    def _admin(self, method: str, name: str, body: Any = None) -> Any:
        token = self.admin_token
        headers = {ADMIN_TOKEN_HEADER: token} if token else {}
        status, out = self._call(method, "/_sandbox/" + name, body, headers)
        if status >= 400:
            raise SandboxError(status, out)
        return out

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """Plain-HTTP API call returning (status, body) without raising."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self._call(method, path, body, headers)

    def api(self, method: str, path: str, body: Any = None) -> dict:
        """Call the API directly (plain HTTP); raises SandboxError on an HTTP error."""
        status, out = self.call(method, path, body)
        if status >= 400:
            raise SandboxError(status, out)
        return out

    # ---- admin -----------------------------------------------------------------------------
    def requests(self, mutating: bool | None = None) -> list[dict]:
        entries = self._admin("GET", "requests")["requests"]
        if mutating is not None:
            entries = [e for e in entries if e["mutating"] == mutating]
        return entries

    def clear_requests(self) -> None:
        self._admin("DELETE", "requests")

    def add_fault(self, kind: str, **params: Any) -> None:
        self._admin("POST", "faults", dict(params, kind=kind))

    def faults(self) -> list[dict]:
        return self._admin("GET", "faults")["faults"]

    def clear_faults(self) -> None:
        self._admin("DELETE", "faults")

    def set_quota(self, metric: str, limit: float, region: str | None = None) -> None:
        self._admin("POST", "quotas", {"metric": metric, "limit": limit, "region": region})

    def preempt(self, zone: str, name: str) -> None:
        self._admin("POST", "preempt", {"zone": zone, "name": name})

    def age(self, zone: str, name: str, seconds: float) -> dict:
        """Move an instance's start/stop timestamps `seconds` into the past (a run-time limit that
        is reached is applied at once)."""
        return self._admin("POST", "age", {"zone": zone, "name": name, "seconds": seconds})

    def set_timing(self, profile: str, scale: float = 1.0) -> dict:
        """Change how long operations run until the next reset (which restores the start's timing)."""
        return self._admin("POST", "timing", {"profile": profile, "scale": scale})

    def state(self) -> dict:
        return self._admin("GET", "state")

    def reset(self) -> None:
        self._admin("POST", "reset")

    def enable_compute(self) -> None:
        """Shortcut for tests that are not about Service Usage."""
        self.enable_service("compute.googleapis.com")

    def enable_service(self, service: str) -> None:
        op = self.api("POST", f"/serviceusage/v1/projects/{self.project}/services/{service}:enable")
        if not op.get("done"):
            self.api("GET", f"/serviceusage/v1/{op['name']}")

    def vm_service_account(self, vm_name: str, roles: tuple = ("roles/logging.logWriter",
                                                                 "roles/monitoring.metricWriter")) -> str:
        """The VM's own service account as provisioning leaves it (roles/gce_vm/tasks/service_account.yml):
        IAM and Resource Manager APIs on, the account "<vm_name>-vm" marked as the project's, granted
        `roles` on the project. Returns its email."""
        for service in ("iam.googleapis.com", "cloudresourcemanager.googleapis.com"):
            self.enable_service(service)
        account = self.api("POST", f"/iam/v1/projects/{self.project}/serviceAccounts", {
            "accountId": f"{vm_name}-vm", "serviceAccount": {"displayName": f"gpu-jupyter VM {vm_name}"}})
        crm = f"/cloudresourcemanager/v1/projects/{self.project}"
        policy = self.api("POST", f"{crm}:getIamPolicy", {})
        bindings = policy.setdefault("bindings", [])
        for role in roles:
            bindings.append({"role": role, "members": [f"serviceAccount:{account['email']}"]})
        self.api("POST", f"{crm}:setIamPolicy", {"policy": policy})
        return account["email"]
