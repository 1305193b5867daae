"""The Kubernetes API basics shared by the simulated clusters: errors, the served resources, timestamps."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gkesim.fleet import Fleet

SEEDED_AT = -30 * 86400.0  # seeded objects were created a month before the simulation started


class KubeError(Exception):
    """An API error, rendered by the server as a `Status` object."""

    REASONS = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        405: "MethodNotAllowed",
        409: "AlreadyExists",
        422: "Invalid",
        500: "InternalError",
        503: "ServiceUnavailable",
        504: "Timeout",
    }

    def __init__(
        self, code: int, message: str, reason: str | None = None, details: dict | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or self.REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    group: str
    version: str
    namespaced: bool
    singular: str
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "watch")
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How error messages name the resource: `pods`, `daemonsets.apps`, `clusterroles.rbac.authorization.k8s.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def not_found(self, name: str) -> KubeError:
        return KubeError(
            404,
            f'{self.qualified} "{name}" not found',
            details={"name": name, "group": self.group, "kind": self.plural},
        )


RBAC = "rbac.authorization.k8s.io"
RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource("namespaces", "Namespace", "", "v1", False, "namespace", ("ns",)),
        Resource("nodes", "Node", "", "v1", False, "node", ("no",), ("get", "list", "watch")),
        Resource("pods", "Pod", "", "v1", True, "pod", ("po",), categories=("all",)),
        Resource("configmaps", "ConfigMap", "", "v1", True, "configmap", ("cm",)),
        Resource("serviceaccounts", "ServiceAccount", "", "v1", True, "serviceaccount", ("sa",)),
        Resource("daemonsets", "DaemonSet", "apps", "v1", True, "daemonset", ("ds",), categories=("all",)),
        Resource(
            "deployments", "Deployment", "apps", "v1", True, "deployment", ("deploy",), categories=("all",)
        ),
        Resource("clusterroles", "ClusterRole", RBAC, "v1", False, "clusterrole"),
        Resource("clusterrolebindings", "ClusterRoleBinding", RBAC, "v1", False, "clusterrolebinding"),
    )
}
STORED = (
    "namespaces",
    "pods",
    "configmaps",
    "serviceaccounts",
    "daemonsets",
    "deployments",
    "clusterroles",
    "clusterrolebindings",
)
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def timestamp(fleet: Fleet, sim_seconds: float, nanos: bool = False) -> str:
    when = dt.datetime.fromtimestamp(fleet.EPOCH + sim_seconds, dt.UTC)
    if nanos:
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond * 1000:09d}Z"
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=1 << 16)  # pure, and asked again for the same objects on every list
def _uid(*parts: object) -> str:
    return str(uuid.UUID(hashlib.md5("/".join(map(str, parts)).encode()).hexdigest(), version=4))


@functools.lru_cache(maxsize=1 << 16)
def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.sha1("/".join(map(str, parts)).encode()).digest()[:8], "big")
