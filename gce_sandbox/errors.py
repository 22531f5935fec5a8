"""Google API error bodies, as the real services send them.

Shape of an error outside an operation (Compute v1, Service Usage, ...):

    {"error": {"code": 404, "message": "...",
               "errors": [{"message": "...", "domain": "global", "reason": "notFound"}],
               "status": "NOT_FOUND"}}

Compute's own wording, reproduced below where it is known from public bug reports and
client code (googleapis issues, Terraform/SkyPilot/roachprod test fixtures):
  - 404 "The resource 'projects/p/zones/z/instances/x' was not found" (reason notFound)
  - 409 "The resource 'projects/p/zones/z/instances/x' already exists" (reason alreadyExists)
  - 412 "Supplied fingerprint does not match current metadata fingerprint." (conditionNotMet)
  - 400 "Invalid value for field 'resource.x': 'v'. ..." (reason invalid)
"""

from __future__ import annotations

from typing import Any

STATUS_BY_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An HTTP error answered with Google's JSON error body."""

    def __init__(self, code: int, message: str, reason: str = "invalid",
                 domain: str = "global", status: str | None = None,
                 details: list[dict[str, Any]] | None = None,
                 extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.status = status or STATUS_BY_CODE.get(code, "UNKNOWN")
        self.details = details
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "domain": self.domain, "reason": self.reason}
        err.update(self.extra)
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "errors": [err],
            "status": self.status,
        }
        if self.details:
            body["details"] = self.details
        return {"error": body}


def not_found(resource_path: str) -> ApiError:
    return ApiError(404, f"The resource '{resource_path}' was not found", "notFound")


def already_exists(resource_path: str) -> ApiError:
    return ApiError(409, f"The resource '{resource_path}' already exists", "alreadyExists")


def invalid_field(field: str, value: Any, why: str) -> ApiError:
    """400 in Compute's "Invalid value for field" form."""
    return ApiError(400, f"Invalid value for field '{field}': '{_fmt(value)}'. {why}", "invalid")


def bad_request(message: str, reason: str = "badRequest") -> ApiError:
    return ApiError(400, message, reason)


def fingerprint_mismatch(what: str = "metadata") -> ApiError:
    # Wording from gcloud/Terraform reports of setMetadata/setLabels races.
    return ApiError(412, f"Supplied fingerprint does not match current {what} fingerprint.",
                    "conditionNotMet")


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def operation_error(code: str, message: str, error_details: list[dict] | None = None) -> dict:
    """One entry of Operation.error.errors."""
    entry: dict[str, Any] = {"code": code, "message": message}
    if error_details:
        entry["errorDetails"] = error_details
    return entry
