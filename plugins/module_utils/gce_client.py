# -*- coding: utf-8 -*-
# Small Compute Engine v1 REST client shared by this project's modules.
#
# Why not google.cloud's GcpSession: its updates are fire-and-forget (no wait on the
# operation, no retry, errors ignored). Lifecycle changes (stop, resize, start) must
# happen in order and fail loudly, so this client waits on every operation, retries
# throttling/5xx with capped exponential backoff and raises typed errors that carry
# GCE's own error codes (QUOTA_EXCEEDED, ZONE_RESOURCE_POOL_EXHAUSTED, ...).
#
# Stable API (other modules depend on it — extend, don't break):
#
#   auth_argument_spec()                 -> dict for AnsibleModule(argument_spec=...): project,
#                                           auth_kind, service_account_email/_file/_contents,
#                                           access_token, scopes, env_type (same names and
#                                           GCP_* env fallbacks as google.cloud).
#   GceClient.from_module(module)        -> client built from those params (fails the module
#                                           cleanly on missing libraries or bad credentials).
#   GceClient.from_params(params)        -> same without a module (raises GceError).
#   GceClient(project, session=..., base_url=..., max_retries=..., backoff_base=...,
#             backoff_cap=..., retry_budget=..., sleep=..., clock=...)
#   client.get(path, params=None)        -> dict (raises GceApiError on HTTP errors)
#   client.get_or_none(path)             -> dict or None on 404
#   client.post(path, body=None, params=None) -> dict (an Operation for mutating calls)
#   client.delete(path, params=None)     -> dict
#   client.list(path, params=None, items_key="items") -> list, every page
#   client.aggregated_list(resource, filter=None) -> list of items across zones
#   client.wait_for_operation(op, timeout=300) -> finished Operation dict;
#                                           GceOperationError if it finished with errors,
#                                           GceTimeoutError if not DONE in time.
#   client.call(method, path, body=None, timeout=300) -> request + wait when an Operation
#                                           comes back.
#   client.zone_path(zone, *parts) / region_path(...) / global_path(...) -> relative paths
#   instance_summary(instance)           -> the flat dict the modules return about one VM
#   label_filter(labels, name=None)      -> list filter for VMs carrying every label (and that name)
#   client.request_count, client.mutating_count, client.retry_count, client.requests_log
#
# Errors: GceApiError (an HTTP error answer), its subclass GceConnectionError (no answer at all:
# say "lost the connection", never "GCE refused"), GceOperationError, GceTimeoutError.
#
# Retries: 429, 500, 502, 503, 504, 403 rate-limit reasons and connection failures, with
# capped exponential backoff and jitter, bounded by max_retries (6) and retry_budget (120 s of
# sleep) per request; mutating requests carry one requestId across retries, so a retried insert
# whose first answer was lost gets the first call's operation back instead of a second VM.
#
# Paths may be relative to the base URL ("projects/p/zones/z/instances/vm") or absolute
# (selfLink); absolute Google URLs are re-rooted onto base_url so a selfLink from
# www.googleapis.com and compute.googleapis.com both work.
#
# Transport: google-auth's AuthorizedSession (a requests.Session), so HTTPS_PROXY and
# REQUESTS_CA_BUNDLE are honoured exactly like google.cloud's modules.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import email.utils
import json
import os
import random
import re
import time
import uuid

try:
    import requests
    HAS_REQUESTS = True
except ImportError:  # pragma: no cover - reported by from_params
    HAS_REQUESTS = False

try:
    import google.auth
    import google.auth.compute_engine
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2 import credentials as oauth2_credentials
    from google.oauth2 import service_account
    HAS_GOOGLE_AUTH = True
except ImportError:  # pragma: no cover - reported by from_params
    HAS_GOOGLE_AUTH = False

try:
    from ansible.module_utils.basic import env_fallback
except ImportError:  # pragma: no cover - only outside Ansible
    def env_fallback(*args, **_kwargs):
        for arg in args:
            if arg in os.environ:
                return os.environ[arg]
        raise LookupError("no env fallback")


COMPUTE_BASE_URL = "https://compute.googleapis.com/compute/v1"
DEFAULT_SCOPES = ["https://www.googleapis.com/auth/compute"]
RETRY_STATUSES = frozenset([429, 500, 502, 503, 504])
MUTATING_METHODS = frozenset(["POST", "PUT", "PATCH", "DELETE"])
USER_AGENT = "gpu-jupyter-gce-client/1"

