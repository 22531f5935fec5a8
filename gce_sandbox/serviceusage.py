"""Service Usage v1 (services get / enable / disable / batchGet / list, operations get) and
the SERVICE_DISABLED refusal every other API gives while its service is disabled.

SERVICE_DISABLED body: as the real APIs answer (403, reason accessNotConfigured, domain
usageLimits, message "Compute Engine API has not been used in project N before or it is
disabled. Enable it by visiting https://console.developers.google.com/apis/api/
compute.googleapis.com/overview?project=N then retry. ..." — quoted in Terraform, fog and
gcp-pcf-quickstart issues), plus the google.rpc.ErrorInfo detail with reason SERVICE_DISABLED
that current Google APIs add.
"""

from __future__ import annotations

import os
import re
import time

from . import catalog
from .errors import ApiError

TITLES = {
    "compute.googleapis.com": "Compute Engine API",
    "serviceusage.googleapis.com": "Service Usage API",
    "storage.googleapis.com": "Cloud Storage API",
    "storage-api.googleapis.com": "Google Cloud Storage JSON API",
    "logging.googleapis.com": "Cloud Logging API",
    "monitoring.googleapis.com": "Cloud Monitoring API",
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
    "iap.googleapis.com": "Cloud Identity-Aware Proxy API",
    "oslogin.googleapis.com": "Cloud OS Login API",
    "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
    "cloudquotas.googleapis.com": "Cloud Quotas API",
    "notebooks.googleapis.com": "Notebooks API",
}

# A new project has a handful of services on; Compute Engine is not one of them.
DEFAULT_ENABLED = ["serviceusage.googleapis.com", "storage.googleapis.com", "storage-api.googleapis.com",
                   "logging.googleapis.com", "monitoring.googleapis.com", "cloudquotas.googleapis.com"]

SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*\.googleapis\.com$")

# Which service guards which API host.
HOST_SERVICE = {
    "compute.googleapis.com": "compute.googleapis.com",
    "www.googleapis.com": "compute.googleapis.com",      # only /compute/ paths are served there
    "cloudquotas.googleapis.com": "cloudquotas.googleapis.com",
}


