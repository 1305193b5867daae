"""The Kubernetes object store of each simulated cluster.

One `KubeStore` per cluster (attached as `SimCluster.kube`). Stored objects are kept as their JSON bodies; what the
cluster's controllers would make is derived on every read from the fleet's current state, never from a background
thread: a DaemonSet's pods (one per current node, Pending until `timings.probe_pod_start` simulated seconds after
the DaemonSet or the node appeared, then Running), a Deployment's pods, kube-proxy mirror pods, and every
namespace's `default` ServiceAccount and `kube-root-ca.crt` ConfigMap. Node recreation therefore moves pods onto the
new nodes by itself.

Seeded by `gkesim.workloads.seed_cluster`. All access holds `fleet.lock`.
"""

from __future__ import annotations

import copy
import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gkesim.kubeapi import (
    PROTECTED_NAMESPACES,
    RESOURCES,
    SEEDED_AT,
    STORED,
    KubeError,
    _h,
    _uid,
    timestamp,
)
from gkesim.kubedefaults import _default_controller, _default_pod_spec, _qos, _validate_controller
from gkesim.kubelet import family_lines, readwrite_counts, short_hash
from gkesim.kubenodes import node_ip, node_object, pod_ip
from gkesim.selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from gkesim.workloads import seed_cluster

if TYPE_CHECKING:
    from gkesim.fleet import Fleet, SimCluster, SimNode


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
            lines = lines[max(0, len(lines) - tail_lines) :] if tail_lines else []
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


def get_store(fleet: Fleet, cluster: SimCluster, ca_pem: str = "") -> KubeStore:
    """The cluster's object store, made (and seeded) on first use."""
    with fleet.lock:
        if cluster.kube is None:
            cluster.kube = KubeStore(fleet, cluster, ca_pem)
        elif ca_pem and not cluster.kube.ca_pem:
            cluster.kube.ca_pem = ca_pem
        return cluster.kube