# Both hosts Google uses in selfLinks / targetLinks for Compute v1.
_GOOGLE_URL_RE = re.compile(
    r"^https?://(?:compute|www)\.googleapis\.com/compute/(?:v1|beta)/(?P<path>.*)$")


class GceError(Exception):
    """Base class of every error this client raises."""


class GceApiError(GceError):
    """An HTTP error answered by the Compute API.

    status: HTTP status code; reason: the first error's `reason` (e.g. "notFound",
    "rateLimitExceeded", "resourceNotReady"); message: human text; errors: the raw
    `error.errors` list; method/url: the failed request.
    """

    def __init__(self, status, reason, message, errors=None, method=None, url=None):
        self.status = status
        self.reason = reason
        self.message = message
        self.errors = errors or []
        self.method = method
        self.url = url
        super(GceApiError, self).__init__(
            "GCE API %s %s -> HTTP %s %s: %s" % (method, url, status, reason, message))

    def to_dict(self):
        return dict(status=self.status, reason=self.reason, message=self.message,
                    errors=self.errors, method=self.method, url=self.url)


class GceConnectionError(GceApiError):
    """No HTTP answer at all (connection refused, reset or dropped, proxy gone, timeout), after
    every retry. status is None: GCE refused nothing, and whether a mutating request took effect
    is unknown (its requestId makes a rerun safe)."""

    def __init__(self, method, url, cause, attempts=1):
        self.cause = cause
        self.attempts = attempts
        message = ("no answer from the Compute API after %d attempt%s (%s): the connection failed, GCE refused "
                   "nothing; whether the request took effect is unknown until the next read"
                   % (attempts, "" if attempts == 1 else "s", cause))
        super(GceConnectionError, self).__init__(None, "connectionError", message, method=method, url=url)


class GceOperationError(GceError):
    """An Operation finished (DONE) with `error.errors`.

    codes: GCE error codes, e.g. ["QUOTA_EXCEEDED"]; errors: the raw list (each with
    code, message and sometimes errorDetails); operation: the whole Operation dict.
    """

    def __init__(self, operation):
        self.operation = operation
        self.errors = ((operation.get("error") or {}).get("errors")) or []
        self.codes = [e.get("code") for e in self.errors if e.get("code")]
        self.http_status = operation.get("httpErrorStatusCode")
        text = "; ".join("%s: %s" % (e.get("code"), e.get("message")) for e in self.errors)
        super(GceOperationError, self).__init__(
            "GCE operation %s (%s on %s) failed: %s" % (
                operation.get("name"), operation.get("operationType"),
                operation.get("targetLink"), text or operation.get("httpErrorMessage")))

    def to_dict(self):
        return dict(codes=self.codes, errors=self.errors, http_status=self.http_status,
                    operation=self.operation.get("name"),
                    operation_type=self.operation.get("operationType"),
                    target=self.operation.get("targetLink"))


class GceTimeoutError(GceError):
    """An Operation was not DONE within the timeout. operation: its last known state."""

    def __init__(self, operation, timeout):
        self.operation = operation
        self.timeout = timeout
        super(GceTimeoutError, self).__init__(
            "GCE operation %s (%s on %s) not done after %ss (status %s)" % (
                operation.get("name"), operation.get("operationType"),
                operation.get("targetLink"), timeout, operation.get("status")))

    def to_dict(self):
        return dict(operation=self.operation.get("name"), timeout=self.timeout,
                    status=self.operation.get("status"),
                    operation_type=self.operation.get("operationType"))


def auth_argument_spec():
    """Options a module takes to reach GCE; names/fallbacks match google.cloud's modules."""
    return dict(
        project=dict(type="str", fallback=(env_fallback, ["GCP_PROJECT"])),
        auth_kind=dict(type="str", required=True, fallback=(env_fallback, ["GCP_AUTH_KIND"]),
                       choices=["machineaccount", "serviceaccount", "accesstoken", "application"]),
        service_account_email=dict(type="str", fallback=(env_fallback, ["GCP_SERVICE_ACCOUNT_EMAIL"])),
        service_account_file=dict(type="path", fallback=(env_fallback, ["GCP_SERVICE_ACCOUNT_FILE"])),
        service_account_contents=dict(type="jsonarg", no_log=True,
                                      fallback=(env_fallback, ["GCP_SERVICE_ACCOUNT_CONTENTS"])),
        access_token=dict(type="str", no_log=True, fallback=(env_fallback, ["GCP_ACCESS_TOKEN"])),
        scopes=dict(type="list", elements="str", fallback=(env_fallback, ["GCP_SCOPES"])),
        env_type=dict(type="str", fallback=(env_fallback, ["GCP_ENV_TYPE"])),
    )


