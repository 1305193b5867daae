"""The seed's Autopilot probe: a DaemonSet that reads each node's kubelet /metrics on the secure port 10250.

Autopilot grants no nodes/proxy, so usage is read from inside: a ServiceAccount with only `get` on
`nodes/metrics`, a DaemonSet printing the kubelet_http_requests_total lines, and its pods' logs. Every object
carries a name unique to the run, and everything it creates, the cluster-scoped role and binding included, is
deleted when the probe ends, fails or is interrupted (`cleanup_all` covers threads cut short by a signal).
A run killed outright (SIGKILL) cannot clean up: the next probe of that cluster first deletes any probe objects
that no probe of the current process owns (`sweep_leftovers`), so two runs must not probe one cluster at once.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tasks.reporting import live
from tasks.usage.kube import _timeout
from tasks.usage.metrics import ProbeLog, parse_probe_log_lines

MANAGED_BY = {"app.kubernetes.io/managed-by": "portcullis", "app.kubernetes.io/name": "portcullis-probe"}
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "gke-", "gmp-", "portcullis-probe-")


def probe_objects(name: str, image: str, interval: int) -> dict[str, dict[str, Any]]:
    """The probe's five objects, as the seed's manifest with a unique name and a hardened pod."""
    labels = {**MANAGED_BY, "app": name}
    meta = {"name": name, "labels": labels}
    script = (
        'while true; do curl -s --cacert "${CA_CERT}" -H "Authorization: Bearer $(cat ${TOKEN_FILE})" '
        f'"https://${{NODE_ADDRESS}}:10250/metrics" | grep kubelet_http_requests_total; sleep {interval}; done'
    )
    return {
        "namespace": {"apiVersion": "v1", "kind": "Namespace", "metadata": meta},
        "cluster_role": {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta,
            "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}],
        },
        "binding": {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": name}],
        },
        "service_account": {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {**meta, "namespace": name},
        },
        "daemonset": {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {**meta, "namespace": name},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": name,
                        "automountServiceAccountToken": True,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65534,
                            "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "metrics-printer",
                                "image": image,
                                "command": ["sh", "-c"],
                                "args": [script],
                                "env": [
                                    {
                                        "name": "CA_CERT",
                                        "value": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                                    },
                                    {
                                        "name": "TOKEN_FILE",
                                        "value": "/var/run/secrets/kubernetes.io/serviceaccount/token",
                                    },
                                    {
                                        "name": "NODE_ADDRESS",
                                        "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}},
                                    },
                                ],
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "privileged": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "10Mi"},
                                    "limits": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "10Mi"},
                                },
                            }
                        ],
                    },
                },
            },
        },
    }


class ProbeError(Exception):
    pass


_active: dict[str, Probe] = {}
_active_lock = threading.Lock()
_creating_count = 0
PROBE_SELECTOR = "app.kubernetes.io/managed-by=portcullis,app.kubernetes.io/name=portcullis-probe"


class Probe:
    def __init__(self, api: k8s.ApiClient, cluster: str, image: str, interval: int, timeout: float) -> None:
        self.api = api
        self.cluster = cluster
        self.name = f"portcullis-probe-{secrets.token_hex(4)}"
        self.interval = interval
        self.timeout = timeout
        self.objects = probe_objects(self.name, image, interval)
        self.created: list[str] = []
        self.swept: list[str] = []  # probe objects a killed run left, deleted before this probe started

    # creation and deletion ------------------------------------------------------------------------------------

    def create(self) -> None:
        global _creating_count
        with _active_lock:
            live.check()  # no new probe once the run is interrupted
            _active[f"{self.cluster}/{self.name}"] = self
            _creating_count += 1
        try:
            self.swept = sweep_leftovers(self.api, self.timeout)
            self._create()
        finally:
            with _active_lock:
                _creating_count -= 1

    def _create(self) -> None:
        core, rbac, apps = (
            k8s.CoreV1Api(self.api),
            k8s.RbacAuthorizationV1Api(self.api),
            k8s.AppsV1Api(self.api),
        )
        o, t = self.objects, _timeout(self.timeout)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("namespace", lambda: core.create_namespace(o["namespace"], _request_timeout=t)),
            ("cluster_role", lambda: rbac.create_cluster_role(o["cluster_role"], _request_timeout=t)),
            ("binding", lambda: rbac.create_cluster_role_binding(o["binding"], _request_timeout=t)),
            (
                "service_account",
                lambda: core.create_namespaced_service_account(
                    self.name, o["service_account"], _request_timeout=t
                ),
            ),
            (
                "daemonset",
                lambda: apps.create_namespaced_daemon_set(self.name, o["daemonset"], _request_timeout=t),
            ),
        ]
        for key, create in steps:
            live.check()
            self.created.append(key)  # it may exist from here: a call that timed out may have created it
            try:
                create()
            except ApiException as exc:
                if exc.status < 500:  # refused: it does not exist
                    self.created.remove(key)
                raise

    def delete(self) -> list[str]:
        """Delete whatever was created, cluster-scoped objects included; return what could not be deleted."""
        core, rbac = k8s.CoreV1Api(self.api), k8s.RbacAuthorizationV1Api(self.api)
        t = _timeout(30.0)
        deleters = {
            "binding": lambda: rbac.delete_cluster_role_binding(self.name, _request_timeout=t),
            "cluster_role": lambda: rbac.delete_cluster_role(self.name, _request_timeout=t),
            "namespace": lambda: core.delete_namespace(
                self.name, _request_timeout=t
            ),  # takes its objects along
        }
        left = []
        for key in ("binding", "cluster_role", "namespace"):
            if key not in self.created:
                continue
            problem = None
            for _ in range(2):  # once more after a timeout or a server error: a busy API server recovers
                try:
                    deleters[key]()
                    problem = None
                    break
                except ApiException as exc:
                    problem = None if exc.status == 404 else f"HTTP {exc.status}"
                    if exc.status < 500:
                        break
                except Exception as exc:  # noqa: BLE001 - keep deleting the rest, report what stayed
                    problem = type(exc).__name__
            if problem:
                left.append(f"{key} {self.name}: {problem}")
        with _active_lock:
            _active.pop(f"{self.cluster}/{self.name}", None)
        return left

    # reading ----------------------------------------------------------------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        resp = k8s.CoreV1Api(self.api).list_namespaced_pod(
            self.name,
            label_selector=f"app={self.name}",
            _preload_content=False,
            _request_timeout=_timeout(30),
        )
        import json

        return json.loads(resp.data).get("items", [])

    def wait_running(self, expected: int, sleep: Callable[[float], None] = time.sleep) -> list[str]:
        """Wait until `expected` pods run; raise ProbeError naming how many never started."""
        deadline = time.monotonic() + self.timeout
        while True:
            pods = self.pods()
            running = [
                p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running"
            ]
            if len(running) >= expected:
                return running
            if time.monotonic() > deadline:
                raise ProbeError(
                    f"probe pods did not start: {len(running)} of {expected} running after "
                    f"{self.timeout:.0f}s (image pull, quota or admission?)"
                )
            sleep(min(2.0, self.timeout / 10))

    def read(self, pods: list[str]) -> ProbeLog:
        core = k8s.CoreV1Api(self.api)
        lines: list[str] = []
        for pod in pods:
            text = core.read_namespaced_pod_log(
                pod, self.name, container="metrics-printer", tail_lines=200, _request_timeout=_timeout(30)
            )
            lines.extend(f"[pod/{pod}/metrics-printer] {line}" for line in text.splitlines())
        return parse_probe_log_lines(lines)


def cleanup_all(wait_seconds: float = 10.0) -> list[str]:
    """Delete every probe still registered (a run interrupted mid-scan); return what could not be deleted.

    Call after `live.stopping` is set: creations already under way are given `wait_seconds` to return, so an
    object whose create call was in flight is deleted too.
    """
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        with _active_lock:
            if _creating_count == 0:
                break
        time.sleep(0.05)
    with _active_lock:
        probes = list(_active.values())
    left: list[str] = []
    for probe in probes:
        left.extend(probe.delete())
    return left


def sweep_leftovers(api: k8s.ApiClient, timeout: float) -> list[str]:
    """Delete probe objects no probe of this process owns (left by a killed run); return their names."""
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    t = _timeout(min(timeout, 30.0))
    with _active_lock:
        ours = {p.name for p in _active.values()}
    swept: list[str] = []
    kinds = (
        (rbac.list_cluster_role_binding, rbac.delete_cluster_role_binding),
        (rbac.list_cluster_role, rbac.delete_cluster_role),
        (core.list_namespace, core.delete_namespace),
    )
    for lister, deleter in kinds:
        try:  # best effort: a caller allowed to create probes but not to list them still gets its probe
            items = lister(label_selector=PROBE_SELECTOR, _request_timeout=t).items
        except Exception:  # noqa: BLE001
            continue
        for item in items:
            name = item.metadata.name
            if name in ours or not name.startswith("portcullis-probe-"):
                continue
            try:
                deleter(name, _request_timeout=t)
                swept.append(name)
            except Exception:  # noqa: BLE001 - the next probe tries again
                continue
    return sorted(set(swept))


def has_real_workload(pods: list[dict[str, Any]]) -> bool:
    """Is there at least one non-DaemonSet workload outside system namespaces? (the seed's precondition)"""
    for pod in pods:
        ns = pod.get("metadata", {}).get("namespace", "")
        if ns.startswith(SYSTEM_NAMESPACES):
            continue
        owners = pod.get("metadata", {}).get("ownerReferences") or []
        if not any(o.get("kind") == "DaemonSet" for o in owners):
            return True
    return False
