"""Server-side printing: the `Table` objects kubectl shows for `get` (and `-o wide`)."""

from __future__ import annotations

from typing import Any

from gkesim.fleet import Fleet


def _age(fleet: Fleet, created: str | None) -> str:
    if not created:
        return "<unknown>"
    import datetime as dt

    then = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    seconds = int(fleet.EPOCH + fleet.now() - then)
    if seconds < 0:
        return "<invalid>"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "d" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _columns(resource: str) -> list[tuple]:
    """(name, type[, priority]) per column; priority 1 columns show with `-o wide`."""
    return {
        "nodes": [
            ("Name", "string"),
            ("Status", "string"),
            ("Roles", "string"),
            ("Age", "string"),
            ("Version", "string"),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        "pods": [
            ("Name", "string"),
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
            ("Age", "string"),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "namespaces": [("Name", "string"), ("Status", "string"), ("Age", "string")],
        "configmaps": [("Name", "string"), ("Data", "string"), ("Age", "string")],
        "serviceaccounts": [("Name", "string"), ("Secrets", "string"), ("Age", "string")],
        "daemonsets": [
            ("Name", "string"),
            ("Desired", "integer"),
            ("Current", "integer"),
            ("Ready", "integer"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
            ("Node Selector", "string"),
            ("Age", "string"),
        ],
        "deployments": [
            ("Name", "string"),
            ("Ready", "string"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
            ("Age", "string"),
        ],
        "clusterroles": [("Name", "string"), ("Created At", "date")],
        "clusterrolebindings": [("Name", "string"), ("Role", "string"), ("Age", "string")],
    }[resource]


def _cells(fleet: Fleet, resource: str, obj: dict[str, Any]) -> list[Any]:
    meta, status, spec = obj["metadata"], obj.get("status") or {}, obj.get("spec") or {}
    age = _age(fleet, meta.get("creationTimestamp"))
    if resource == "nodes":
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        addresses = {a["type"]: a["address"] for a in status.get("addresses", [])}
        info = status.get("nodeInfo", {})
        return [
            meta["name"],
            "Ready" if ready else "NotReady",
            "<none>",
            age,
            info.get("kubeletVersion", ""),
            addresses.get("InternalIP", "<none>"),
            addresses.get("ExternalIP", "<none>"),
            info.get("osImage", ""),
            info.get("kernelVersion", ""),
            info.get("containerRuntimeVersion", ""),
        ]
    if resource == "pods":
        cs = status.get("containerStatuses") or []
        ready = sum(1 for c in cs if c.get("ready"))
        reason = status.get("phase", "Pending")
        for c in cs:
            waiting = (c.get("state") or {}).get("waiting")
            if waiting:
                reason = waiting.get("reason", reason)
        if reason == "Succeeded":
            reason = "Completed"
        return [
            meta["name"],
            f"{ready}/{len(spec.get('containers') or [])}",
            reason,
            "0",
            age,
            status.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>",
            "<none>",
            "<none>",
        ]
    if resource == "namespaces":
        return [meta["name"], status.get("phase", "Active"), age]
    if resource == "configmaps":
        return [meta["name"], len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), age]
    if resource == "serviceaccounts":
        return [meta["name"], len(obj.get("secrets") or []), age]
    if resource == "daemonsets":
        sel = (
            ",".join(
                f"{k}={v}"
                for k, v in ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector", {}).items()
            )
            or "<none>"
        )
        return [
            meta["name"],
            status.get("desiredNumberScheduled", 0),
            status.get("currentNumberScheduled", 0),
            status.get("numberReady", 0),
            status.get("updatedNumberScheduled", 0),
            status.get("numberAvailable", 0),
            sel,
            age,
        ]
    if resource == "deployments":
        return [
            meta["name"],
            f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0),
            age,
        ]
    if resource == "clusterroles":
        return [meta["name"], meta.get("creationTimestamp")]
    if resource == "clusterrolebindings":
        ref = obj.get("roleRef") or {}
        return [meta["name"], f"{ref.get('kind')}/{ref.get('name')}", age]
    return [meta["name"], age]


def _table(fleet: Fleet, res: Any, items: list[dict[str, Any]], rv: str) -> dict[str, Any]:
    columns = [
        {
            "name": c[0],
            "type": c[1],
            "format": "name" if c[0] == "Name" else "",
            "description": c[0],
            "priority": c[2] if len(c) > 2 else 0,
        }
        for c in _columns(res.plural)
    ]
    rows = [
        {
            "cells": _cells(fleet, res.plural, obj),
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            },
        }
        for obj in items
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": columns,
        "rows": rows,
    }
