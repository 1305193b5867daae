"""The Kubernetes objects of each simulated cluster, and the workloads a fleet's clusters run.

One `KubeStore` per cluster (attached as `SimCluster.kube`). Stored objects are kept as their JSON bodies; what the
cluster's controllers would make is derived on every read from the fleet's current state, never from a background
thread: a DaemonSet's pods (one per current node, Pending until `timings.probe_pod_start` simulated seconds after
the DaemonSet or the node appeared, then Running), a Deployment's pods, kube-proxy mirror pods, and every
namespace's `default` ServiceAccount and `kube-root-ca.crt` ConfigMap. Node recreation therefore moves pods onto the
new nodes by itself.

Seeding: kube-system, each agent of `ClusterSpec.agents` configured to read the kubelet's read-only port the way
that agent really is configured, and clean workloads that never mention it. All access holds `fleet.lock`.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gkesim.kubelet import family_lines, readwrite_counts, short_hash

if TYPE_CHECKING:
    from gkesim.fleet import Fleet, SimCluster, SimNode

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


def _uid(*parts: object) -> str:
    return str(uuid.UUID(hashlib.md5("/".join(map(str, parts)).encode()).hexdigest(), version=4))


def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.sha1("/".join(map(str, parts)).encode()).digest()[:8], "big")


# ----- selectors ----------------------------------------------------------------------------------------------

_SEL_RE = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<nkey>[^\s,=!()]+)"
    r"|(?P<key>[^\s,=!()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<val>[^\s,=!()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?)\s*(?:,|$)"
)


def parse_label_selector(text: str | None) -> list[tuple[str, str, Any]]:
    """`a=b,c!=d,e,!f,g in (x,y),h notin (z)` -> requirements; raises KubeError 400 when malformed."""
    reqs: list[tuple[str, str, Any]] = []
    if not text:
        return reqs
    pos = 0
    while pos < len(text):
        m = _SEL_RE.match(text, pos)
        if not m or m.end() == pos:
            raise KubeError(400, f"unable to parse requirement: found '{text[pos:]}', expected: identifier")
        pos = m.end()
        if m.group("nkey"):
            reqs.append((m.group("nkey"), "!", None))
        elif m.group("op"):
            op = "!=" if m.group("op") == "!=" else "="
            reqs.append((m.group("key"), op, m.group("val")))
        elif m.group("setop"):
            values = {v.strip() for v in m.group("set").split(",") if v.strip()}
            reqs.append((m.group("key"), m.group("setop"), values))
        else:
            reqs.append((m.group("key"), "exists", None))
    return reqs


def labels_match(labels: dict[str, str], reqs: list[tuple[str, str, Any]]) -> bool:
    for key, op, val in reqs:
        have = labels.get(key)
        if (
            (op == "=" and have != val)
            or (op == "!=" and have == val)
            or (op == "exists" and key not in labels)
            or (op == "!" and key in labels)
            or (op == "in" and have not in val)
            or (op == "notin" and have in val)
        ):
            return False
    return True


FIELD_SELECTORS = {
    "pods": (
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "nodes": ("metadata.name", "spec.unschedulable"),
}


def parse_field_selector(resource: str, text: str | None) -> list[tuple[str, str, str]]:
    reqs: list[tuple[str, str, str]] = []
    allowed = FIELD_SELECTORS.get(resource, ("metadata.name", "metadata.namespace"))
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise KubeError(400, f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, val = m.group(1).strip(), m.group(2), m.group(3).strip()
        if key not in allowed:
            raise KubeError(400, f"field label not supported: {key}")
        reqs.append((key, "!=" if op == "!=" else "=", val))
    return reqs


def field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def fields_match(obj: dict[str, Any], reqs: list[tuple[str, str, str]]) -> bool:
    return all((field_value(obj, k) == v) == (op == "=") for k, op, v in reqs)


# ----- nodes --------------------------------------------------------------------------------------------------


def node_zone(cluster: SimCluster, node: SimNode) -> str:
    loc = cluster.location
    if re.search(r"-[a-z]$", loc):
        return loc
    return f"{loc}-{'abcf'[_h(node.name) % 3]}"


def node_ip(cluster: SimCluster, node: SimNode) -> str:
    h = _h(cluster.path, node.name)
    return f"10.{128 + (h >> 40) % 64}.{(h >> 8) % 256}.{2 + h % 250}"


def pod_ip(cluster: SimCluster, node: SimNode, name: str) -> str:
    h = _h(cluster.path, node.name)
    return f"10.{4 + (h >> 40) % 60}.{(h >> 8) % 256}.{2 + _h(name) % 250}"


def node_object(fleet: Fleet, cluster: SimCluster, node: SimNode) -> dict[str, Any]:
    zone = node_zone(cluster, node)
    version = cluster.msg.current_master_version
    for pool in cluster.msg.node_pools:
        if pool.name == node.pool:
            version = pool.version or version
    created = timestamp(fleet, node.booted_at)
    ready_at = timestamp(fleet, node.booted_at + 40)
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": "e2-standard-4",
        "beta.kubernetes.io/os": "linux",
        "cloud.google.com/gke-boot-disk": "pd-balanced",
        "cloud.google.com/gke-container-runtime": "containerd",
        "cloud.google.com/gke-nodepool": node.pool,
        "cloud.google.com/gke-os-distribution": "cos",
        "cloud.google.com/machine-family": "e2",
        "cloud.google.com/private-node": "false",
        "failure-domain.beta.kubernetes.io/region": zone.rsplit("-", 1)[0],
        "failure-domain.beta.kubernetes.io/zone": zone,
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "e2-standard-4",
        "topology.gke.io/zone": zone,
        "topology.kubernetes.io/region": zone.rsplit("-", 1)[0],
        "topology.kubernetes.io/zone": zone,
    }
    if cluster.autopilot:
        labels["cloud.google.com/gke-provisioning"] = "standard"
        labels["cloud.google.com/compute-class"] = "autopilot"
    conditions = [
        {
            "type": t,
            "status": "False",
            "lastHeartbeatTime": ready_at,
            "lastTransitionTime": created,
            "reason": r,
            "message": m,
        }
        for t, r, m in (
            ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        )
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "lastHeartbeatTime": ready_at,
            "lastTransitionTime": ready_at,
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status. AppArmor enabled",
        }
    )
    ip = node_ip(cluster, node)
    h = _h(cluster.path, node.name)
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": node.name,
            "uid": _uid(cluster.path, node.name, node.booted_at),
            "resourceVersion": str(1000 + int(node.booted_at)),
            "creationTimestamp": created,
            "labels": labels,
            "annotations": {
                "container.googleapis.com/instance_id": str(1_000_000_000_000_000 + h % 10**18),
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": f"10.{4 + (h >> 40) % 60}.{(h >> 8) % 256}.0/24",
            "podCIDRs": [f"10.{4 + (h >> 40) % 60}.{(h >> 8) % 256}.0/24"],
            "providerID": f"gce://{cluster.project}/{zone}/{node.name}",
        },
        "status": {
            "capacity": {
                "cpu": "4",
                "ephemeral-storage": "98831908Ki",
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
                "memory": "16393220Ki",
                "pods": "110",
            },
            "allocatable": {
                "cpu": "3920m",
                "ephemeral-storage": "47060071478",
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
                "memory": "13255684Ki",
                "pods": "110",
            },
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {
                    "type": "ExternalIP",
                    "address": f"34.{(h >> 16) % 200 + 20}.{(h >> 24) % 256}.{(h >> 32) % 254 + 1}",
                },
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"{h:016x}{h:016x}",
                "systemUUID": _uid("system", node.name),
                "bootID": _uid("boot", node.name, node.booted_at),
                "kernelVersion": "6.1.100+",
                "osImage": "Container-Optimized OS from Google",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kubeletVersion": "v" + version,
                "kubeProxyVersion": "v" + version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


# ----- the store ----------------------------------------------------------------------------------------------


@dataclass
class Stored:
    resource: str
    body: dict[str, Any]
    created_at: float
    start_delay: float = 0.0  # pods of this controller (or this bare pod) run this long after they appear
    probe: bool = False  # made through the API: subject to faults.probe_pods_never_start
    pin: tuple[str, int] | None = None  # bare pods: (pool, index) of the node they are bound to
    deleted_at: float | None = None  # namespaces: deletion requested (Terminating) at this simulated time

    @property
    def namespace(self) -> str:
        return self.body["metadata"].get("namespace", "")

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]


@dataclass
class DerivedPod:
    body: dict[str, Any]
    node: SimNode | None
    running_at: float | None  # None: never starts
    owner: Stored | None
    slot: str | None = None  # controller pods: which replica (node name, or index/node name)


@dataclass
class KubeStore:
    fleet: Fleet
    cluster: SimCluster
    ca_pem: str = ""
    objects: dict[str, dict[tuple[str, str], Stored]] = field(default_factory=dict)
    _rv: int = 1000
    _bumps: dict[str, float] = field(
        default_factory=dict
    )  # pod slot -> times its pod was deleted ("#at": when)

    NAMESPACE_FINALIZE = 5.0  # simulated seconds a deleted namespace stays Terminating before its contents go

    def __post_init__(self) -> None:
        for plural in STORED:
            self.objects.setdefault(plural, {})
        seed_cluster(self)

    def _finalize_namespaces(self) -> None:
        """The namespace controller, lazily: a Terminating namespace's contents, then the namespace, go."""
        now = self.fleet.now()
        done = [
            ns
            for ns in self.objects["namespaces"].values()
            if ns.deleted_at is not None and now >= ns.deleted_at + self.NAMESPACE_FINALIZE
        ]
        for ns in done:
            name = ns.name
            for plural in STORED:
                res = RESOURCES[plural]
                if not res.namespaced:
                    continue
                for key in [k for k in self.objects[plural] if k[0] == name]:
                    gone = self.objects[plural].pop(key)
                    self.fleet.record(
                        "k8s.delete",
                        f"{self.path}/{res.kind}/{name}/{gone.name}",
                        {
                            "kind": res.kind,
                            "apiVersion": res.api_version,
                            "namespace": name,
                            "name": gone.name,
                            "via": f"namespace {name}",
                        },
                        "deleted",
                    )
            self._bumps = {k: v for k, v in self._bumps.items() if k.split("/")[1] != name}
            del self.objects["namespaces"][("", name)]

    # ----- helpers --------------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self.cluster.path

    def next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def resource_version(self) -> str:
        return str(self._rv)

    def nodes(self) -> list[SimNode]:
        return list(self.cluster.all_nodes())

    def add(self, resource: str, body: dict[str, Any], created_at: float = SEEDED_AT, **kw: Any) -> Stored:
        res = RESOURCES[resource]
        meta = body.setdefault("metadata", {})
        body["apiVersion"] = res.api_version
        body["kind"] = res.kind
        if not res.namespaced:
            meta.pop("namespace", None)
        meta.setdefault(
            "uid",
            str(uuid.uuid4())
            if created_at > SEEDED_AT
            else _uid(self.path, resource, meta.get("namespace"), meta["name"]),
        )
        meta["resourceVersion"] = self.next_rv()
        meta["creationTimestamp"] = timestamp(self.fleet, created_at)
        if resource in ("daemonsets", "deployments"):
            meta.setdefault("generation", 1)
            _default_controller(resource, body)
        if resource == "namespaces":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            body["spec"] = {"finalizers": ["kubernetes"]}
            body["status"] = {"phase": "Active"}
        if resource == "pods":
            _default_pod_spec(body.setdefault("spec", {}))
        obj = Stored(resource, body, created_at, **kw)
        self.objects[resource][(obj.namespace, obj.name)] = obj
        return obj

    # ----- reads ----------------------------------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        return [name for _, name in self.objects["namespaces"]]

    def _derived_configmaps(self) -> Iterator[dict[str, Any]]:
        for ns_obj in self.objects["namespaces"].values():
            yield {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {
                    "name": "kube-root-ca.crt",
                    "namespace": ns_obj.name,
                    "uid": _uid(self.path, "kube-root-ca.crt", ns_obj.name),
                    "resourceVersion": ns_obj.body["metadata"]["resourceVersion"],
                    "creationTimestamp": ns_obj.body["metadata"]["creationTimestamp"],
                    "annotations": {
                        "kubernetes.io/description": "Contains a CA bundle that can be used to "
                        "verify the kube-apiserver when using internal endpoints such as the "
                        "internal service IP or kubernetes.default.svc. No other usage is "
                        "guaranteed across distributions of Kubernetes clusters."
                    },
                },
                "data": {"ca.crt": self.ca_pem},
            }

    def _derived_serviceaccounts(self) -> Iterator[dict[str, Any]]:
        for ns_obj in self.objects["namespaces"].values():
            yield {
                "kind": "ServiceAccount",
                "apiVersion": "v1",
                "metadata": {
                    "name": "default",
                    "namespace": ns_obj.name,
                    "uid": _uid(self.path, "sa-default", ns_obj.name),
                    "resourceVersion": ns_obj.body["metadata"]["resourceVersion"],
                    "creationTimestamp": ns_obj.body["metadata"]["creationTimestamp"],
                },
            }

    def all_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of a resource (in one namespace, if given), stored and derived, with computed status.

        Bodies are copies; the caller may keep or change them.
        """
        self._finalize_namespaces()
        if resource == "nodes":
            return [node_object(self.fleet, self.cluster, n) for n in self.nodes()]
        if resource == "pods":
            return [p.body for p in self.pods(namespace)]
        out = [
            copy.deepcopy(o.body)
            for o in self.objects[resource].values()
            if not namespace or o.namespace == namespace
        ]
        if resource == "configmaps":
            out.extend(
                c
                for c in self._derived_configmaps()
                if not namespace or c["metadata"]["namespace"] == namespace
            )
        elif resource == "serviceaccounts":
            have = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in out}
            out.extend(
                sa
                for sa in self._derived_serviceaccounts()
                if (sa["metadata"]["namespace"], "default") not in have
                and (not namespace or sa["metadata"]["namespace"] == namespace)
            )
        elif resource == "daemonsets":
            pods = self.pods(namespace)
            for body in out:
                body["status"] = self._ds_status(body, pods)
        elif resource == "deployments":
            pods = self.pods(namespace)
            for body in out:
                body["status"] = self._deploy_status(body, pods)
        return out

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(resource, field_selector)
        out = []
        for body in self.all_objects(resource, namespace):
            meta = body["metadata"]
            if namespace and meta.get("namespace") != namespace:
                continue
            if labels and not labels_match(meta.get("labels") or {}, labels):
                continue
            if fields and not fields_match(body, fields):
                continue
            out.append(body)
        out.sort(key=lambda b: (b["metadata"].get("namespace", ""), b["metadata"]["name"]))
        return out

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        res = RESOURCES[resource]
        if resource in ("nodes", "pods", "configmaps", "serviceaccounts", "daemonsets", "deployments"):
            for body in self.all_objects(resource, namespace if res.namespaced else None):
                meta = body["metadata"]
                if meta["name"] == name and (not res.namespaced or meta.get("namespace") == namespace):
                    return body
            raise res.not_found(name)
        self._finalize_namespaces()
        obj = self.objects[resource].get((namespace or "", name))
        if obj is None:
            raise res.not_found(name)
        return copy.deepcopy(obj.body)

    # ----- pods -----------------------------------------------------------------------------------------------

    def pods(self, namespace: str | None = None) -> list[DerivedPod]:
        """Every pod (of one namespace, if given), stored and controller-made, as of now."""
        self._finalize_namespaces()
        now = self.fleet.now()
        never = self.path in self.fleet.spec.faults.probe_pods_never_start
        nodes = self.nodes()
        out: list[DerivedPod] = []
        for ds in self.objects["daemonsets"].values():
            if namespace and ds.namespace != namespace:
                continue
            for node in nodes:
                out.append(self._controller_pod(ds, node, now, never, slot=node.name))
        if nodes:
            for dep in self.objects["deployments"].values():
                if namespace and dep.namespace != namespace:
                    continue
                replicas = dep.body["spec"].get("replicas", 1)
                start = _h(dep.name)
                for i in range(replicas):
                    node = nodes[(start + i) % len(nodes)]
                    out.append(self._controller_pod(dep, node, now, never, slot=f"{i}/{node.name}"))
        if not self.cluster.autopilot and namespace in (None, "", "kube-system"):
            for node in nodes:
                out.append(self._mirror_pod(node))
        by_pool: dict[str, list[SimNode]] = {}
        for node in nodes:
            by_pool.setdefault(node.pool, []).append(node)
        for pod in self.objects["pods"].values():
            if namespace and pod.namespace != namespace:
                continue
            node = None
            if pod.pin is not None:
                pool_nodes = by_pool.get(pod.pin[0], [])
                node = pool_nodes[pod.pin[1] % len(pool_nodes)] if pool_nodes else None
            body = copy.deepcopy(pod.body)
            appeared = max(pod.created_at, node.booted_at) if node else pod.created_at
            running_at = None if node is None or (never and pod.probe) else appeared + pod.start_delay
            out.append(
                DerivedPod(self._pod_status(body, node, appeared, running_at, now), node, running_at, None)
            )
        return out

    def _controller_pod(self, owner: Stored, node: SimNode, now: float, never: bool, slot: str) -> DerivedPod:
        ometa = owner.body["metadata"]
        template = owner.body["spec"]["template"]
        key = f"{owner.resource}/{owner.namespace}/{owner.name}/{slot}"
        bump = int(self._bumps.get(key, 0))
        appeared = max(owner.created_at, node.booted_at, self._bumps.get(key + "#at", SEEDED_AT))
        labels = dict(template.get("metadata", {}).get("labels") or {})
        if owner.resource == "daemonsets":
            name = f"{owner.name}-{short_hash(ometa['uid'], node.name, bump)}"
            labels["controller-revision-hash"] = short_hash(ometa["uid"], "rev", n=10)
            labels["pod-template-generation"] = str(ometa.get("generation", 1))
            owner_ref = {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "name": owner.name,
                "uid": ometa["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        else:
            rs_hash = short_hash(ometa["uid"], "rs", n=10)
            name = f"{owner.name}-{rs_hash}-{short_hash(ometa['uid'], slot, bump)}"
            labels["pod-template-hash"] = rs_hash
            owner_ref = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": f"{owner.name}-{rs_hash}",
                "uid": _uid(ometa["uid"], "rs"),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        spec = copy.deepcopy(template.get("spec") or {})
        _default_pod_spec(spec)
        spec["nodeName"] = node.name
        if owner.resource == "daemonsets":
            spec["affinity"] = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {"key": "metadata.name", "operator": "In", "values": [node.name]}
                                ]
                            }
                        ]
                    }
                }
            }
            spec.setdefault("tolerations", []).extend(
                [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
                    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
                    {
                        "key": "node.kubernetes.io/memory-pressure",
                        "operator": "Exists",
                        "effect": "NoSchedule",
                    },
                    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
                ]
            )
        body = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "generateName": name[:-5],
                "namespace": owner.namespace,
                "uid": _uid(self.path, name, appeared),
                "resourceVersion": str(self._rv),
                "creationTimestamp": timestamp(self.fleet, appeared),
                "labels": labels,
                "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                "ownerReferences": [owner_ref],
            },
            "spec": spec,
        }
        if not body["metadata"]["annotations"]:
            del body["metadata"]["annotations"]
        running_at = None if (never and owner.probe) else appeared + owner.start_delay
        return DerivedPod(
            self._pod_status(body, node, appeared, running_at, now), node, running_at, owner, slot
        )

    def _mirror_pod(self, node: SimNode) -> DerivedPod:
        version = self.cluster.msg.current_master_version
        name = f"kube-proxy-{node.name}"
        body = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": "kube-system",
                "uid": _uid(self.path, name, node.booted_at),
                "resourceVersion": str(self._rv),
                "creationTimestamp": timestamp(self.fleet, node.booted_at),
                "labels": {"component": "kube-proxy", "tier": "node"},
                "annotations": {
                    "kubernetes.io/config.mirror": short_hash(node.name, n=32, alphabet="0123456789abcdef"),
                    "kubernetes.io/config.source": "file",
                },
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": node.name,
                        "uid": _uid(self.path, node.name, node.booted_at),
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "containers": [
                    {
                        "name": "kube-proxy",
                        "image": f"gke.gcr.io/kube-proxy-amd64:v{version}",
                        "command": [
                            "/bin/sh",
                            "-c",
                            "exec kube-proxy --master=https://172.16.0.2 --kubeconfig=/var/lib/kube-proxy/"
                            "kubeconfig --cluster-cidr=10.4.0.0/14 --oom-score-adj=-998 --v=2 "
                            "--iptables-sync-period=1m --iptables-min-sync-period=10s --ipvs-sync-period=1m "
                            "--ipvs-min-sync-period=10s --detect-local-mode=NodeCIDR "
                            "1>>/var/log/kube-proxy.log 2>&1",
                        ],
                        "resources": {"requests": {"cpu": "100m"}},
                        "securityContext": {"privileged": True},
                    }
                ],
                "hostNetwork": True,
                "nodeName": node.name,
                "priorityClassName": "system-node-critical",
                "tolerations": [
                    {"operator": "Exists", "effect": "NoExecute"},
                    {"operator": "Exists", "effect": "NoSchedule"},
                ],
            },
        }
        _default_pod_spec(body["spec"])
        return DerivedPod(
            self._pod_status(body, node, node.booted_at, node.booted_at, self.fleet.now()),
            node,
            node.booted_at,
            None,
        )

    def _pod_status(
        self,
        body: dict[str, Any],
        node: SimNode | None,
        appeared: float,
        running_at: float | None,
        now: float,
    ) -> dict[str, Any]:
        spec = body["spec"]
        containers = spec.get("containers") or []
        ts = timestamp(self.fleet, appeared)
        if node is None:
            body["status"] = {
                "phase": "Pending",
                "qosClass": "BestEffort",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "lastProbeTime": None,
                        "lastTransitionTime": ts,
                        "reason": "Unschedulable",
                        "message": "0/0 nodes are available: no nodes available to schedule pods.",
                    }
                ],
            }
            return body
        spec["nodeName"] = node.name
        host_ip = node_ip(self.cluster, node)
        ip = host_ip if spec.get("hostNetwork") else pod_ip(self.cluster, node, body["metadata"]["name"])
        running = running_at is not None and now >= running_at
        finished = running and spec.get("restartPolicy") == "Never" and now >= running_at + 2.0
        phase = "Succeeded" if finished else "Running" if running else "Pending"
        started = timestamp(self.fleet, running_at) if running else None
        statuses = []
        for c in containers:
            cs: dict[str, Any] = {
                "name": c["name"],
                "image": c.get("image", ""),
                "restartCount": 0,
                "ready": running and not finished,
                "started": running and not finished,
                "imageID": ""
                if not running
                else c.get("image", "").split(":")[0]
                + "@sha256:"
                + hashlib.sha256(c.get("image", "").encode()).hexdigest(),
            }
            if finished:
                cs["containerID"] = (
                    "containerd://"
                    + hashlib.sha256(f"{body['metadata']['uid']}/{c['name']}".encode()).hexdigest()
                )
                cs["state"] = {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": started,
                        "finishedAt": timestamp(self.fleet, running_at + 2.0),
                        "containerID": cs["containerID"],
                    }
                }
            elif running:
                cs["containerID"] = (
                    "containerd://"
                    + hashlib.sha256(f"{body['metadata']['uid']}/{c['name']}".encode()).hexdigest()
                )
                cs["state"] = {"running": {"startedAt": started}}
            else:
                cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
            cs["lastState"] = {}
            statuses.append(cs)
        ready = "True" if running and not finished else "False"
        conditions = [
            {
                "type": "PodReadyToStartContainers",
                "status": "True" if running else "False",
                "lastProbeTime": None,
                "lastTransitionTime": started or ts,
            },
            {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts},
            {"type": "Ready", "status": ready, "lastProbeTime": None, "lastTransitionTime": started or ts},
            {
                "type": "ContainersReady",
                "status": ready,
                "lastProbeTime": None,
                "lastTransitionTime": started or ts,
            },
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts},
        ]
        if ready == "False":
            for cond in conditions[2:4]:
                cond["reason"] = "PodCompleted" if finished else "ContainersNotReady"
                if not finished:
                    cond["message"] = (
                        "containers with unready status: [" + " ".join(c["name"] for c in containers) + "]"
                    )
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": ts,
            "containerStatuses": statuses,
            "qosClass": _qos(containers),
        }
        if running:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        body["status"] = status
        return body

    def _ds_status(self, body: dict[str, Any], pods: list[DerivedPod]) -> dict[str, Any]:
        uid = body["metadata"]["uid"]
        mine = [p for p in pods if p.owner is not None and p.owner.body["metadata"]["uid"] == uid]
        ready = sum(1 for p in mine if p.body["status"]["phase"] == "Running")
        status = {
            "currentNumberScheduled": len(mine),
            "numberMisscheduled": 0,
            "desiredNumberScheduled": len(mine),
            "numberReady": ready,
            "observedGeneration": body["metadata"].get("generation", 1),
            "updatedNumberScheduled": len(mine),
            "numberAvailable": ready,
        }
        if len(mine) - ready:
            status["numberUnavailable"] = len(mine) - ready
            del status["numberAvailable"]
            if ready:
                status["numberAvailable"] = ready
        return status

    def _deploy_status(self, body: dict[str, Any], pods: list[DerivedPod]) -> dict[str, Any]:
        uid = body["metadata"]["uid"]
        mine = [p for p in pods if p.owner is not None and p.owner.body["metadata"]["uid"] == uid]
        ready = sum(1 for p in mine if p.body["status"]["phase"] == "Running")
        status: dict[str, Any] = {"observedGeneration": body["metadata"].get("generation", 1)}
        if mine:
            status.update({"replicas": len(mine), "updatedReplicas": len(mine)})
        if ready:
            status.update({"readyReplicas": ready, "availableReplicas": ready})
        if len(mine) - ready:
            status["unavailableReplicas"] = len(mine) - ready
        status["conditions"] = [
            {
                "type": "Available",
                "status": "True" if ready == len(mine) else "False",
                "reason": "MinimumReplicasAvailable" if ready == len(mine) else "MinimumReplicasUnavailable",
            }
        ]
        return status

    def pod(self, namespace: str, name: str) -> DerivedPod:
        for p in self.pods(namespace):
            if p.body["metadata"]["name"] == name and p.body["metadata"]["namespace"] == namespace:
                return p
        raise RESOURCES["pods"].not_found(name)

    # ----- writes ---------------------------------------------------------------------------------------------

    def create(
        self, resource: str, namespace: str | None, body: dict[str, Any], dry_run: bool = False
    ) -> dict:
        res = RESOURCES.get(resource)
        if res is None or resource not in STORED:
            raise KubeError(
                405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
            )
        if not isinstance(body, dict):
            raise KubeError(
                400,
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json, application/yaml, application/vnd.kubernetes.protobuf",
            )
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind and kind != res.kind:
            raise KubeError(
                400,
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({res.api_version})"
                if api_version != res.api_version
                else f'{kind} in version "{res.version}" cannot be handled as a {res.kind}: '
                f"the kind in the data does not match {res.kind}",
            )
        if api_version and api_version != res.api_version:
            raise KubeError(
                400,
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({res.api_version})",
            )
        self._finalize_namespaces()
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
            meta.pop(key, None)
        body.pop("status", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + short_hash(uuid.uuid4())
            else:
                raise KubeError(
                    422,
                    f'{res.kind} "" is invalid: metadata.name: Required value: name or '
                    f"generateName is required",
                    "Invalid",
                )
        name = meta["name"]
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.:]*[a-z0-9])?", name) or len(name) > 253:
            raise KubeError(
                422,
                f'{res.kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": a '
                f"lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
                f"or '.', and must start and end with an alphanumeric character",
                "Invalid",
            )
        ns = ""
        if res.namespaced:
            ns = namespace or "default"
            if meta.get("namespace") and meta["namespace"] != ns:
                raise KubeError(
                    400,
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = ns
            ns_obj = self.objects["namespaces"].get(("", ns))
            if ns_obj is None:
                raise RESOURCES["namespaces"].not_found(ns)
            if ns_obj.deleted_at is not None:
                raise KubeError(
                    403,
                    f'{res.qualified} "{name}" is forbidden: unable to create new content in '
                    f"namespace {ns} because it is being terminated",
                    "Forbidden",
                    {"name": name, "group": res.group, "kind": res.plural},
                )
        exists = (ns, name) in self.objects[resource] or (
            (resource == "configmaps" and name == "kube-root-ca.crt")
            or (resource == "serviceaccounts" and name == "default")
        )
        if exists:
            raise KubeError(
                409,
                f'{res.qualified} "{name}" already exists',
                "AlreadyExists",
                {"name": name, "group": res.group, "kind": res.plural},
            )
        if resource in ("daemonsets", "deployments"):
            _validate_controller(res, body)
        kw: dict[str, Any] = {}
        now = self.fleet.now()
        if resource in ("daemonsets", "deployments", "pods"):
            kw = {"start_delay": self.fleet.spec.timings.probe_pod_start, "probe": True}
        if resource == "pods":
            kw["pin"] = self._place(body)
        if dry_run:
            tmp = copy.deepcopy(body)
            tmp["metadata"]["uid"] = str(uuid.uuid4())
            tmp["metadata"]["creationTimestamp"] = timestamp(self.fleet, now)
            return tmp
        obj = self.add(resource, body, created_at=now, **kw)
        self.fleet.record(
            "k8s.create",
            f"{self.path}/{res.kind}/{ns}/{name}",
            {"kind": res.kind, "apiVersion": res.api_version, "namespace": ns, "name": name},
            "created",
        )
        if resource == "pods":
            return self.get("pods", ns, name)
        return (
            self.get(resource, ns, name)
            if resource in ("daemonsets", "deployments")
            else copy.deepcopy(obj.body)
        )

    def _place(self, body: dict[str, Any]) -> tuple[str, int] | None:
        wanted = (body.get("spec") or {}).get("nodeName")
        nodes = self.nodes()
        for pool, pool_nodes in self.cluster.nodes.items():
            for i, node in enumerate(pool_nodes):
                if node.name == wanted:
                    return (pool, i)
        if wanted or not nodes:
            return None
        node = nodes[_h(body["metadata"]["name"]) % len(nodes)]
        return (node.pool, self.cluster.nodes[node.pool].index(node))

    def delete(
        self, resource: str, namespace: str | None, name: str, dry_run: bool = False
    ) -> dict[str, Any]:
        res = RESOURCES.get(resource)
        if res is None or resource not in STORED:
            raise KubeError(
                405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
            )
        self._finalize_namespaces()
        ns = (namespace or "") if res.namespaced else ""
        obj = self.objects[resource].get((ns, name))
        if obj is None:
            if resource == "pods":
                return self._delete_controller_pod(ns, name, dry_run)
            return self.get(resource, ns, name)  # derived objects (default SA, root CA): recreated at once
        if resource == "namespaces" and name in PROTECTED_NAMESPACES:
            raise KubeError(
                403,
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                "Forbidden",
                {"name": name, "kind": "namespaces"},
            )
        if dry_run:
            return self.get(resource, ns, name)
        if resource == "namespaces":  # Terminating now; the contents go NAMESPACE_FINALIZE seconds later
            if obj.deleted_at is None:
                obj.deleted_at = self.fleet.now()
                obj.body["metadata"]["deletionTimestamp"] = timestamp(self.fleet, obj.deleted_at)
                obj.body["metadata"]["resourceVersion"] = self.next_rv()
                obj.body["status"] = {"phase": "Terminating"}
                self.fleet.record(
                    "k8s.delete",
                    f"{self.path}/Namespace//{name}",
                    {"kind": "Namespace", "apiVersion": "v1", "namespace": "", "name": name},
                    "deleted",
                )
            return copy.deepcopy(obj.body)
        body = self.get(resource, ns, name)
        del self.objects[resource][(ns, name)]
        self.fleet.record(
            "k8s.delete",
            f"{self.path}/{res.kind}/{ns}/{name}",
            {"kind": res.kind, "apiVersion": res.api_version, "namespace": ns, "name": name},
            "deleted",
        )
        return body

    def _delete_controller_pod(self, ns: str, name: str, dry_run: bool) -> dict[str, Any]:
        pod = self.pod(ns, name)
        if pod.owner is None or pod.slot is None:  # a mirror pod: the kubelet recreates it at once
            return pod.body
        if not dry_run:  # the controller replaces it: a new pod, with a new name, starting again
            key = f"{pod.owner.resource}/{pod.owner.namespace}/{pod.owner.name}/{pod.slot}"
            self._bumps[key] = self._bumps.get(key, 0) + 1
            self._bumps[key + "#at"] = self.fleet.now()
            self.fleet.record(
                "k8s.delete",
                f"{self.path}/Pod/{ns}/{name}",
                {"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": name},
                "deleted",
            )
        return pod.body

    # ----- logs -----------------------------------------------------------------------------------------------

    def logs(
        self,
        namespace: str,
        name: str,
        container: str | None = None,
        tail_lines: int | None = None,
        since_seconds: float | None = None,
        timestamps: bool = False,
        limit_bytes: int | None = None,
    ) -> str:
        pod = self.pod(namespace, name)
        containers = [c["name"] for c in pod.body["spec"].get("containers", [])]
        if container is None:
            if len(containers) != 1:
                raise KubeError(
                    400,
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(containers)}]",
                )
            container = containers[0]
        if container not in containers:
            raise KubeError(400, f"container {container} is not valid for pod {name}")
        now = self.fleet.now()
        if pod.running_at is None or now < pod.running_at or pod.node is None:
            raise KubeError(
                400, f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            )
        spec = next(c for c in pod.body["spec"]["containers"] if c["name"] == container)
        script = " ".join([*(spec.get("command") or []), *(spec.get("args") or [])])
        lines: list[tuple[float, str]]
        if "kubelet_http_requests_total" in script:
            lines = self._probe_lines(pod.node, pod.running_at, now, tail_lines, since_seconds)
        else:
            lines = [
                (pod.running_at, f"starting {container}"),
                (pod.running_at + 1.0, f"{container}: configuration loaded"),
                (pod.running_at + 2.0, f"{container}: ready"),
            ]
            lines = [(t, s) for t, s in lines if t <= now]
        if since_seconds is not None:
            lines = [(t, s) for t, s in lines if t >= now - since_seconds]
        if tail_lines is not None and tail_lines >= 0:
            lines = lines[len(lines) - tail_lines :] if tail_lines else []
        text = "".join(
            (f"{timestamp(self.fleet, t, nanos=True)} {s}\n" if timestamps else f"{s}\n") for t, s in lines
        )
        if limit_bytes is not None and limit_bytes >= 0:
            text = text.encode()[:limit_bytes].decode(errors="ignore")
        return text

    def _probe_lines(
        self, node: SimNode, started: float, now: float, tail: int | None, since: float | None
    ) -> list[tuple[float, str]]:
        """What the seed's DaemonSet prints: every probe_log_interval, the node's kubelet_http_requests_total lines."""
        interval = max(1e-3, self.fleet.spec.timings.probe_log_interval)
        last = int((now - started) // interval)
        first = 0
        if since is not None:
            first = max(first, int(max(0.0, now - since - started) // interval))
        if tail is not None and tail >= 0:
            first = max(first, last - tail)
        out = []
        for k in range(first, last + 1):
            t = started + k * interval
            rw = readwrite_counts(t - node.booted_at, own_reads=k + 1)
            for line in family_lines(rw, node.readonly_counts(t)):
                out.append((t, line))
        return out


def _qos(containers: list[dict[str, Any]]) -> str:
    if any(
        (c.get("resources") or {}).get("requests") or (c.get("resources") or {}).get("limits")
        for c in containers
    ):
        return "Burstable"
    return "BestEffort"


def _default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    for c in spec.get("containers") or []:
        c.setdefault("resources", {})
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        image = c.get("image", "")
        c.setdefault(
            "imagePullPolicy",
            "Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] else "IfNotPresent",
        )


def _default_controller(resource: str, body: dict[str, Any]) -> None:
    spec = body.setdefault("spec", {})
    spec.setdefault("revisionHistoryLimit", 10)
    if resource == "daemonsets":
        spec.setdefault(
            "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
        )
    else:
        spec.setdefault("replicas", 1)
        spec.setdefault(
            "strategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        )
        spec.setdefault("progressDeadlineSeconds", 600)
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    _default_pod_spec(template.setdefault("spec", {}))


def _validate_controller(res: Resource, body: dict[str, Any]) -> None:
    name = body["metadata"]["name"]
    spec = body.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    prefix = f'{res.kind}.{res.group} "{name}" is invalid'
    if not selector and not (spec.get("selector") or {}).get("matchExpressions"):
        raise KubeError(422, f"{prefix}: spec.selector: Required value", "Invalid")
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        raise KubeError(
            422,
            f"{prefix}: spec.template.metadata.labels: Invalid value: {labels}: `selector` does "
            f"not match template `labels`",
            "Invalid",
        )
    if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
        raise KubeError(422, f"{prefix}: spec.template.spec.containers: Required value", "Invalid")


def get_store(fleet: Fleet, cluster: SimCluster, ca_pem: str = "") -> KubeStore:
    """The cluster's object store, made (and seeded) on first use."""
    with fleet.lock:
        if cluster.kube is None:
            cluster.kube = KubeStore(fleet, cluster, ca_pem)
        elif ca_pem and not cluster.kube.ca_pem:
            cluster.kube.ca_pem = ca_pem
        return cluster.kube


