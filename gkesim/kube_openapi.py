"""The OpenAPI documents of the simulated Kubernetes API: v2 (JSON and protobuf) and the per-group v3 documents.

Both are built from what gkesim serves (`kubeapi.RESOURCES`): one path per collection and per object, with the
operations kubectl looks at, and the schemas of the served kinds. The schemas come from the `kubernetes` client
package's models (pydantic models generated from Kubernetes' own OpenAPI document, with its descriptions and
required fields), renamed to Kubernetes' definition names (`io.k8s.api.apps.v1.DaemonSet`, ...) and tagged with
`x-kubernetes-group-version-kind` like the real documents.

What kubectl does with them:
- `kubectl create`/`apply` ask whether the server validates fields itself: they look for the `fieldValidation`
  query parameter on the kind's PATCH operation (v3 first; kubectl 1.27/1.28 also parse the whole v2 document
  before anything else, and fall back to it). When found they send `fieldValidation=Strict` and skip client-side
  validation. gkesim accepts the parameter and validates what it simulates.
- `kubectl explain` reads the schemas (v3; `--output=plaintext-openapiv2` reads v2).

The PATCH operations list no `consumes`: kubectl would then take the strategic-merge-patch metadata from these
schemas, which do not carry Kubernetes' `x-kubernetes-patch-*` extensions; without it kubectl uses the metadata
compiled into it for the built-in kinds, as it should.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any

from kubernetes.client import models
from pydantic.json_schema import models_json_schema

from gkesim.kubeapi import RESOURCES, Resource

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_META_TYPES = {
    "LabelSelector",
    "LabelSelectorRequirement",
    "ListMeta",
    "ManagedFieldsEntry",
    "ObjectMeta",
    "OwnerReference",
    "ShardInfo",
}
_APPS = re.compile(r"^(DaemonSet|Deployment|ReplicaSet|StatefulSet|RollingUpdate)")
_RBAC = re.compile(r"^(AggregationRule|ClusterRole|PolicyRule|Role|Subject)")
_CLASS = re.compile(r"^(?P<group>[A-Z][a-z]+)?V1(?P<name>[A-Z]\w*)$")
_CLIENT_NOTE = re.compile(r"\n\s*Attributes:\n.*\Z", re.S)


def definition_name(class_name: str) -> str:
    """Kubernetes' definition name for a `kubernetes` client model (`V1DaemonSetSpec` -> `io.k8s.api.apps.v1.…`)."""
    m = _CLASS.match(class_name)
    if m is None:
        raise ValueError(f"not a v1 model: {class_name}")
    name, prefix = m["name"], m["group"]
    if name in _META_TYPES:
        return f"{META}.{name}"
    if prefix == "Rbac" or _RBAC.match(name):
        return f"io.k8s.api.rbac.v1.{name}"
    if _APPS.match(name):
        return f"io.k8s.api.apps.v1.{name}"
    return f"io.k8s.api.core.v1.{name}"


def _gvk(res: Resource, kind: str | None = None) -> dict[str, str]:
    return {"group": res.group, "kind": kind or res.kind, "version": res.version}


def _model(kind: str) -> Any:
    return getattr(models, f"V1{kind}")


def _convert(node: dict[str, Any], ref: str) -> dict[str, Any]:
    """One pydantic JSON Schema node as an OpenAPI schema (Optional unwrapped, `$defs` refs renamed)."""
    out: dict[str, Any] = {}
    if "$ref" in node:
        out["$ref"] = ref + definition_name(node["$ref"].rpartition("/")[2])
    elif "anyOf" in node:
        alts = [a for a in node["anyOf"] if a != {"type": "null"}]
        types = {a.get("type") for a in alts}
        if len(alts) == 1:
            out = _convert(alts[0], ref)
        elif types == {"integer", "string"}:
            out["$ref"] = ref + INT_OR_STRING
        elif types == {"string"}:  # ConfigMap.binaryData's values: base64 in JSON
            out.update(type="string", format="byte")
    else:
        kind = node.get("type")
        if kind == "array":
            out.update(type="array", items=_convert(node.get("items", {}), ref))
        elif kind == "object":
            out["type"] = "object"
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                out["additionalProperties"] = _convert(extra, ref)
        elif kind is not None:
            out["type"] = kind
            if "format" in node:
                out["format"] = node["format"]
    if node.get("description"):
        out["description"] = node["description"]
    return out


