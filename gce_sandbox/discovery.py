"""Routing and request validation driven by Google's own discovery documents.

The Compute v1 and Service Usage v1 discovery documents ship inside
google-api-python-client (googleapiclient/discovery_cache/documents/). They give every
method's HTTP verb, path template and request schema, so the sandbox routes exactly the
paths real clients call and refuses request bodies the real API refuses:

  - unknown field   -> 400 "Invalid JSON payload received. Unknown name \"x\" at
                       'instance_resource': Cannot find field."  (ESF/transcoder wording,
                       seen in googleapis issues for every REST API; the request message is
                       named <snake_case(schema)>_resource)
  - bad enum value  -> 400 "Invalid value at 'instance_resource.scheduling.on_host_maintenance'
                       (type.googleapis.com/google.cloud.compute.v1.Scheduling.OnHostMaintenance), \"X\""
  - wrong JSON type -> 400 "Invalid value at '...' (TYPE_STRING), 5"
"""

from __future__ import annotations

import functools
import json
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError


def documents_dir() -> pathlib.Path:
    try:
        import googleapiclient  # only for its shipped discovery documents
    except ImportError:
        raise SystemExit("gce_sandbox needs google-api-python-client (for the Compute discovery document it "
                         "ships): run it with the project's virtualenv, e.g. `.venv/bin/python -m gce_sandbox`, "
                         "or `pip install -r requirements.txt`.") from None

    return pathlib.Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


@functools.lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    with open(documents_dir() / f"{name}.json", encoding="utf-8") as fh:
        return json.load(fh)


@dataclass
class Route:
    method_id: str          # e.g. compute.instances.insert
    http_method: str
    regex: re.Pattern
    params: list[str]
    literal_len: int
    spec: dict[str, Any] = field(repr=False)
    named: tuple[re.Pattern, list[str]] | None = None   # the {+name} form of `path`, if different


def _template_to_regex(template: str) -> tuple[re.Pattern, list[str], int]:
    params: list[str] = []
    out = []
    pos = 0
    literal = 0
    for m in re.finditer(r"\{(\+?)([^}]+)\}", template):
        lit = template[pos:m.start()]
        literal += len(lit)
        out.append(re.escape(lit))
        params.append(m.group(2))
        out.append("(.+)" if m.group(1) else "([^/:]+)")
        pos = m.end()
    lit = template[pos:]
    literal += len(lit)
    out.append(re.escape(lit))
    return re.compile("^" + "".join(out) + "$"), params, literal


def _walk_methods(resources: dict[str, Any]):
    for res in resources.values():
        for spec in res.get("methods", {}).values():
            yield spec
        yield from _walk_methods(res.get("resources", {}))