# ----- seeding ------------------------------------------------------------------------------------------------

AGENT_NAMESPACES = {
    "datadog": "datadog",
    "telegraf": "monitoring",
    "metrics-server": "kube-system",
    "heapster": "kube-system",
    "fluent-bit": "logging",
    "prometheus": "monitoring",
    "signalfx": "signalfx",
    "curl": "default",
}


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


def agent_objects(agent: str, cluster: SimCluster, ns: str, run_deployments: bool) -> list[tuple[str, dict]]:
    """The objects one agent installs, configured to read the kubelet's read-only port 10255."""
    name = cluster.msg.name
    reps = 1 if run_deployments else 0
    objs: list[tuple[str, dict]] = []
    if agent == "datadog":
        labels = {"app": "datadog-agent", "app.kubernetes.io/name": "datadog-agent"}
        objs += [_sa("datadog-agent", ns), *_rbac("datadog-agent", _NODE_READ_RULES, "datadog-agent", ns)]
        objs.append(
            _workload(
                "DaemonSet",
                "datadog-agent",
                ns,
                labels,
                {
                    "serviceAccountName": "datadog-agent",
                    "containers": [
                        _container(
                            "agent",
                            "gcr.io/datadoghq/agent:7.54.0",
                            command=["agent", "run"],
                            env=[
                                {
                                    "name": "DD_API_KEY",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": "datadog-secret", "key": "api-key"}
                                    },
                                },
                                _env("DD_SITE", "datadoghq.com"),
                                _env("DD_CLUSTER_NAME", name),
                                _env("DD_KUBERNETES_KUBELET_HOST", field_path="status.hostIP"),
                                _env("DD_KUBERNETES_HTTP_KUBELET_PORT", "10255"),
                                _env("DD_KUBELET_TLS_VERIFY", "false"),
                                _env("DD_LOGS_ENABLED", "true"),
                            ],
                            resources={"requests": {"cpu": "200m", "memory": "256Mi"}},
                        ),
                        _container(
                            "trace-agent",
                            "gcr.io/datadoghq/agent:7.54.0",
                            command=["trace-agent", "-config=/etc/datadog-agent/datadog.yaml"],
                            env=[
                                _env("DD_KUBERNETES_KUBELET_HOST", field_path="status.hostIP"),
                                _env("DD_KUBERNETES_HTTP_KUBELET_PORT", "10255"),
                            ],
                        ),
                    ],
                },
            )
        )
        objs.append(
            _workload(
                "Deployment",
                "datadog-cluster-agent",
                ns,
                {"app": "datadog-cluster-agent"},
                {
                    "serviceAccountName": "datadog-agent",
                    "containers": [
                        _container(
                            "cluster-agent",
                            "gcr.io/datadoghq/cluster-agent:7.54.0",
                            env=[_env("DD_CLUSTER_NAME", name), _env("DD_COLLECT_KUBERNETES_EVENTS", "true")],
                        )
                    ],
                },
                replicas=reps,
            )
        )
    elif agent == "telegraf":
        conf = (
            '[agent]\n  interval = "10s"\n  round_interval = true\n  flush_interval = "10s"\n'
            '  hostname = "$HOSTNAME"\n\n'
            '[[outputs.influxdb_v2]]\n  urls = ["http://influxdb.monitoring.svc:8086"]\n'
            '  token = "$INFLUX_TOKEN"\n  organization = "platform"\n  bucket = "k8s"\n\n'
            "[[inputs.cpu]]\n  percpu = false\n  totalcpu = true\n\n[[inputs.mem]]\n\n"
            '[[inputs.kubernetes]]\n  url = "http://$HOSTIP:10255"\n  insecure_skip_verify = true\n'
        )
        objs.append(_cm("telegraf", ns, {"telegraf.conf": conf}, {"app": "telegraf"}))
        objs.append(
            _workload(
                "DaemonSet",
                "telegraf",
                ns,
                {"app": "telegraf"},
                _with_config(
                    {
                        "containers": [
                            _container(
                                "telegraf",
                                "docker.io/library/telegraf:1.30",
                                env=[
                                    _env("HOSTIP", field_path="status.hostIP"),
                                    _env("HOSTNAME", field_path="spec.nodeName"),
                                    {
                                        "name": "INFLUX_TOKEN",
                                        "valueFrom": {"secretKeyRef": {"name": "telegraf", "key": "token"}},
                                    },
                                ],
                            )
                        ],
                    },
                    "telegraf",
                    "/etc/telegraf",
                ),
            )
        )
    elif agent == "metrics-server":
        labels = {"k8s-app": "metrics-server"}
        objs += [_sa("metrics-server", ns)]
        objs += _rbac(
            "system:metrics-server-insecure",
            [
                {
                    "apiGroups": [""],
                    "resources": ["nodes/metrics", "nodes/stats", "pods", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
            "metrics-server",
            ns,
        )
        objs.append(
            _workload(
                "Deployment",
                "metrics-server",
                ns,
                labels,
                {
                    "serviceAccountName": "metrics-server",
                    "priorityClassName": "system-cluster-critical",
                    "containers": [
                        _container(
                            "metrics-server",
                            "registry.k8s.io/metrics-server/metrics-server:v0.3.7",
                            args=[
                                "--cert-dir=/tmp",
                                "--secure-port=4443",
                                "--kubelet-port=10255",
                                "--deprecated-kubelet-completely-insecure=true",
                                "--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP",
                            ],
                            ports=[{"name": "main-port", "containerPort": 4443, "protocol": "TCP"}],
                        )
                    ],
                },
                replicas=reps,
            )
        )
    elif agent == "heapster":
        labels = {"k8s-app": "heapster", "task": "monitoring"}
        objs += [_sa("heapster", ns), *_rbac("heapster", _NODE_READ_RULES, "heapster", ns)]
        objs.append(
            _workload(
                "Deployment",
                "heapster",
                ns,
                labels,
                {
                    "serviceAccountName": "heapster",
                    "containers": [
                        _container(
                            "heapster",
                            "k8s.gcr.io/heapster-amd64:v1.5.4",
                            command=[
                                "/heapster",
                                "--source=kubernetes:https://kubernetes.default?kubeletPort=10255&kubeletHttps=false",
                                "--sink=influxdb:http://monitoring-influxdb.kube-system.svc:8086",
                            ],
                        )
                    ],
                },
                replicas=reps,
            )
        )
    elif agent == "fluent-bit":
        conf = (
            "[SERVICE]\n    Flush         1\n    Log_Level     info\n    Daemon        off\n"
            "    Parsers_File  parsers.conf\n    HTTP_Server   On\n    HTTP_Listen   0.0.0.0\n    HTTP_Port     2020\n\n"
            "[INPUT]\n    Name              tail\n    Tag               kube.*\n"
            "    Path              /var/log/containers/*.log\n    multiline.parser  docker, cri\n"
            "    Mem_Buf_Limit     5MB\n    Skip_Long_Lines   On\n\n"
            "[FILTER]\n    Name                kubernetes\n    Match               kube.*\n"
            "    Kube_URL            https://kubernetes.default.svc:443\n    Merge_Log           On\n"
            "    Keep_Log            Off\n    Use_Kubelet         On\n    Kubelet_Host        ${NODE_IP}\n"
            "    Kubelet_Port        10255\n    tls.verify          Off\n\n"
            "[OUTPUT]\n    Name            es\n    Match           *\n    Host            elasticsearch.logging.svc\n"
            "    Port            9200\n    Logstash_Format On\n"
        )
        objs += [_sa("fluent-bit", ns), *_rbac("fluent-bit-read", _NODE_READ_RULES, "fluent-bit", ns)]
        objs.append(
            _cm(
                "fluent-bit-config",
                ns,
                {"fluent-bit.conf": conf, "parsers.conf": "[PARSER]\n    Name   docker\n    Format json\n"},
                {"k8s-app": "fluent-bit"},
            )
        )
        objs.append(
            _workload(
                "DaemonSet",
                "fluent-bit",
                ns,
                {"k8s-app": "fluent-bit-logging"},
                _with_config(
                    {
                        "serviceAccountName": "fluent-bit",
                        "containers": [
                            _container(
                                "fluent-bit",
                                "cr.fluentbit.io/fluent/fluent-bit:2.2.2",
                                env=[_env("NODE_IP", field_path="status.hostIP")],
                                ports=[{"containerPort": 2020, "protocol": "TCP"}],
                            )
                        ],
                    },
                    "fluent-bit-config",
                    "/fluent-bit/etc/",
                ),
            )
        )
    elif agent == "prometheus":
        conf = (
            "global:\n  scrape_interval: 30s\n  evaluation_interval: 30s\n"
            "scrape_configs:\n"
            "- job_name: prometheus\n  static_configs:\n  - targets: ['localhost:9090']\n"
            "- job_name: kubernetes-nodes\n  scheme: http\n  kubernetes_sd_configs:\n  - role: node\n"
            "  relabel_configs:\n  - action: labelmap\n    regex: __meta_kubernetes_node_label_(.+)\n"
            "  - source_labels: [__address__]\n    regex: '(.*):10250'\n    replacement: '${1}:10255'\n"
            "    target_label: __address__\n"
            "- job_name: kubernetes-pods\n  kubernetes_sd_configs:\n  - role: pod\n  relabel_configs:\n"
            "  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]\n    action: keep\n"
            "    regex: true\n"
        )
        objs += [
            _sa("prometheus-server", ns),
            *_rbac("prometheus-server", _NODE_READ_RULES, "prometheus-server", ns),
        ]
        objs.append(
            _cm(
                "prometheus-server",
                ns,
                {"prometheus.yml": conf, "alerting_rules.yml": "{}\n"},
                {"app.kubernetes.io/name": "prometheus"},
            )
        )
        objs.append(
            _workload(
                "Deployment",
                "prometheus-server",
                ns,
                {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"},
                _with_config(
                    {
                        "serviceAccountName": "prometheus-server",
                        "containers": [
                            _container(
                                "prometheus-server",
                                "quay.io/prometheus/prometheus:v2.51.2",
                                args=[
                                    "--config.file=/etc/config/prometheus.yml",
                                    "--storage.tsdb.path=/data",
                                    "--storage.tsdb.retention.time=15d",
                                ],
                                ports=[{"containerPort": 9090, "protocol": "TCP"}],
                            )
                        ],
                    },
                    "prometheus-server",
                    "/etc/config",
                ),
                replicas=reps,
            )
        )
    elif agent == "signalfx":
        conf = (
            "signalFxAccessToken: ${SFX_ACCESS_TOKEN}\nsignalFxRealm: us1\n"
            "intervalSeconds: 10\nclusterName: " + name + "\n"
            "observers:\n- type: k8s-api\n"
            "monitors:\n- type: cpu\n- type: memory\n"
            "- type: kubelet-stats\n  kubeletAPI:\n    url: http://${MY_NODE_IP}:10255\n    authType: none\n"
            "- type: kubernetes-cluster\n  kubernetesAPI:\n    authType: serviceAccount\n"
        )
        objs += [_sa("signalfx-agent", ns), *_rbac("signalfx-agent", _NODE_READ_RULES, "signalfx-agent", ns)]
        objs.append(_cm("signalfx-agent", ns, {"agent.yaml": conf}, {"app": "signalfx-agent"}))
        objs.append(
            _workload(
                "DaemonSet",
                "signalfx-agent",
                ns,
                {"app": "signalfx-agent"},
                _with_config(
                    {
                        "serviceAccountName": "signalfx-agent",
                        "containers": [
                            _container(
                                "signalfx-agent",
                                "quay.io/signalfx/signalfx-agent:5.27.3",
                                env=[
                                    _env("MY_NODE_IP", field_path="status.hostIP"),
                                    _env("MY_NODE_NAME", field_path="spec.nodeName"),
                                    {
                                        "name": "SFX_ACCESS_TOKEN",
                                        "valueFrom": {
                                            "secretKeyRef": {"name": "signalfx-agent", "key": "access-token"}
                                        },
                                    },
                                ],
                            )
                        ],
                    },
                    "signalfx-agent",
                    "/etc/signalfx",
                ),
            )
        )
    elif agent == "curl" and run_deployments:
        objs.append(
            (
                "pods",
                {
                    "metadata": {"name": "kubelet-readonly-example", "namespace": ns},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            _container(
                                "kubelet-readonly-example",
                                "us-docker.pkg.dev/cloud-builders/ga/v1/curl:latest",
                                command=["curl", "http://$(NODE_ADDRESS):10255/metrics"],
                                env=[_env("NODE_ADDRESS", field_path="status.hostIP")],
                            )
                        ],
                    },
                },
            )
        )
    return objs


def system_objects(cluster: SimCluster) -> list[tuple[str, dict]]:
    """What GKE itself runs: kube-system and Managed Service for Prometheus. None of it reads port 10255."""
    version = cluster.msg.current_master_version
    minor = ".".join(version.split(".")[:2])
    ks = "kube-system"
    objs: list[tuple[str, dict]] = [
        *_rbac(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        *_rbac(
            "view",
            [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "configmaps", "services"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        ),
        *_rbac(
            "system:kube-dns",
            [{"apiGroups": [""], "resources": ["endpoints", "services"], "verbs": ["list", "watch"]}],
            "kube-dns",
            ks,
        ),
        *_rbac(
            "system:metrics-server",
            [
                {
                    "apiGroups": [""],
                    "resources": ["nodes/metrics", "pods", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
            "metrics-server",
            ks,
        ),
        *_rbac(
            "gmp-system:collector",
            [
                {
                    "apiGroups": [""],
                    "resources": ["nodes/metrics", "endpoints", "pods"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
            "collector",
            "gmp-system",
        ),
        _sa("kube-dns", ks),
        _sa("metrics-server", ks),
        _sa("fluentbit-gke", ks),
        _sa("gke-metrics-agent", ks),
        _sa("collector", "gmp-system"),
        _cm("kube-dns", ks, {}, {"addonmanager.kubernetes.io/mode": "EnsureExists"}),
        _cm(
            "fluentbit-gke-config-v1.4.0",
            ks,
            {
                "fluent-bit.conf": "[SERVICE]\n    Flush         5\n    Grace         120\n    Log_Level     info\n"
                "    HTTP_Server   On\n    HTTP_Listen   0.0.0.0\n    HTTP_PORT     2020\n"
                "@INCLUDE input-containers.conf\n@INCLUDE output.conf\n"
            },
        ),
        _cm(
            "gke-metrics-agent-conf",
            ks,
            {
                "gke-metrics-agent-config": "receivers:\n  kubeletstats:\n    collection_interval: 60s\n"
                "    auth_type: serviceAccount\n    endpoint: https://${NODE_NAME}:10250\n"
                "    insecure_skip_verify: true\n"
            },
        ),
        _workload(
            "DaemonSet",
            "fluentbit-gke",
            ks,
            {"k8s-app": "fluentbit-gke"},
            {
                "serviceAccountName": "fluentbit-gke",
                "priorityClassName": "system-node-critical",
                "containers": [
                    _container(
                        "fluentbit",
                        "gke.gcr.io/fluent-bit:v1.8.12-gke.40",
                        resources={"requests": {"cpu": "50m", "memory": "100Mi"}},
                    ),
                    _container(
                        "fluentbit-gke",
                        "gke.gcr.io/fluent-bit-gke-exporter:v0.26.1-gke.0",
                        resources={"requests": {"cpu": "5m", "memory": "30Mi"}},
                    ),
                ],
            },
        ),
        _workload(
            "DaemonSet",
            "gke-metrics-agent",
            ks,
            {"k8s-app": "gke-metrics-agent"},
            {
                "serviceAccountName": "gke-metrics-agent",
                "priorityClassName": "system-node-critical",
                "containers": [
                    _container(
                        "gke-metrics-agent",
                        "gke.gcr.io/gke-metrics-agent:1.10.2-gke.0",
                        env=[_env("NODE_NAME", field_path="spec.nodeName")],
                        resources={"requests": {"cpu": "8m", "memory": "60Mi"}},
                    ),
                    _container(
                        "core-metrics-exporter",
                        "gke.gcr.io/gke-metrics-collector:20240322_2300_RC0",
                        resources={"requests": {"cpu": "5m", "memory": "15Mi"}},
                    ),
                ],
            },
        ),
        _workload(
            "DaemonSet",
            "pdcsi-node",
            ks,
            {"k8s-app": "gcp-compute-persistent-disk-csi-driver"},
            {
                "priorityClassName": "system-node-critical",
                "containers": [
                    _container(
                        "csi-driver-registrar",
                        "gke.gcr.io/csi-node-driver-registrar:v2.9.3-gke.3",
                        resources={"requests": {"cpu": "5m", "memory": "10Mi"}},
                    ),
                    _container(
                        "gce-pd-driver",
                        "gke.gcr.io/gcp-compute-persistent-disk-csi-driver:v1.13.1-gke.0",
                        resources={"requests": {"cpu": "5m", "memory": "10Mi"}},
                    ),
                ],
            },
        ),
        _workload(
            "Deployment",
            "kube-dns",
            ks,
            {"k8s-app": "kube-dns"},
            {
                "serviceAccountName": "kube-dns",
                "priorityClassName": "system-cluster-critical",
                "containers": [
                    _container(
                        "kubedns",
                        "gke.gcr.io/k8s-dns-kube-dns:1.23.0-gke.9",
                        args=["--domain=cluster.local.", "--dns-port=10053", "--v=2"],
                        resources={"requests": {"cpu": "100m", "memory": "70Mi"}},
                    ),
                    _container(
                        "dnsmasq",
                        "gke.gcr.io/k8s-dns-dnsmasq-nanny:1.23.0-gke.9",
                        resources={"requests": {"cpu": "150m", "memory": "20Mi"}},
                    ),
                    _container(
                        "sidecar",
                        "gke.gcr.io/k8s-dns-sidecar:1.23.0-gke.9",
                        resources={"requests": {"cpu": "10m", "memory": "20Mi"}},
                    ),
                ],
            },
            replicas=2,
        ),
        _workload(
            "Deployment",
            "kube-dns-autoscaler",
            ks,
            {"k8s-app": "kube-dns-autoscaler"},
            {
                "containers": [
                    _container(
                        "autoscaler",
                        "gke.gcr.io/cluster-proportional-autoscaler:1.8.11-gke.6",
                        resources={"requests": {"cpu": "20m", "memory": "10Mi"}},
                    )
                ]
            },
            replicas=1,
        ),
        _workload(
            "Deployment",
            "konnectivity-agent",
            ks,
            {"k8s-app": "konnectivity-agent"},
            {
                "containers": [
                    _container(
                        "konnectivity-agent",
                        "gke.gcr.io/proxy-agent:v0.30.3-gke.0",
                        resources={"requests": {"cpu": "10m", "memory": "30Mi"}},
                    )
                ]
            },
            replicas=2,
        ),
        _workload(
            "Deployment",
            f"metrics-server-v{minor}.0",
            ks,
            {"k8s-app": "metrics-server"},
            {
                "serviceAccountName": "metrics-server",
                "priorityClassName": "system-cluster-critical",
                "containers": [
                    _container(
                        "metrics-server",
                        "gke.gcr.io/metrics-server:v0.7.1-gke.5",
                        command=[
                            "/metrics-server",
                            "--metric-resolution=30s",
                            "--kubelet-preferred-address-types=InternalIP",
                            "--cert-dir=/tmp",
                            "--secure-port=10250",
                        ],
                        resources={"requests": {"cpu": "43m", "memory": "55Mi"}},
                    ),
                    _container(
                        "metrics-server-nanny",
                        "gke.gcr.io/addon-resizer:1.8.20-gke.2",
                        resources={"requests": {"cpu": "5m", "memory": "50Mi"}},
                    ),
                ],
            },
            replicas=1,
        ),
        _workload(
            "Deployment",
            "event-exporter-gke",
            ks,
            {"k8s-app": "event-exporter"},
            {
                "containers": [
                    _container(
                        "event-exporter",
                        "gke.gcr.io/event-exporter:v0.4.0-gke.2",
                        resources={"requests": {"cpu": "5m", "memory": "20Mi"}},
                    )
                ]
            },
            replicas=1,
        ),
        _workload(
            "DaemonSet",
            "collector",
            "gmp-system",
            {"app.kubernetes.io/name": "collector"},
            {
                "serviceAccountName": "collector",
                "priorityClassName": "gmp-critical",
                "containers": [
                    _container(
                        "prometheus",
                        "gke.gcr.io/prometheus-engine/prometheus:v2.45.3-gmp.5-gke.0",
                        args=[
                            "--config.file=/prometheus/config_out/config.yaml",
                            "--web.listen-address=:19090",
                        ],
                        resources={"requests": {"cpu": "4m", "memory": "32M"}},
                    ),
                    _container(
                        "config-reloader",
                        "gke.gcr.io/prometheus-engine/config-reloader:v0.9.0-gke.1",
                        resources={"requests": {"cpu": "1m", "memory": "4M"}},
                    ),
                ],
            },
        ),
        _workload(
            "Deployment",
            "gmp-operator",
            "gmp-system",
            {"app.kubernetes.io/name": "gmp-operator"},
            {
                "containers": [
                    _container(
                        "operator",
                        "gke.gcr.io/prometheus-engine/operator:v0.9.0-gke.1",
                        resources={"requests": {"cpu": "1m", "memory": "16M"}},
                    )
                ]
            },
            replicas=1,
        ),
    ]
    if cluster.autopilot:
        objs.append(
            _workload(
                "DaemonSet",
                "anetd",
                ks,
                {"k8s-app": "cilium"},
                {
                    "hostNetwork": True,
                    "priorityClassName": "system-node-critical",
                    "containers": [
                        _container(
                            "cilium-agent",
                            "gke.gcr.io/cilium/cilium:v1.14.10-gke.100",
                            resources={"requests": {"cpu": "100m", "memory": "100Mi"}},
                        )
                    ],
                },
            )
        )
    else:
        objs.append(
            _workload(
                "Deployment",
                "l7-default-backend",
                ks,
                {"k8s-app": "glbc"},
                {
                    "containers": [
                        _container(
                            "default-http-backend",
                            "gke.gcr.io/ingress-gce-404-server-with-metrics:v1.23.2",
                            resources={"requests": {"cpu": "10m", "memory": "20Mi"}},
                        )
                    ]
                },
                replicas=1,
            )
        )
    return objs


def clean_objects(cluster: SimCluster) -> list[tuple[str, dict]]:
    """Ordinary workloads; the only kubelet reader among them already uses the secure port 10250."""
    objs: list[tuple[str, dict]] = [
        _cm(
            "checkout-config",
            "shop",
            {
                "application.yaml": "server:\n  port: 8080\nmanagement:\n  port: 9090\n"
                "spring:\n  datasource:\n    url: jdbc:postgresql://10.20.0.5:5432/shop\n"
            },
        ),
        _workload(
            "Deployment",
            "frontend",
            "shop",
            {"app": "frontend"},
            {
                "containers": [
                    _container(
                        "frontend",
                        "us-docker.pkg.dev/google-samples/containers/gke/hello-app:2.0",
                        ports=[{"containerPort": 8080, "protocol": "TCP"}],
                        env=[_env("PORT", "8080")],
                        resources={"requests": {"cpu": "250m", "memory": "256Mi"}},
                    )
                ]
            },
            replicas=2,
        ),
        _workload(
            "Deployment",
            "checkout",
            "shop",
            {"app": "checkout"},
            _with_config(
                {
                    "containers": [
                        _container(
                            "checkout",
                            "us-docker.pkg.dev/google-samples/microservices-demo/checkoutservice:v0.10.0",
                            ports=[{"containerPort": 5050}],
                            resources={"requests": {"cpu": "100m", "memory": "128Mi"}},
                        )
                    ]
                },
                "checkout-config",
                "/config",
            ),
            replicas=1,
        ),
        _cm(
            "otel-collector-config",
            "observability",
            {
                "config.yaml": (
                    "receivers:\n  kubeletstats:\n    collection_interval: 20s\n    auth_type: serviceAccount\n"
                    "    endpoint: https://${env:K8S_NODE_NAME}:10250\n    insecure_skip_verify: true\n"
                    "exporters:\n  googlecloud: {}\nservice:\n  pipelines:\n    metrics:\n"
                    "      receivers: [kubeletstats]\n      exporters: [googlecloud]\n"
                )
            },
        ),
        _sa("otel-collector", "observability"),
        *_rbac(
            "otel-collector",
            [{"apiGroups": [""], "resources": ["nodes/stats", "nodes/metrics"], "verbs": ["get"]}],
            "otel-collector",
            "observability",
        ),
        _workload(
            "DaemonSet",
            "otel-collector",
            "observability",
            {"app": "otel-collector"},
            _with_config(
                {
                    "serviceAccountName": "otel-collector",
                    "containers": [
                        _container(
                            "otel-collector",
                            "otel/opentelemetry-collector-contrib:0.99.0",
                            env=[_env("K8S_NODE_NAME", field_path="spec.nodeName")],
                            resources={"requests": {"cpu": "50m", "memory": "64Mi"}},
                        )
                    ],
                },
                "otel-collector-config",
                "/conf",
            ),
        ),
    ]
    return objs


def seed_cluster(store: KubeStore) -> None:
    cluster = store.cluster
    # Autopilot: with workloads=False nothing but DaemonSets and GKE's own pods runs (an "empty" cluster).
    run_workloads = cluster.workloads or not cluster.autopilot
    namespaces = ["default", "kube-system", "kube-public", "kube-node-lease", "gmp-system", "gmp-public"]
    objs = system_objects(cluster)
    if run_workloads:
        namespaces += ["shop", "observability"]
        objs += clean_objects(cluster)
    for agent in cluster.agents:
        ns = AGENT_NAMESPACES.get(agent, "default")
        if cluster.autopilot and ns == "kube-system":
            ns = "monitoring"  # Autopilot does not let users write to kube-system
        if ns not in namespaces:
            namespaces.append(ns)
        objs += agent_objects(agent, cluster, ns, run_workloads)
    for ns in namespaces:
        store.add("namespaces", {"metadata": {"name": ns}})
    seen = set()
    for resource, body in objs:
        key = (resource, body["metadata"].get("namespace", ""), body["metadata"]["name"])
        if key in seen:
            continue
        seen.add(key)
        if resource == "pods":  # the curl example: on a node of a pool whose workloads read the port
            pools = [p for p, nodes in cluster.nodes.items() if nodes]
            busy = [p for p in pools if cluster.usage.get(p, (0, 0.0))[1] > 0] or pools
            store.add(resource, body, pin=(busy[0], 0) if busy else None)
        else:
            store.add(resource, body)
