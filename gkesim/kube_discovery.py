"""API discovery (/version, /api, /apis, resource lists) and the minimal OpenAPI v3 documents kubectl reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gkesim.fleet import SimCluster, version_tuple
from gkesim.kubeapi import RESOURCES

if TYPE_CHECKING:
    from gkesim.kube import KubeServer


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
                gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_OPENAPI_HASH}"}
                for gv in ["api/v1", *(f"apis/{g}/v1" for g in groups)]
            }
        }
    if segs[:2] == ["openapi", "v3"] and len(segs) >= 4:
        gv = "/".join(segs[2:])
        if gv == "api/v1" or (len(segs) == 5 and segs[2] == "apis" and segs[3] in groups and segs[4] == "v1"):
            return _openapi_v3(gv)
    if len(segs) == 3 and segs[0] == "apis" and segs[1] in groups and segs[2] == "v1":
        return _resource_list(segs[1], "v1")
    return None


_OPENAPI_HASH = "5E2F1A9C0D7B3E4F6A8B9C0D1E2F3A4B5C6D7E8F9A0B1C2D3E4F5A6B7C8D9E0F"


def _openapi_v3(gv: str) -> dict[str, Any]:
    """A minimal OpenAPI v3 document for one group/version.

    kubectl (create/apply) reads it only to learn whether the server validates fields itself: it looks for the
    `fieldValidation` query parameter on each kind's PATCH operation. When found, kubectl sends
    `fieldValidation=Strict` instead of validating client-side against the full schema (which it would have to
    download). gkesim accepts the parameter and validates what it simulates.
    """
    group, _, version = gv.removeprefix("apis/").rpartition("/") if gv.startswith("apis/") else ("", "", "v1")
    paths: dict[str, Any] = {}
    for res in RESOURCES.values():
        if res.group != group or res.version != version:
            continue
        base = f"/{gv}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"/{gv}/{res.plural}"
        gvk = {"group": group, "version": version, "kind": res.kind}
        params = [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        ]
        ok = {"200": {"description": "OK"}}
        paths[base] = {
            "post": {
                "operationId": f"create{res.kind}",
                "parameters": params,
                "responses": ok,
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": gvk,
            }
        }
        paths[base + "/{name}"] = {
            "get": {
                "operationId": f"read{res.kind}",
                "responses": ok,
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": gvk,
            },
            "patch": {
                "operationId": f"patch{res.kind}",
                "parameters": params,
                "responses": ok,
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            },
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }


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
