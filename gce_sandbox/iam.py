"""IAM v1 service accounts (projects.serviceAccounts create / get / list / delete) and the
read-modify-write rules every IAM policy shares (the project's, a bucket's).

Wordings, from public bug reports quoting raw bodies:
  - create twice -> 409 ALREADY_EXISTS "Service account ID already exists within project
    projects/P." (googleapis java-docs-samples #3605, Terraform reports)
  - get/delete of a missing account -> 404 NOT_FOUND "Not found; Gaia id not found for email X"
    (terraform-provider-google #9249)
  - a policy naming a missing account -> 400 INVALID_ARGUMENT "Service account X does not exist."
    (gcloud add-iam-policy-binding reports)
  - a project setIamPolicy with a stale etag -> 409 ABORTED "There were concurrent policy changes.
    Please retry the whole read-modify-write with exponential backoff. The request's ETag '...' did
    not match the current policy's ETag '...'." (pulumi-google-native #862, deploymentmanager #332)
The account-id rule (6-30 characters, `[a-z]([-a-z0-9]*[a-z0-9])`) is the API's documented one;
the 400's wording is the sandbox's (no raw body quoting it was found).
"""

from __future__ import annotations

import base64
import copy
import os
import re

from . import catalog
from .errors import ApiError

ACCOUNT_ID_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
EMAIL_DOMAIN = "iam.gserviceaccount.com"


def new_etag() -> str:
    return base64.b64encode(b"\x07\x05" + os.urandom(6)).decode()


def default_compute_account(project: str) -> str:
    return f"{catalog.project_number(project)}-compute@developer.gserviceaccount.com"


def concurrent_change(given: str, current: str) -> ApiError:
    return ApiError(409, "There were concurrent policy changes. Please retry the whole read-modify-write with "
                         f"exponential backoff. The request's ETag '{given}' did not match the current policy's "
                         f"ETag '{current}'.", "aborted", status="ABORTED")


class Iam:
    """The project's service accounts, kept in state['service_accounts'] by email."""

    def __init__(self, state: dict):
        self.state = state
        self.project = state["project"]
        self.accounts: dict = state.setdefault("service_accounts", {})

    def exists(self, email: str) -> bool:
        """Whether a VM or a policy may name this account: one of ours, the project's default
        compute account, or one of another project (the sandbox knows only its own)."""
        if email == default_compute_account(self.project):
            return True
        if email.endswith(f"@{self.project}.{EMAIL_DOMAIN}"):
            return email in self.accounts
        return True

    def check_members(self, bindings: list) -> None:
        for binding in bindings:
            for member in binding.get("members") or []:
                kind, _, email = str(member).partition(":")
                if kind == "serviceAccount" and not self.exists(email):
                    raise ApiError(400, f"Service account {email} does not exist.", "badRequest")

    # ---- requests ---------------------------------------------------------------------
    def handle(self, method_id: str, params: dict, body: dict | None) -> tuple[int, dict]:
        project = params.get("projectsId")
        if project not in (self.project, "-"):
            raise ApiError(403, f"Permission 'iam.serviceAccounts.{method_id.rsplit('.', 1)[-1]}' denied on "
                                f"resource (or it may not exist).", "forbidden")
        if method_id == "iam.projects.serviceAccounts.create":
            return 200, self.create(body or {})
        if method_id == "iam.projects.serviceAccounts.list":
            return 200, {"accounts": [copy.deepcopy(a) for _, a in sorted(self.accounts.items())]} \
                if self.accounts else {}
        account = self.find(params.get("serviceAccountsId", ""))
        if method_id == "iam.projects.serviceAccounts.get":
            return 200, copy.deepcopy(account)
        if method_id == "iam.projects.serviceAccounts.delete":
            del self.accounts[account["email"]]
            return 200, {}
        raise ApiError(501, f"Method {method_id} is not implemented by the sandbox.", "notImplemented")

    def create(self, body: dict) -> dict:
        account_id = body.get("accountId") or ""
        if not (6 <= len(account_id) <= 30 and ACCOUNT_ID_RE.match(account_id)):
            raise ApiError(400, f"Invalid value for field 'accountId': '{account_id}'. The account ID must be 6-30 "
                                "characters long and match the regular expression `[a-z]([-a-z0-9]*[a-z0-9])`.",
                           "badRequest")
        email = f"{account_id}@{self.project}.{EMAIL_DOMAIN}"
        if email in self.accounts:
            info = {"@type": "type.googleapis.com/google.rpc.ResourceInfo",
                    "resourceName": f"projects/{self.project}/serviceAccounts/{email}"}
            raise ApiError(409, f"Service account {account_id} already exists within project projects/{self.project}.",
                           "alreadyExists", details=[info])
        sa = body.get("serviceAccount") or {}
        unique_id = catalog.stable_id("serviceAccount", email)[:21].ljust(21, "0")
        record = {"name": f"projects/{self.project}/serviceAccounts/{email}", "projectId": self.project,
                  "uniqueId": unique_id, "email": email, "etag": "MDEwMjE5MjA=", "oauth2ClientId": unique_id}
        for key in ("displayName", "description"):
            if sa.get(key):
                record[key] = sa[key]
        self.accounts[email] = record
        return copy.deepcopy(record)

    def find(self, ident: str) -> dict:
        account = self.accounts.get(ident) or next(
            (a for a in self.accounts.values() if a["uniqueId"] == ident), None)
        if account is None:
            raise ApiError(404, f"Not found; Gaia id not found for email {ident}", "notFound")
        return account