def credentials_from_params(params):
    """google-auth credentials for the auth options in `params` (see auth_argument_spec)."""
    if not HAS_GOOGLE_AUTH:
        raise GceError("The google-auth Python library is required (pip install google-auth)")
    kind = params.get("auth_kind")
    scopes = params.get("scopes") or DEFAULT_SCOPES
    if params.get("service_account_email") and kind != "machineaccount":
        raise GceError("service_account_email only works with auth_kind=machineaccount")
    if (params.get("service_account_file") or params.get("service_account_contents")) and kind != "serviceaccount":
        raise GceError("service_account_file/contents only work with auth_kind=serviceaccount")
    if params.get("access_token") and kind != "accesstoken":
        raise GceError("access_token requires auth_kind=accesstoken")

    if kind == "accesstoken":
        if not params.get("access_token"):
            raise GceError("auth_kind=accesstoken needs access_token (or GCP_ACCESS_TOKEN)")
        return oauth2_credentials.Credentials(params["access_token"], scopes=scopes)
    if kind == "serviceaccount":
        path = params.get("service_account_file")
        contents = params.get("service_account_contents")
        if path:
            path = os.path.realpath(os.path.expanduser(path))
            try:
                creds = service_account.Credentials.from_service_account_file(path)
            except (OSError, ValueError) as exc:
                raise GceError("Unable to read service_account_file %s: %s" % (path, exc)) from exc
        elif contents:
            info = contents
            if not isinstance(info, dict):
                try:
                    info = json.loads(contents)
                except ValueError as exc:
                    raise GceError("service_account_contents is not valid JSON: %s" % exc) from exc
            creds = service_account.Credentials.from_service_account_info(info)
        else:
            raise GceError("auth_kind=serviceaccount needs service_account_file or service_account_contents")
        return creds.with_scopes(scopes)
    if kind == "application":
        creds, _project = google.auth.default(scopes=scopes)
        return creds
    if kind == "machineaccount":
        return google.auth.compute_engine.Credentials(params.get("service_account_email") or "default")
    raise GceError("Unknown auth_kind %r" % (kind,))


def _parse_retry_after(value, now=None):
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, parsed.timestamp() - now)


def parse_error_response(status, text, method=None, url=None):
    """GceApiError from an HTTP error body (Google JSON error format, or anything else)."""
    reason, message, errors = None, None, []
    try:
        payload = json.loads(text) if text else {}
    except ValueError:
        payload = {}
    err = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(err, dict):
        message = err.get("message")
        errors = err.get("errors") or []
        if errors and isinstance(errors[0], dict):
            reason = errors[0].get("reason")
        reason = reason or err.get("status")
    elif isinstance(err, str):
        reason, message = err, (payload.get("error_description") or err)
    if message is None:
        message = (text or "").strip()[:500] or "HTTP %s" % status
    return GceApiError(status, reason, message, errors, method=method, url=url)


def resource_name(url_or_name):
    """Last path segment of a resource URL ('.../machineTypes/n1-standard-8' -> 'n1-standard-8')."""
    if not url_or_name:
        return url_or_name
    return str(url_or_name).rstrip("/").rsplit("/", 1)[-1]


def instance_summary(inst):
    """One VM as the modules return it (gce_preflight's `instance`, gce_instance_place's): the
    fields either of them, or a role after them, reads. Addresses are "" when the VM has none."""
    accelerators = inst.get("guestAccelerators") or []
    scheduling = inst.get("scheduling") or {}
    nat_ip, internal_ip = None, None
    for nic in inst.get("networkInterfaces") or []:
        internal_ip = internal_ip or nic.get("networkIP")
        for ac in nic.get("accessConfigs") or []:
            nat_ip = nat_ip or ac.get("natIP")
    return {
        "name": inst.get("name"),
        "zone": resource_name(inst.get("zone")),
        "status": inst.get("status"),
        "machine_type": resource_name(inst.get("machineType")),
        "gpu_type": resource_name(accelerators[0]["acceleratorType"]) if accelerators else "",
        "gpu_count": sum(int(a.get("acceleratorCount", 0)) for a in accelerators),
        # A legacy preemptible VM has no provisioningModel; it is a spot VM in all but name.
        "provisioning_model": scheduling.get("provisioningModel") or (
            "SPOT" if scheduling.get("preemptible") else "STANDARD"),
        "instance_termination_action": scheduling.get("instanceTerminationAction"),
        # A run-time cap: GCE applies instanceTerminationAction this long after each start.
        "max_run_seconds": run_limit_seconds(scheduling),
        "labels": inst.get("labels") or {},
        "external_ip": nat_ip or "",
        "internal_ip": internal_ip or "",
        "self_link": inst.get("selfLink"),
        "service_accounts": inst.get("serviceAccounts") or [],
        "resource_policies": inst.get("resourcePolicies") or [],
        "boot_disk_gb": next((int(d["diskSizeGb"]) for d in inst.get("disks") or []
                              if d.get("boot") and d.get("diskSizeGb")), None),
    }


