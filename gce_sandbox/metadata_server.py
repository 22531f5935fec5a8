"""The part of a VM's metadata server that `auth_kind: machineaccount` needs.

google-auth's Compute Engine credentials (google.cloud's `machineaccount`) read the service
account and a token from http://$GCE_METADATA_HOST/computeMetadata/v1/ (default
metadata.google.internal). env.sh points GCE_METADATA_HOST at the sandbox, so that auth kind works
on the controller as it would on a GCE VM. As on GCE, every request needs the `Metadata-Flavor:
Google` header and every answer carries it (Google's "About VM metadata" page); the account is the
project's default compute service account, as on a VM created with `--service-account default`.
"""

from __future__ import annotations

import json
import os
import time

from . import catalog

PREFIX = "/computeMetadata/v1/"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def handle(state: dict, method: str, path: str, headers: dict) -> tuple[int, str, bytes]:
    """(status, content type, body) for a request under /computeMetadata/v1/."""
    if headers.get("metadata-flavor", "") != "Google":
        # The metadata server's own refusal: a 403 whose page names the missing header, as users
        # quote it from `curl http://metadata.google.internal/computeMetadata/v1/...` without -H.
        return 403, "text/html", (f"Your client does not have permission to get URL {path} from this server. "
                                  "Missing Metadata-Flavor:Google header.\n").encode()
    project = state["project"]
    number = catalog.project_number(project)
    email = f"{number}-compute@developer.gserviceaccount.com"
    rel = path[len(PREFIX):]
    text = {"project/project-id": project, "project/numeric-project-id": str(number),
            "universe/universe-domain": "googleapis.com", "instance/zone": f"projects/{number}/zones/us-central1-a"}
    if method == "GET" and rel in text:
        return 200, "application/text", text[rel].encode()
    parts = rel.rstrip("/").split("/")
    if len(parts) >= 3 and parts[:2] == ["instance", "service-accounts"] and parts[2] in ("default", email):
        what = parts[3] if len(parts) > 3 else ""
        if what == "" and method == "GET":
            info = {"aliases": ["default"], "email": email, "scopes": [SCOPE]}
            return 200, "application/json", json.dumps(info).encode()
        if what == "email" and method == "GET":
            return 200, "application/text", email.encode()
        if what == "token" and method in ("GET", "POST"):
            token = "ya29.sandbox-mds-" + os.urandom(24).hex()
            tokens = state.setdefault("issued_tokens", {})
            now = time.time()
            tokens[token] = now + 3600
            for t, until in list(tokens.items()):
                if until < now:
                    del tokens[t]
            return 200, "application/json", json.dumps(
                {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).encode()
    return 404, "text/html", f"The sandbox's metadata server has no {path}\n".encode()
