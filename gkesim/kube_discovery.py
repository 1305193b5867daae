"""API discovery (/version, /api, /apis, resource lists) and the OpenAPI documents kubectl reads (v2 and v3)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gkesim.fleet import SimCluster, version_tuple
from gkesim.kube_openapi import group_versions, swagger, swagger_protobuf, v3_document, v3_hash
from gkesim.kubeapi import RESOURCES, KubeError

if TYPE_CHECKING:
    from gkesim.kube import KubeServer


# kube-openapi's v2 handler: JSON, or gnostic's protobuf under either of its two media types (kubectl 1.27/1.28
# ask for the first); the answer names the second.
OPENAPI_V2_PB = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_V2_TYPES = {
    "application/json": "application/json",
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf": OPENAPI_V2_PB,
    OPENAPI_V2_PB: OPENAPI_V2_PB,
}


def openapi_v2(cluster: SimCluster, segs: list[str], accept: str) -> tuple[bytes, str] | None:
    """`GET /openapi/v2`: (body, content type) in the first acceptable form, or None for any other path.

    Accept clauses are taken in order of their q values, then as written; `*/*`, `application/*` and no Accept
    header at all get JSON. Nothing acceptable: 406, as kube-openapi answers.
    """
    if segs != ["openapi", "v2"]:
        return None
    clauses: list[tuple[float, int, str]] = []
    for i, clause in enumerate(c.strip() for c in (accept or "*/*").split(",")):
        media, *params = (p.strip() for p in clause.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media and q > 0:
            clauses.append((-q, i, media.lower()))
    version = f"v{cluster.msg.current_master_version}"
    for _, _, media in sorted(clauses):
        if media in ("*/*", "application/*"):
            media = "application/json"
        if media not in _V2_TYPES:
            continue
        if media == "application/json":
            return json.dumps(swagger(version), separators=(",", ":")).encode(), "application/json"
        return swagger_protobuf(version), _V2_TYPES[media]
    raise KubeError(406, f"none of the media types in {accept!r} is served for /openapi/v2", "NotAcceptable")


def _discovery(cluster: SimCluster, segs: list[str], kube: KubeServer) -> dict[str, Any] | None:
    path = "/".join(segs)
    if path == "version":
        version = cluster.msg.current_master_version
        parsed = version_tuple(version) or (1, 30, 0, 0)
        return {
            "major": str(parsed[0]),
            "minor": str(parsed[1]),
            "gitVersion": f"v{version}",
            "gitCommit": "3d0e8f1b4ac2f2a9b3e6c7d5e4f3a2b1c0d9e8f7",
            "gitTreeState": "clean",
            "buildDate": "2024-10-01T09:21:43Z",
            "goVersion": "go1.22.6 X:boringcrypto",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    if path == "api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{kube.host}:{kube.port}"}
            ],
        }
    groups = sorted({r.group for r in RESOURCES.values() if r.group})
    if path == "apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in groups]}
    if len(segs) == 2 and segs[0] == "apis" and segs[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(segs[1])}
    if path == "api/v1":
        return _resource_list("", "v1")
    if path == "openapi/v3":
        return {
            "paths": {
                gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={v3_hash(gv)}"}
                for gv, _, _ in group_versions()
            }
        }
    if segs[:2] == ["openapi", "v3"] and len(segs) >= 4:
        return v3_document("/".join(segs[2:]))
    if len(segs) == 3 and segs[0] == "apis" and segs[1] in groups and segs[2] == "v1":
        return _resource_list(segs[1], "v1")
    return None


def _group(name: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def _resource_list(group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for res in RESOURCES.values():
        if res.group != group:
            continue
        entry: dict[str, Any] = {
            "name": res.plural,
            "singularName": res.singular,
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": list(res.verbs),
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.categories:
            entry["categories"] = list(res.categories)
        resources.append(entry)
        if res.plural == "nodes":
            resources.append(
                {
                    "name": "nodes/proxy",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "NodeProxyOptions",
                    "verbs": ["get"],
                }
            )
        if res.plural == "pods":
            resources.append(
                {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]}
            )
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