def run_limit_seconds(scheduling):
    """scheduling.maxRunDuration in whole seconds; 0 when the VM has none."""
    duration = (scheduling or {}).get("maxRunDuration") or {}
    try:
        return int(duration.get("seconds") or 0)
    except (TypeError, ValueError):
        return 0


def label_filter(labels, name=None):
    """Compute API list filter for the VMs that carry every label in `labels` (and, given, are
    named `name`); None when there is nothing to filter on."""
    terms = ['labels.%s = "%s"' % (k, v) for k, v in sorted((labels or {}).items())]
    if name:
        terms.insert(0, 'name = "%s"' % name)
    return " AND ".join(terms) or None


class GceClient(object):
    """Compute Engine v1 client: retries, operation waits, typed errors, request counters."""

    def __init__(self, project, session=None, credentials=None, base_url=None,
                 max_retries=6, backoff_base=1.0, backoff_cap=32.0, retry_budget=120.0,
                 poll_interval=0.25, poll_interval_cap=5.0, request_timeout=60,
                 sleep=time.sleep, clock=time.monotonic, rand=random.random,
                 user_agent=USER_AGENT, use_request_id=True):
        if session is None:
            if not (HAS_REQUESTS and HAS_GOOGLE_AUTH):
                raise GceError("The requests and google-auth Python libraries are required")
            if credentials is None:
                raise GceError("GceClient needs credentials or a session")
            session = AuthorizedSession(credentials)
        self.project = project
        self.session = session
        self.base_url = (base_url or os.environ.get("GCE_CLIENT_BASE_URL") or COMPUTE_BASE_URL).rstrip("/")
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        # Upper bound on the total time spent sleeping between retries of ONE request.
        self.retry_budget = retry_budget
        self.poll_interval = poll_interval
        self.poll_interval_cap = poll_interval_cap
        self.request_timeout = request_timeout
        self.user_agent = user_agent
        # requestId makes a retried mutating call idempotent on GCE's side: the same id
        # within 60 minutes returns the first call's Operation instead of acting twice.
        self.use_request_id = use_request_id
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self.request_count = 0
        self.mutating_count = 0
        self.retry_count = 0
        self.requests_log = []

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_params(cls, params, **kwargs):
        """Client from auth params (auth_argument_spec names). Raises GceError."""
        creds = credentials_from_params(params)
        ua = USER_AGENT
        if params.get("env_type"):
            ua = "%s-%s" % (ua, params["env_type"])
        kwargs.setdefault("user_agent", ua)
        return cls(params.get("project"), credentials=creds, **kwargs)

    @classmethod
    def from_module(cls, module, **kwargs):
        """Client from an AnsibleModule whose spec includes auth_argument_spec()."""
        try:
            return cls.from_params(module.params, **kwargs)
        except GceError as exc:
            module.fail_json(msg=str(exc))

    # -- paths -------------------------------------------------------------------------
    def url(self, path):
        if path.startswith("http://") or path.startswith("https://"):
            match = _GOOGLE_URL_RE.match(path)
            if match:
                return "%s/%s" % (self.base_url, match.group("path"))
            return path
        return "%s/%s" % (self.base_url, path.lstrip("/"))

    def project_path(self, *parts):
        return "/".join(["projects", self.project] + [str(p) for p in parts])

    def zone_path(self, zone, *parts):
        return self.project_path("zones", resource_name(zone), *parts)

    def region_path(self, region, *parts):
        return self.project_path("regions", resource_name(region), *parts)

    def global_path(self, *parts):
        return self.project_path("global", *parts)

    # -- HTTP --------------------------------------------------------------------------
    def _backoff(self, attempt, retry_after):
        if retry_after is not None:
            return min(retry_after, self.backoff_cap)
        # "Equal jitter": uniform in [c/2, c] with c = min(cap, base * 2**attempt), so
        # parallel clients spread out but never retry at once.
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        return ceiling * (0.5 + 0.5 * self._rand())

    def request(self, method, path, body=None, params=None):
        """One API call with retries; returns the decoded JSON (or {}). Raises GceApiError."""
        method = method.upper()
        url = self.url(path)
        params = dict(params or {})
        if self.use_request_id and method in MUTATING_METHODS and "requestId" not in params \
                and "/operations/" not in url:
            params["requestId"] = str(uuid.uuid4())
        headers = {"User-Agent": self.user_agent}
        slept = 0.0
        attempt = 0
        while True:
            self.request_count += 1
            if method in MUTATING_METHODS:
                self.mutating_count += 1
            try:
                resp = self.session.request(method, url, params=params or None,
                                            json=body if body is not None else None,
                                            headers=headers, timeout=self.request_timeout)
            except requests.exceptions.RequestException as exc:
                status, retry_after, resp = None, None, None
                error = GceConnectionError(method, url, "%s: %s" % (type(exc).__name__, exc), attempt + 1)
            else:
                status = resp.status_code
                self.requests_log.append((method, url, status))
                if status < 400:
                    if not resp.content:
                        return {}
                    try:
                        return resp.json()
                    except ValueError:
                        return {"raw": resp.text}
                retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
                error = parse_error_response(status, resp.text, method=method, url=url)
            retryable = status is None or status in RETRY_STATUSES
            # GCE answers 403 rateLimitExceeded / userRateLimitExceeded for some throttling.
            if status == 403 and error.reason in ("rateLimitExceeded", "userRateLimitExceeded"):
                retryable = True
            if not retryable or attempt >= self.max_retries:
                raise error
            delay = self._backoff(attempt, retry_after)
            if slept + delay > self.retry_budget:
                raise error
            attempt += 1
            self.retry_count += 1
            slept += delay
            self._sleep(delay)

    def get(self, path, params=None):
        return self.request("GET", path, params=params)

    def get_or_none(self, path, params=None):
        try:
            return self.get(path, params=params)
        except GceApiError as exc:
            if exc.status == 404:
                return None
            raise

    def post(self, path, body=None, params=None):
        return self.request("POST", path, body=body, params=params)

    def delete(self, path, params=None):
        return self.request("DELETE", path, params=params)

    def list(self, path, params=None, items_key="items"):
        params = dict(params or {})
        items = []
        while True:
            page = self.get(path, params=params)
            items.extend(page.get(items_key) or [])
            token = page.get("nextPageToken")
            if not token:
                return items
            params["pageToken"] = token

    def aggregated_list(self, resource, filter=None):  # noqa: A002 - the API's own parameter name
        """Every `resource` (instances, disks, ...) in every zone/region of the project."""
        params = {"filter": filter} if filter else {}
        items = []
        path = self.project_path("aggregated", resource)
        while True:
            page = self.get(path, params=params)
            for scoped in (page.get("items") or {}).values():
                items.extend(scoped.get(resource) or [])
            token = page.get("nextPageToken")
            if not token:
                return items
            params["pageToken"] = token

    # -- operations --------------------------------------------------------------------
    def operation_path(self, op):
        if op.get("zone"):
            return self.zone_path(op["zone"], "operations", op["name"])
        if op.get("region"):
            return self.region_path(op["region"], "operations", op["name"])
        if op.get("name"):
            return self.global_path("operations", op["name"])
        if op.get("selfLink"):
            return op["selfLink"]
        raise GceError("Not an Operation: %r" % (op,))

    @staticmethod
    def is_operation(payload):
        return isinstance(payload, dict) and (
            payload.get("kind") == "compute#operation"
            or ("operationType" in payload and "status" in payload and "name" in payload))

    def wait_for_operation(self, op, timeout=300):
        """Poll the Operation until DONE. Raises GceOperationError / GceTimeoutError."""
        deadline = self._clock() + timeout
        interval = self.poll_interval
        path = self.operation_path(op)
        while op.get("status") != "DONE":
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise GceTimeoutError(op, timeout)
            self._sleep(min(interval, remaining))
            interval = min(self.poll_interval_cap, interval * 1.5)
            op = self.get(path)
        if op.get("error"):
            raise GceOperationError(op)
        return op

    def call(self, method, path, body=None, params=None, timeout=300):
        """Request, then wait when the answer is an Operation; returns the final payload."""
        result = self.request(method, path, body=body, params=params)
        if self.is_operation(result):
            return self.wait_for_operation(result, timeout=timeout)
        return result

    def counters(self):
        return dict(requests=self.request_count, mutating=self.mutating_count,
                    retries=self.retry_count)
