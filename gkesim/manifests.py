"""Small builders of the manifests the seeded workloads are made of."""

from __future__ import annotations

from typing import Any

from gkesim.kubeapi import RBAC


def _container(name: str, image: str, **kw: Any) -> dict[str, Any]:
    c = {"name": name, "image": image}
    c.update(kw)
    return c


def _env(name: str, value: str | None = None, field_path: str | None = None) -> dict[str, Any]:
    if field_path:
        return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}
    return {"name": name, "value": value}


def _workload(
    kind: str,
    name: str,
    ns: str,
    labels: dict[str, str],
    pod_spec: dict[str, Any],
    replicas: int | None = None,
    annotations: dict | None = None,
) -> tuple[str, dict[str, Any]]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": dict(labels)},
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if annotations:
        spec["template"]["metadata"]["annotations"] = annotations
    if replicas is not None:
        spec["replicas"] = replicas
    resource = "daemonsets" if kind == "DaemonSet" else "deployments"
    return resource, {"metadata": {"name": name, "namespace": ns, "labels": dict(labels)}, "spec": spec}


def _cm(name: str, ns: str, data: dict[str, str], labels: dict | None = None) -> tuple[str, dict[str, Any]]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return "configmaps", {"metadata": meta, "data": data}


def _sa(name: str, ns: str) -> tuple[str, dict[str, Any]]:
    return "serviceaccounts", {"metadata": {"name": name, "namespace": ns}}


def _rbac(
    name: str, rules: list[dict], sa: str | None = None, ns: str | None = None
) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = [("clusterroles", {"metadata": {"name": name}, "rules": rules})]
    if sa:
        out.append(
            (
                "clusterrolebindings",
                {
                    "metadata": {"name": name},
                    "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                    "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
                },
            )
        )
    return out


_NODE_READ_RULES = [
    {
        "apiGroups": [""],
        "resources": ["nodes", "nodes/metrics", "nodes/stats", "nodes/proxy", "pods"],
        "verbs": ["get", "list", "watch"],
    }
]


def _with_config(pod_spec: dict[str, Any], configmap: str, mount: str) -> dict[str, Any]:
    pod_spec.setdefault("volumes", []).append({"name": "config", "configMap": {"name": configmap}})
    for c in pod_spec["containers"][:1]:
        c.setdefault("volumeMounts", []).append({"name": "config", "mountPath": mount, "readOnly": True})
    return pod_spec
