"""Cloud Storage JSON API v1, the bucket side only: buckets insert / get / list / delete and a
bucket's IAM policy (getIamPolicy, setIamPolicy). Objects are not served here: the data-pull tests
use fake-gcs-server, which has no IAM; any other storage method answers 501 saying so.

Wordings: a missing bucket is 404 "The specified bucket does not exist." (reason notFound); a
bucket name taken by this project is 409 "Your previous request to create the named bucket
succeeded and you already own it." (reason conflict); a setIamPolicy whose etag is not the
current one is refused 412 conditionNotMet. A bucket policy's etag encodes its metageneration
("CAE=", "CAI=", ...), and a new bucket's policy has the project-convenience legacy bindings.
"""

from __future__ import annotations

import base64
import copy
import re

from . import catalog
from .errors import ApiError
from .iam import Iam
from .resourcemanager import clean_bindings

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


def _etag(generation: int) -> str:
    out = bytearray(b"\x08")
    n = generation
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return base64.b64encode(bytes(out)).decode()


def no_such_bucket() -> ApiError:
    return ApiError(404, "The specified bucket does not exist.", "notFound")


class Storage:
    def __init__(self, state: dict, iam: Iam):
        self.state = state
        self.project = state["project"]
        self.number = catalog.project_number(self.project)
        self.iam = iam
        self.buckets: dict = state.setdefault("buckets", {})

    def handle(self, method_id: str, params: dict, query: dict, body: dict | None) -> tuple[int, dict]:
        if method_id == "storage.buckets.insert":
            return 200, self.insert(query.get("project"), body or {})
        if method_id == "storage.buckets.list":
            items = [self.public(b) for _, b in sorted(self.buckets.items())]
            return 200, {"kind": "storage#buckets", **({"items": items} if items else {})}
        bucket = self.buckets.get(params.get("bucket", ""))
        if bucket is None:
            raise no_such_bucket()
        if method_id == "storage.buckets.get":
            return 200, self.public(bucket)
        if method_id == "storage.buckets.delete":
            del self.buckets[bucket["name"]]
            return 204, None
        if method_id == "storage.buckets.getIamPolicy":
            return 200, self.policy(bucket)
        if method_id == "storage.buckets.setIamPolicy":
            return 200, self.set_policy(bucket, body or {})
        raise ApiError(501, f"Method {method_id} is not emulated by the sandbox (objects live in fake-gcs-server "
                            "in the tests).", "notImplemented")

    def insert(self, project: str | None, body: dict) -> dict:
        if project not in (self.project, self.number):
            raise ApiError(400, "Required parameter: project", "required")
        name = body.get("name") or ""
        if not BUCKET_RE.match(name) or ".." in name:
            raise ApiError(400, "Invalid bucket name: '%s'" % name, "invalid")
        if name in self.buckets:
            raise ApiError(409, "Your previous request to create the named bucket succeeded and you already own it.",
                           "conflict")
        p = self.project
        self.buckets[name] = {
            "name": name, "location": str(body.get("location") or "US").upper(), "metageneration": 1,
            "bindings": [
                {"role": "roles/storage.legacyBucketOwner", "members": [f"projectEditor:{p}", f"projectOwner:{p}"]},
                {"role": "roles/storage.legacyBucketReader", "members": [f"projectViewer:{p}"]}],
        }
        return self.public(self.buckets[name])

    def public(self, bucket: dict) -> dict:
        name = bucket["name"]
        return {"kind": "storage#bucket", "id": name, "name": name, "projectNumber": self.number,
                "location": bucket["location"], "metageneration": str(bucket["metageneration"]),
                "selfLink": f"https://www.googleapis.com/storage/v1/b/{name}", "etag": _etag(bucket["metageneration"]),
                "storageClass": "STANDARD"}

    def policy(self, bucket: dict) -> dict:
        return {"kind": "storage#policy", "resourceId": f"projects/_/buckets/{bucket['name']}", "version": 1,
                "etag": _etag(bucket["metageneration"]), "bindings": copy.deepcopy(bucket["bindings"])}

    def set_policy(self, bucket: dict, body: dict) -> dict:
        given = body.get("etag")
        if given and given != _etag(bucket["metageneration"]):
            raise ApiError(412, "Precondition Failed", "conditionNotMet")
        bindings = clean_bindings(body.get("bindings"))
        self.iam.check_members(bindings)
        bucket["bindings"] = bindings
        bucket["metageneration"] += 1
        return self.policy(bucket)