@functools.cache
def _schemas(ref: str) -> dict[str, dict[str, Any]]:
    """Every served kind, its list kind and all they reference, by Kubernetes definition name."""
    kinds = {(_model(res.kind), res) for res in RESOURCES.values()}
    lists = {(_model(f"{res.kind}List"), res) for res in RESOURCES.values()}
    gvks = {cls.__name__: _gvk(res) for cls, res in kinds}
    gvks |= {cls.__name__: _gvk(res, f"{res.kind}List") for cls, res in lists}
    _, top = models_json_schema(
        [(cls, "serialization") for cls, _ in sorted(kinds | lists, key=lambda c: c[0].__name__)],
        by_alias=True,
    )
    out: dict[str, dict[str, Any]] = {}
    for class_name, node in sorted(top["$defs"].items()):
        schema: dict[str, Any] = {
            "description": _CLIENT_NOTE.sub("", node.get("description", "")).strip(),
            "type": "object",
        }
        if node.get("required"):
            schema["required"] = sorted(node["required"])
        schema["properties"] = {
            name: _convert(prop, ref) for name, prop in node.get("properties", {}).items()
        }
        if class_name in gvks:
            schema["x-kubernetes-group-version-kind"] = [gvks[class_name]]
        out[definition_name(class_name)] = schema
    out[INT_OR_STRING] = {"type": "string", "format": "int-or-string"}
    return out


def kind_definition(res: Resource) -> str:
    return definition_name(f"V1{res.kind}")


# ----- paths -------------------------------------------------------------------------------------------------------

_QUERY_WRITE = ("dryRun", "fieldManager", "fieldValidation")
_QUERY_LIST = ("fieldSelector", "labelSelector", "resourceVersion", "timeoutSeconds", "watch")
_QUERY_TYPES = {"timeoutSeconds": "integer", "watch": "boolean"}


def operations(gv_path: str, group: str, version: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) for every served resource of one group/version, in a neutral form.

    An operation: `id`, `action` (`x-kubernetes-action`), `res`, `query` (query parameter names), `body` and
    `response` (the kind's or its list's definition name).
    """
    out: list[tuple[str, str, dict[str, Any]]] = []
    for res in RESOURCES.values():
        if res.group != group or res.version != version:
            continue
        base = (
            f"/{gv_path}/namespaces/{{namespace}}/{res.plural}"
            if res.namespaced
            else f"/{gv_path}/{res.plural}"
        )
        scope = "Namespaced" if res.namespaced else ""
        kind = kind_definition(res)
        ops = [
            (base, "get", {"id": f"list{scope}{res.kind}", "action": "list", "query": _QUERY_LIST}),
            (base, "post", {"id": f"create{scope}{res.kind}", "action": "post", "query": _QUERY_WRITE}),
            (base + "/{name}", "get", {"id": f"read{scope}{res.kind}", "action": "get", "query": ()}),
            (base + "/{name}", "delete", {"id": f"delete{scope}{res.kind}", "action": "delete", "query": ()}),
            (
                base + "/{name}",
                "patch",
                {"id": f"patch{scope}{res.kind}", "action": "patch", "query": _QUERY_WRITE},
            ),
        ]
        for path, method, op in ops:
            op["res"] = res
            op["response"] = kind + ("List" if op["action"] == "list" else "")
            op["body"] = kind if method == "post" else None
            out.append((path, method, op))
    return out


def _path_params(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "type": "string", "uniqueItems": True}
        for name in re.findall(r"\{(\w+)\}", path)
    ]


def group_versions() -> list[tuple[str, str, str]]:
    """(path, group, version) of every served group/version: `("api/v1", "", "v1")`, `("apis/apps/v1", ...)`."""
    groups = sorted({(r.group, r.version) for r in RESOURCES.values() if r.group})
    return [("api/v1", "", "v1")] + [(f"apis/{g}/{v}", g, v) for g, v in groups]


def _v2_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for gv_path, group, version in group_versions():
        for path, method, op in operations(gv_path, group, version):
            item = paths.setdefault(path, {"parameters": _path_params(path)})
            params: list[dict[str, Any]] = []
            if op["body"]:
                schema = {"$ref": f"#/definitions/{op['body']}"}
                params.append({"name": "body", "in": "body", "required": True, "schema": schema})
            elif method == "patch":
                params.append({"name": "body", "in": "body", "required": True, "schema": {"type": "object"}})
            for name in op["query"]:
                params.append(
                    {
                        "name": name,
                        "in": "query",
                        "type": _QUERY_TYPES.get(name, "string"),
                        "uniqueItems": True,
                    }
                )
            code = {"post": "201", "delete": "200"}.get(method, "200")
            item[method] = {
                "description": f"{op['action']} {op['res'].kind}",
                "operationId": op["id"],
                "produces": ["application/json"],
                "schemes": ["https"],
                "tags": [gv_path.removeprefix("apis/").replace("/", "_").replace(".", "_")],
                "parameters": params,
                "responses": {
                    code: {"description": "OK", "schema": {"$ref": f"#/definitions/{op['response']}"}},
                    "401": {"description": "Unauthorized"},
                },
                "x-kubernetes-action": op["action"],
                "x-kubernetes-group-version-kind": _gvk(op["res"]),
            }
    return paths


@functools.cache
def swagger(version: str) -> dict[str, Any]:
    """The OpenAPI v2 document (`GET /openapi/v2`) of a cluster whose `gitVersion` is `version`."""
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": version},
        "paths": _v2_paths(),
        "definitions": _schemas("#/definitions/"),
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "type": "apiKey",
                "name": "authorization",
                "in": "header",
            }
        },
        "security": [{"BearerToken": []}],
    }


@functools.cache
def swagger_protobuf(version: str) -> bytes:
    """The same document as gnostic's `openapi.v2.Document`, serialized."""
    from gkesim.openapi_pb import document

    return document(swagger(version)).SerializeToString(deterministic=True)