class Api:
    """One discovery document: routes plus schema validation."""

    def __init__(self, name: str, proto_package: str):
        self.doc = load(name)
        self.schemas = self.doc["schemas"]
        self.proto_package = proto_package
        self.routes: list[Route] = []
        for spec in _walk_methods(self.doc.get("resources", {})):
            template = spec.get("flatPath") or spec["path"]
            regex, params, literal = _template_to_regex(template)
            named = None
            if spec.get("flatPath") and spec["flatPath"] != spec["path"]:
                nregex, nparams, _ = _template_to_regex(spec["path"])
                named = (nregex, nparams)
            self.routes.append(Route(spec["id"], spec["httpMethod"], regex, params, literal, spec, named))
        # Most literal text first, so ".../instances/{i}/start" beats ".../instances/{i}".
        self.routes.sort(key=lambda r: (-r.literal_len, -len(r.params)))

    def match(self, http_method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """path is relative to the API's servicePath (e.g. 'projects/p/zones/z/instances')."""
        path_matched = False
        for route in self.routes:
            m = route.regex.match(path)
            if not m:
                continue
            path_matched = True
            if route.http_method != http_method:
                continue
            params = dict(zip(route.params, m.groups(), strict=True))
            if route.named:
                nm = route.named[0].match(path)
                if nm:
                    params.update(zip(route.named[1], nm.groups(), strict=True))
            return route, params
        if path_matched:
            raise ApiError(405, f"Method {http_method} is not allowed on this resource.",
                           "httpMethodNotAllowed")
        return None

    # ---- validation -------------------------------------------------------------
    def validate_request(self, route: Route, body: Any) -> None:
        ref = (route.spec.get("request") or {}).get("$ref")
        if ref is None:
            return
        if body is None:
            body = {}
        root = _snake(ref) + "_resource"
        unknown: list[tuple[str, str]] = []
        self._validate(ref, body, root, unknown)
        if unknown:
            lines = [f"Unknown name \"{n}\" at '{at}': Cannot find field." for n, at in unknown]
            message = "Invalid JSON payload received. " + "\n".join(lines)
            raise ApiError(400, message, "invalid", details=[{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": f"{at}.{n}" if at else n, "description": f"Invalid JSON payload received. {line}"}
                    for (n, at), line in zip(unknown, lines, strict=True)],
            }])

    def _validate(self, schema_name: str, value: Any, at: str, unknown: list) -> None:
        schema = self.schemas[schema_name]
        self._check(schema, value, at, unknown, schema_name)

    def _check(self, schema: dict, value: Any, at: str, unknown: list, owner: str) -> None:
        if "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(value, dict):
                raise self._type_error(at, "TYPE_MESSAGE", value)
            self._check(self.schemas[ref], value, at, unknown, ref)
            return
        kind = schema.get("type")
        if kind == "object":
            if not isinstance(value, dict):
                raise self._type_error(at, "TYPE_MESSAGE", value)
            props = schema.get("properties")
            addl = schema.get("additionalProperties")
            for key, sub in value.items():
                if props is not None and key in props:
                    self._check(props[key], sub, f"{at}.{_snake(key)}", unknown, owner)
                elif addl is not None:
                    self._check(addl, sub, f"{at}[{key}]", unknown, owner)
                else:
                    unknown.append((key, at))
        elif kind == "array":
            if not isinstance(value, list):
                raise self._type_error(at, "TYPE_MESSAGE", value)
            for i, item in enumerate(value):
                self._check(schema.get("items", {}), item, f"{at}[{i}]", unknown, owner)
        elif kind == "string":
            fmt = schema.get("format")
            if fmt in ("int64", "uint64"):
                if isinstance(value, bool) or not (
                        isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value))):
                    raise self._type_error(at, "TYPE_INT64" if fmt == "int64" else "TYPE_UINT64", value)
                return
            if not isinstance(value, str):
                raise self._type_error(at, "TYPE_STRING", value)
            if "enum" in schema and value not in schema["enum"]:
                leaf = at.rsplit(".", 1)[-1]
                enum_name = "".join(p.capitalize() for p in leaf.split("_"))
                raise ApiError(
                    400,
                    f"Invalid value at '{at}' ({self.proto_package}.{owner}.{enum_name}), \"{value}\"",
                    "invalid")
        elif kind == "integer":
            if isinstance(value, bool) or not (
                    isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value))):
                raise self._type_error(at, "TYPE_INT32", value)
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise self._type_error(at, "TYPE_DOUBLE", value)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise self._type_error(at, "TYPE_BOOL", value)
        # "any" and untyped schemas accept anything.

    @staticmethod
    def _type_error(at: str, proto_type: str, value: Any) -> ApiError:
        return ApiError(400, f"Invalid value at '{at}' ({proto_type}), {json.dumps(value)}", "invalid")


def _snake(name: str) -> str:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


@functools.lru_cache(maxsize=None)
def compute() -> Api:
    return Api("compute.v1", "type.googleapis.com/google.cloud.compute.v1")


@functools.lru_cache(maxsize=None)
def serviceusage() -> Api:
    return Api("serviceusage.v1", "type.googleapis.com/google.api.serviceusage.v1")


@functools.lru_cache(maxsize=None)
def iam() -> Api:
    return Api("iam.v1", "type.googleapis.com/google.iam.admin.v1")


@functools.lru_cache(maxsize=None)
def cloudresourcemanager(version: str) -> Api:
    return Api(f"cloudresourcemanager.{version}", f"type.googleapis.com/google.cloud.resourcemanager.{version}")


@functools.lru_cache(maxsize=None)
def storage() -> Api:
    return Api("storage.v1", "type.googleapis.com/google.storage.v1")