class ServiceUsage:
    def __init__(self, state: dict):
        self.state = state
        self.project = state["project"]
        self.number = catalog.project_number(self.project)
        services = state.setdefault("services", {})
        for name in DEFAULT_ENABLED:
            services.setdefault(name, "ENABLED")
        services.setdefault("compute.googleapis.com", "DISABLED")

    def enabled(self, service: str) -> bool:
        return self.state["services"].get(service) == "ENABLED"

    def require(self, service: str) -> None:
        if self.enabled(service):
            return
        title = TITLES.get(service, service)
        url = f"https://console.developers.google.com/apis/api/{service}/overview?project={self.number}"
        message = (f"{title} has not been used in project {self.number} before or it is disabled. "
                   f"Enable it by visiting {url} then retry. If you enabled this API recently, wait a few "
                   "minutes for the action to propagate to our systems and retry.")
        raise ApiError(403, message, "accessNotConfigured", "usageLimits",
                       extra={"extendedHelp": "https://console.developers.google.com"},
                       details=[
                           {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                            "domain": "googleapis.com",
                            "metadata": {"service": service, "consumer": f"projects/{self.number}",
                                         "serviceTitle": title, "activationUrl": url,
                                         "containerInfo": self.number}},
                           {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                            "message": message},
                           {"@type": "type.googleapis.com/google.rpc.Help",
                            "links": [{"description": "Google developers console API activation", "url": url}]},
                       ])

    # ---- resources ------------------------------------------------------------------
    def _check_parent(self, parent: str) -> None:
        m = re.match(r"^projects/([^/]+)$", parent)
        if not m or m.group(1) not in (self.project, self.number):
            raise ApiError(403, f"Permission denied to get service [{parent}]", "forbidden")

    def service(self, name: str) -> dict:
        title = TITLES.get(name, name.split(".")[0].capitalize() + " API")
        return {
            "name": f"projects/{self.number}/services/{name}",
            "config": {"name": name, "title": title, "documentation": {}, "quota": {},
                       "authentication": {}, "usage": {"requirements": []}, "monitoredResources": [],
                       "monitoring": {}},
            "state": self.state["services"].get(name, "DISABLED"),
            "parent": f"projects/{self.number}",
        }

    def _check_name(self, name: str) -> None:
        if not SERVICE_RE.match(name):
            # Service Usage: 400 "Invalid service name ..." for malformed names.
            raise ApiError(400, f"Invalid service name: {name}", "badRequest")

    def _operation(self, service_name: str, enable: bool) -> dict:
        current = self.state["services"].get(service_name, "DISABLED")
        target = "ENABLED" if enable else "DISABLED"
        rtype = "EnableServiceResponse" if enable else "DisableServiceResponse"
        if current == target:
            # What Service Usage answers for a no-op: a finished pseudo operation.
            return {"name": "operations/noop.DONE_OPERATION", "done": True,
                    "response": {"@type": f"type.googleapis.com/google.api.serviceusage.v1.{rtype}",
                                 "service": self.service(service_name)}}
        name = f"operations/acf.p2-{self.number}-{os.urandom(16).hex()[:8]}-{os.urandom(4).hex()}-" \
               f"{os.urandom(4).hex()}"
        ops = self.state.setdefault("serviceusage_operations", {})
        ops[name] = {"service": service_name, "target": target, "ready_at": time.time(), "rtype": rtype,
                     "polled": False}
        return {"name": name, "metadata": {
            "@type": "type.googleapis.com/google.protobuf.Empty"}}

    def get_operation(self, name: str) -> dict:
        ops = self.state.setdefault("serviceusage_operations", {})
        op = ops.get(name)
        if op is None:
            if name == "operations/noop.DONE_OPERATION":
                return {"name": name, "done": True}
            raise ApiError(404, f"Operation '{name}' not found.", "notFound")
        # The state change lands when the operation is first observed done.
        if time.time() >= op["ready_at"]:
            self.state["services"][op["service"]] = op["target"]
            return {"name": name, "done": True, "metadata": {
                "@type": "type.googleapis.com/google.api.serviceusage.v1.OperationMetadata",
                "resourceNames": [f"services/{op['service']}/projectSettings/{self.number}"]},
                "response": {"@type": f"type.googleapis.com/google.api.serviceusage.v1.{op['rtype']}",
                             "service": self.service(op["service"])}}
        return {"name": name, "metadata": {"@type": "type.googleapis.com/google.protobuf.Empty"}}

    def advance(self) -> bool:
        """Finish enable/disable operations nobody polled (as the real service does)."""
        changed = False
        for op in list(self.state.get("serviceusage_operations", {}).values()):
            if time.time() >= op["ready_at"] + 2 and self.state["services"].get(op["service"]) != op["target"]:
                self.state["services"][op["service"]] = op["target"]
                changed = True
        return changed

    # ---- handlers, keyed by the discovery method id -------------------------------------
    def handle(self, method_id: str, params: dict, query: dict, body: dict | None) -> tuple[int, dict]:
        if method_id == "serviceusage.operations.get":
            return 200, self.get_operation(params["name"])
        if method_id == "serviceusage.services.batchGet":
            self._check_parent(params["parent"])
            names = query.get("names", [])
            if isinstance(names, str):
                names = [names]
            out = []
            for full in names:
                svc = full.rsplit("/", 1)[-1]
                self._check_name(svc)
                out.append(self.service(svc))
            return 200, {"services": out}
        if method_id == "serviceusage.services.list":
            self._check_parent(params["parent"])
            names = sorted(self.state["services"])
            if query.get("filter") == "state:ENABLED":
                names = [n for n in names if self.enabled(n)]
            elif query.get("filter") == "state:DISABLED":
                names = [n for n in names if not self.enabled(n)]
            return 200, {"services": [self.service(n) for n in names]}
        m = re.match(r"^(projects/[^/]+)/services/([^/]+)$", params.get("name", ""))
        if not m:
            raise ApiError(400, f"Invalid resource name: {params.get('name')}", "badRequest")
        self._check_parent(m.group(1))
        svc = m.group(2)
        self._check_name(svc)
        if method_id == "serviceusage.services.get":
            return 200, self.service(svc)
        if method_id == "serviceusage.services.enable":
            return 200, self._operation(svc, True)
        if method_id == "serviceusage.services.disable":
            return 200, self._operation(svc, False)
        raise ApiError(501, f"Method {method_id} is not implemented by the sandbox.", "notImplemented")