# ----- v3 ----------------------------------------------------------------------------------------------------------


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rpartition("/")[2]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _closure(names: set[str], schemas: dict[str, dict[str, Any]]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_refs(schemas[name]) - seen)
    return seen


@functools.cache
def v3_document(gv_path: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group/version (`GET /openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`).

    Its paths are the v2 document's; its schemas are the group/version's kinds and everything they reference.
    Write operations list `fieldValidation`, which is what `kubectl create`/`apply` look for.
    """
    found = [(g, v) for p, g, v in group_versions() if p == gv_path]
    if not found:
        return None
    group, version = found[0]
    schemas = _schemas("#/components/schemas/")
    paths: dict[str, Any] = {}
    roots: set[str] = set()
    for path, method, op in operations(gv_path, group, version):
        item = paths.setdefault(
            path,
            {
                "parameters": [
                    {**p, "schema": {"type": "string", "uniqueItems": True}}
                    for p in (
                        {k: v for k, v in p.items() if k in ("name", "in", "required")}
                        for p in _path_params(path)
                    )
                ]
            },
        )
        response = {"$ref": f"#/components/schemas/{op['response']}"}
        operation: dict[str, Any] = {
            "description": f"{op['action']} {op['res'].kind}",
            "operationId": op["id"],
            "parameters": [
                {
                    "name": name,
                    "in": "query",
                    "schema": {"type": _QUERY_TYPES.get(name, "string"), "uniqueItems": True},
                }
                for name in op["query"]
            ],
            "responses": {
                "201" if method == "post" else "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": response}},
                },
                "401": {"description": "Unauthorized"},
            },
            "x-kubernetes-action": op["action"],
            "x-kubernetes-group-version-kind": _gvk(op["res"]),
        }
        if op["body"]:
            operation["requestBody"] = {
                "content": {"*/*": {"schema": {"$ref": f"#/components/schemas/{op['body']}"}}},
                "required": True,
            }
        item[method] = operation
        roots.add(op["response"])
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {
            "schemas": {name: schemas[name] for name in sorted(_closure(roots, schemas))},
            "securitySchemes": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        },
        "security": [{"BearerToken": []}],
    }


@functools.cache
def v3_hash(gv_path: str) -> str:
    """The `hash` query of the document's URL in the `/openapi/v3` index: a digest of its content, as served."""
    doc = json.dumps(v3_document(gv_path), sort_keys=True, separators=(",", ":"))
    return hashlib.sha512(doc.encode()).hexdigest().upper()
