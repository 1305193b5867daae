"""The simulated fleet: projects, folders, clusters, node pools, nodes and operations, behaving like GKE.

State lives in the client packages' own messages (`container_v1.Cluster`), so the servers only serialize.
Time is lazy: nothing runs in the background; an operation whose end time has passed is settled the next time
anyone looks at its cluster, with its effects dated at its end time. All access goes through one lock.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud import container_v1
from google.protobuf import timestamp_pb2
from google.rpc import status_pb2

from gkesim.clock import Clock
from gkesim.errors import SimError
from gkesim.faults import FaultInjector
from gkesim.spec import ClusterSpec, FleetSpec, PoolSpec, PortSetting

MIN_VERSION = (1, 26, 4, 500)
READONLY_PATHS = ("metrics", "stats", "pods")
PORT_FIELD = "insecure_kubelet_readonly_port_enabled"
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-gke\.(\d+))?")


def version_tuple(version: str) -> tuple[int, int, int, int] | None:
    m = _VERSION_RE.match(version or "")
    if not m:
        return None
    return tuple(int(g) if g else 0 for g in m.groups())  # type: ignore[return-value]


def supports_port_setting(version: str) -> bool:
    parsed = version_tuple(version)
    return parsed is not None and parsed >= MIN_VERSION


def kubelet_config(port: PortSetting, other: dict[str, Any] | None = None) -> container_v1.NodeKubeletConfig:
    cfg = container_v1.NodeKubeletConfig(**(other or {}))
    if port != "unset":
        setattr(cfg, PORT_FIELD, port == "enabled")
    return cfg


def port_of(cfg: container_v1.NodeKubeletConfig | None) -> PortSetting:
    if cfg is None or PORT_FIELD not in cfg:
        return "unset"
    return "enabled" if getattr(cfg, PORT_FIELD) else "disabled"


def _ts(sim_seconds: float, epoch: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int((epoch + sim_seconds) * 1e9))
    return ts


@dataclass
class SimNode:
    name: str
    pool: str
    booted_at: float
    port_open: bool
    readonly_base: int = 0
    readonly_rate: float = 0.0  # requests per simulated minute per path while the port is open
    readwrite_reads: int = 0  # our own reads through the API server count as readwrite

    def readonly_counts(self, now: float) -> dict[str, int]:
        """kubelet_http_requests_total{server_type="readonly"} per path; a path with no request has no series."""
        grown = self.readonly_rate * max(0.0, now - self.booted_at) / 60.0 if self.port_open else 0.0
        count = self.readonly_base + math.floor(grown)
        return {p: count for p in READONLY_PATHS} if count > 0 else {}

    @property
    def in_use(self) -> bool:
        return self.readonly_rate > 0


@dataclass
class SimOperation:
    msg: container_v1.Operation
    cluster: str
    end_at: float
    effect: Callable[[float], None]
    fails: bool = False
    pool: str | None = None

    @property
    def path(self) -> str:
        project, location = self.cluster.split("/")[1], self.cluster.split("/")[3]
        return f"projects/{project}/locations/{location}/operations/{self.msg.name}"


@dataclass
class SimCluster:
    project: str
    location: str
    msg: container_v1.Cluster
    nodes: dict[str, list[SimNode]]
    usage: dict[str, tuple[int, float]]  # pool -> (readonly base, rate) its workloads bring to every node
    agents: list[str]
    workloads: bool
    labels: dict[str, str]
    op: SimOperation | None = None
    kube: Any = None  # the Kubernetes object store, attached by gkesim.kube

    @property
    def path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/clusters/{self.msg.name}"

    @property
    def autopilot(self) -> bool:
        return bool(self.msg.autopilot.enabled)

    def pool(self, name: str) -> container_v1.NodePool:
        for pool in self.msg.node_pools:
            if pool.name == name:
                return pool
        raise SimError(grpc.StatusCode.NOT_FOUND, f"Node pool {name!r} not found in cluster {self.path}.")

    def all_nodes(self) -> Iterator[SimNode]:
        for nodes in self.nodes.values():
            yield from nodes


@dataclass
class SimProject:
    project_id: str
    number: int
    parent: str
    display_name: str
    state: str
    labels: dict[str, str]


@dataclass
class SimFolder:
    name: str  # folders/N
    parent: str
    display_name: str


@dataclass
class JournalEntry:
    at: float  # simulated seconds
    method: str
    target: str
    detail: dict[str, Any]
    result: str  # "accepted <op>", "refused <CODE>", "created", "deleted"
    duplicate: bool = False


@dataclass
class Invariants:
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    breakage: list[dict[str, Any]] = field(default_factory=list)


class Fleet:
    """Every simulated resource, and the GKE rules that govern changing them."""

    EPOCH = 1_790_000_000.0  # simulated wall-clock start (2026), for Operation timestamps

    def __init__(self, spec: FleetSpec, clock: Clock | None = None) -> None:
        self.spec = spec
        self.clock = clock or Clock()
        self.faults = FaultInjector(spec.faults)
        self.lock = threading.RLock()
        self.organization = f"organizations/{spec.organization}"
        self.folders: dict[str, SimFolder] = {}
        self.projects: dict[str, SimProject] = {}
        self.clusters: dict[str, SimCluster] = {}
        self._by_project: dict[str, list[SimCluster]] = defaultdict(list)
        self.operations: dict[str, SimOperation] = {}
        self.journal: list[JournalEntry] = []
        self.invariants = Invariants()
        self.initial_kubelet: dict[str, dict[str, Any]] = {}  # pool path -> non-port kubelet fields at start
        self._ids = itertools.count(1)
        self._build(spec)

    # ----- construction -------------------------------------------------------------------------------------

    def _build(self, spec: FleetSpec) -> None:
        for folder in spec.folders:
            name = f"folders/{folder.id}"
            self.folders[name] = SimFolder(
                name, folder.parent or self.organization, folder.display_name or name
            )
        for i, proj in enumerate(spec.projects):
            number = proj.number or 100000000000 + i
            self.projects[proj.id] = SimProject(
                proj.id,
                number,
                proj.parent or self.organization,
                proj.display_name or proj.id,
                proj.state,
                dict(proj.labels),
            )
            for cspec in proj.clusters:
                cluster = self._build_cluster(proj.id, cspec)
                self.clusters[cluster.path] = cluster
                self._by_project[proj.id].append(cluster)

    def _build_cluster(self, project: str, spec: ClusterSpec) -> SimCluster:
        autopilot = spec.mode == "autopilot"
        msg = container_v1.Cluster(
            name=spec.name,
            location=spec.location,
            zone=spec.location,
            self_link=f"https://container.googleapis.com/v1/projects/{project}/locations/{spec.location}/clusters/{spec.name}",
            status=container_v1.Cluster.Status[spec.status],
            current_master_version=spec.version,
            initial_cluster_version=spec.version,
            current_node_version=spec.version,
            endpoint="",
            resource_labels=dict(spec.labels),
            create_time="2025-01-15T10:00:00+00:00",
        )
        msg.autopilot.enabled = autopilot
        msg.release_channel.channel = container_v1.ReleaseChannel.Channel[spec.release_channel]
        msg.autoscaling.enable_node_autoprovisioning = spec.nap or autopilot
        if not autopilot and spec.default_port != "unset":
            msg.node_pool_defaults.node_config_defaults.node_kubelet_config = kubelet_config(
                spec.default_port
            )
        if (autopilot or spec.nap) and spec.autoconfig_port != "unset":
            msg.node_pool_auto_config.node_kubelet_config = kubelet_config(spec.autoconfig_port)
        if spec.nap and spec.autoconfig_port != "unset":
            msg.autoscaling.autoprovisioning_node_pool_defaults.insecure_kubelet_readonly_port_enabled = (
                spec.autoconfig_port == "enabled"
            )
        pools = spec.pools or [PoolSpec(name="default-pool" if not autopilot else "default-pool")]
        cluster = SimCluster(
            project, spec.location, msg, {}, {}, list(spec.agents), spec.workloads, dict(spec.labels)
        )
        for pspec in pools:
            pool = container_v1.NodePool(
                name=pspec.name,
                version=pspec.version or spec.version,
                status=container_v1.NodePool.Status[pspec.status],
                initial_node_count=pspec.nodes,
                self_link=f"{msg.self_link}/nodePools/{pspec.name}",
            )
            pool.config.machine_type = "e2-standard-4"
            if pspec.port != "unset" or pspec.kubelet:
                pool.config.kubelet_config = kubelet_config(pspec.port, pspec.kubelet)
            pool.autoscaling.autoprovisioned = pspec.autoprovisioned
            msg.node_pools.append(pool)
            self.initial_kubelet[f"{cluster.path}/nodePools/{pspec.name}"] = dict(pspec.kubelet)
            base = {"clean": 0, "in_use": 40, "used_before": 120}[pspec.usage]
            rate = pspec.rate_per_minute if pspec.usage == "in_use" else 0.0
            cluster.usage[pspec.name] = (base, rate)
            open_ = self._port_open(cluster, pspec.name)
            cluster.nodes[pspec.name] = [
                self._new_node(cluster, pspec.name, i, 0.0, open_) for i in range(pspec.nodes)
            ]
        if msg.node_pools and "kubelet_config" in msg.node_pools[0].config:
            msg.node_config.kubelet_config = msg.node_pools[0].config.kubelet_config
        return cluster

    def _new_node(self, cluster: SimCluster, pool: str, index: int, at: float, port_open: bool) -> SimNode:
        digest = hashlib.sha1(f"{cluster.path}/{pool}/{at}".encode()).hexdigest()[:8]
        base, rate = cluster.usage.get(pool, (0, 0.0))
        return SimNode(
            name=f"gke-{cluster.msg.name}-{pool}-{digest}-{index:04d}"[:63],
            pool=pool,
            booted_at=at,
            port_open=port_open,
            readonly_base=base if at == 0.0 else 0,
            readonly_rate=rate,
        )

    def _port_open(self, cluster: SimCluster, pool: str) -> bool:
        if cluster.autopilot:
            setting = port_of(cluster.msg.node_pool_auto_config.node_kubelet_config)
        else:
            setting = port_of(cluster.pool(pool).config.kubelet_config)
        if setting == "unset":  # the version's default: enabled on clusters created before 1.32
            created = version_tuple(cluster.msg.initial_cluster_version) or (0, 0, 0, 0)
            return created < (1, 32, 0, 0)
        return setting == "enabled"

    # ----- reads --------------------------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self.lock:
            yield

    def now(self) -> float:
        return self.clock.now()

    def project(self, project_id: str) -> SimProject:
        proj = self.projects.get(project_id)
        if proj is None:
            # Google answers 403 for projects that do not exist or that the caller cannot see.
            raise SimError(
                grpc.StatusCode.PERMISSION_DENIED, f"Permission denied on resource project {project_id}."
            )
        return proj

    def check_project_access(self, project_id: str) -> None:
        self.project(project_id)
        if project_id in self.spec.faults.permission_denied_projects:
            raise SimError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Required 'container.clusters.list' permission(s) for 'projects/{project_id}'.",
            )
        if project_id in self.spec.faults.api_disabled_projects:
            raise SimError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Kubernetes Engine API has not been used in project {project_id} before or it is disabled. "
                f"Enable it by visiting https://console.developers.google.com/apis/api/container.googleapis.com/"
                f"overview?project={project_id} then retry.",
            )

    def cluster(self, path: str) -> SimCluster:
        with self.lock:
            cluster = self.clusters.get(path)
            if cluster is None:
                project = path.split("/")[1] if path.startswith("projects/") else ""
                if project:
                    self.check_project_access(project)
                raise SimError(grpc.StatusCode.NOT_FOUND, f"Not found: {path}.")
            self.check_project_access(cluster.project)
            self._settle(cluster)
            return cluster

    def list_clusters(
        self, project_id: str, location: str = "-"
    ) -> tuple[list[container_v1.Cluster], list[str]]:
        """Clusters of a project (deep copies) and the zones that did not answer."""
        with self.lock:
            self.check_project_access(project_id)
            missing = list(self.spec.faults.missing_zones.get(project_id, []))
            out = []
            for cluster in self._by_project.get(project_id, ()):
                if location != "-" and cluster.location != location:
                    continue
                if cluster.location in missing:
                    continue
                self._settle(cluster)
                out.append(container_v1.Cluster.deserialize(container_v1.Cluster.serialize(cluster.msg)))
            return out, missing

    def get_operation(self, name: str) -> container_v1.Operation:
        with self.lock:
            if name.startswith("projects/"):
                self.check_project_access(name.split("/")[1])
            op = self.operations.get(name)
            if op is None:
                raise SimError(grpc.StatusCode.NOT_FOUND, f"Operation {name} not found.")
            self.check_project_access(op.cluster.split("/")[1])
            self._settle(self.clusters[op.cluster])
            return container_v1.Operation.deserialize(container_v1.Operation.serialize(op.msg))

    def list_operations(self, project_id: str, location: str = "-") -> list[container_v1.Operation]:
        with self.lock:
            self.check_project_access(project_id)
            out = []
            for op in self.operations.values():
                c = self.clusters[op.cluster]
                if c.project == project_id and (location == "-" or c.location == location):
                    self._settle(c)
                    out.append(container_v1.Operation.deserialize(container_v1.Operation.serialize(op.msg)))
            return out

    # ----- mutations ----------------------------------------------------------------------------------------

    def update_cluster(self, path: str, update: container_v1.ClusterUpdate) -> container_v1.Operation:
        with self.lock:
            cluster = self.cluster(path)
            detail = {k: _plain(getattr(update, k)) for k in _set_fields(update)}
            fields = set(detail)
            supported = {"desired_node_kubelet_config", "desired_node_pool_auto_config_kubelet_config"}
            if not fields:
                raise self._refuse(
                    "UpdateCluster",
                    path,
                    detail,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "Cluster.update must set one desired_* field.",
                )
            if fields - supported:
                raise self._refuse(
                    "UpdateCluster",
                    path,
                    detail,
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"gkesim does not simulate {sorted(fields - supported)}.",
                )
            self._precheck(cluster, "UpdateCluster", path, detail, cluster.msg.current_master_version)
            if "desired_node_kubelet_config" in fields:
                if cluster.autopilot:
                    raise self._refuse(
                        "UpdateCluster",
                        path,
                        detail,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "Setting node_pool_defaults.node_config_defaults.node_kubelet_config is not allowed on "
                        "GKE Autopilot clusters; use desired_node_pool_auto_config_kubelet_config.",
                    )
                new = update.desired_node_kubelet_config
                current = cluster.msg.node_pool_defaults.node_config_defaults.node_kubelet_config
                duplicate = (
                    _same(current, new)
                    if "node_kubelet_config" in cluster.msg.node_pool_defaults.node_config_defaults
                    else False
                )

                def effect(at: float, new=new) -> None:
                    cluster.msg.node_pool_defaults.node_config_defaults.node_kubelet_config = new

                duration = self.spec.timings.update_cluster
            else:
                new = update.desired_node_pool_auto_config_kubelet_config
                has = "node_kubelet_config" in cluster.msg.node_pool_auto_config
                duplicate = has and _same(cluster.msg.node_pool_auto_config.node_kubelet_config, new)

                def effect(at: float, new=new) -> None:
                    cluster.msg.node_pool_auto_config.node_kubelet_config = new
                    if cluster.autopilot:  # Autopilot rolls every node onto the new setting
                        for pool in list(cluster.nodes):
                            self._recreate(cluster, pool, at)

                duration = self.spec.timings.update_cluster
                if cluster.autopilot:
                    duration += self.spec.timings.autopilot_per_node * sum(1 for _ in cluster.all_nodes())
            return self._start(
                cluster, "UPDATE_CLUSTER", "UpdateCluster", detail, duration, effect, duplicate
            )

    def update_node_pool(self, request: container_v1.UpdateNodePoolRequest) -> container_v1.Operation:
        with self.lock:
            pool_path = request.name or (
                f"projects/{request.project_id}/locations/{request.zone}/clusters/{request.cluster_id}"
                f"/nodePools/{request.node_pool_id}"
            )
            cluster_path, _, pool_name = pool_path.partition("/nodePools/")
            cluster = self.cluster(cluster_path)
            detail = {k: _plain(getattr(request, k)) for k in _set_fields(request) if k != "name"}
            if cluster.autopilot:
                raise self._refuse(
                    "UpdateNodePool",
                    pool_path,
                    detail,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "Node pools of GKE Autopilot clusters are managed by Autopilot and cannot be updated.",
                )
            pool = cluster.pool(pool_name)
            if "kubelet_config" not in request:
                raise self._refuse(
                    "UpdateNodePool",
                    pool_path,
                    detail,
                    grpc.StatusCode.UNIMPLEMENTED,
                    "gkesim simulates only kubelet_config node pool updates.",
                )
            self._precheck(cluster, "UpdateNodePool", pool_path, detail, pool.version)
            new = request.kubelet_config
            duplicate = "kubelet_config" in pool.config and _same(pool.config.kubelet_config, new)

            def effect(at: float, new=new) -> None:
                pool.config.kubelet_config = new  # replaced whole, as GKE does: what is not sent is lost
                if cluster.msg.node_pools and cluster.msg.node_pools[0].name == pool_name:
                    cluster.msg.node_config.kubelet_config = new
                self._recreate(cluster, pool_name, at)

            nodes = len(cluster.nodes.get(pool_name, []))
            duration = self.spec.timings.update_node_pool + self.spec.timings.per_node * nodes
            return self._start(
                cluster,
                "UPGRADE_NODES",
                "UpdateNodePool",
                detail,
                duration,
                effect,
                duplicate,
                pool=pool_name,
                target=pool_path,
            )

    def _precheck(self, cluster: SimCluster, method: str, target: str, detail: dict, version: str) -> None:
        if cluster.op is not None:
            self.invariants.conflicts.append(
                {"at": self.now(), "method": method, "target": target, "running": cluster.op.msg.name}
            )
            raise self._refuse(
                method,
                target,
                detail,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Cluster is running incompatible operation {cluster.op.msg.name}.",
            )
        if cluster.msg.status != container_v1.Cluster.Status.RUNNING:
            raise self._refuse(
                method,
                target,
                detail,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Cluster {cluster.path} is {cluster.msg.status.name}; it must be RUNNING.",
            )
        if not supports_port_setting(version):
            raise self._refuse(
                method,
                target,
                detail,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"insecure_kubelet_readonly_port_enabled requires GKE version 1.26.4-gke.500 or later; "
                f"{target} runs {version}.",
            )

    def _refuse(
        self, method: str, target: str, detail: dict, code: grpc.StatusCode, message: str
    ) -> SimError:
        self.journal.append(JournalEntry(self.now(), method, target, detail, f"refused {code.name}"))
        return SimError(code, message)

    def _start(
        self,
        cluster: SimCluster,
        op_type: str,
        method: str,
        detail: dict,
        duration: float,
        effect: Callable[[float], None],
        duplicate: bool,
        pool: str | None = None,
        target: str | None = None,
    ) -> container_v1.Operation:
        now = self.now()
        op_id = f"operation-{int(self.EPOCH + now) * 1000}-{next(self._ids):08x}"
        faults = self.spec.faults
        stuck = cluster.path in faults.stuck_operations or self.faults.chance(faults.stuck_operation_rate)
        fails = False
        if cluster.path in faults.failing_operations:
            faults.failing_operations.remove(cluster.path)  # fails once, then behaves
            fails = True
        elif self.faults.chance(faults.failing_operation_rate):
            fails = True
        target_link = f"{cluster.msg.self_link}/nodePools/{pool}" if pool else cluster.msg.self_link
        msg = container_v1.Operation(
            name=op_id,
            zone=cluster.location,
            location=cluster.location,
            operation_type=container_v1.Operation.Type[op_type],
            status=container_v1.Operation.Status.RUNNING,
            self_link=f"https://container.googleapis.com/v1/projects/{cluster.project}/locations/{cluster.location}/operations/{op_id}",
            target_link=target_link,
            start_time=_ts(now, self.EPOCH).ToJsonString(),
        )
        op = SimOperation(msg, cluster.path, math.inf if stuck else now + duration, effect, fails, pool)
        self.operations[op.path] = op
        cluster.op = op
        cluster.msg.status = container_v1.Cluster.Status.RECONCILING
        if pool:
            cluster.pool(pool).status = container_v1.NodePool.Status.RECONCILING
        self.journal.append(
            JournalEntry(now, method, target or cluster.path, detail, f"accepted {op_id}", duplicate)
        )
        return container_v1.Operation.deserialize(container_v1.Operation.serialize(msg))

    def _settle(self, cluster: SimCluster) -> None:
        op = cluster.op
        if op is None or self.now() < op.end_at:
            return
        if op.fails:
            op.msg.error = status_pb2.Status(
                code=13,
                message="Internal error while updating nodes: timed out waiting for node to become ready.",
            )
            op.msg.status_message = op.msg.error.message
        else:
            op.effect(op.end_at)
        op.msg.status = container_v1.Operation.Status.DONE
        op.msg.end_time = _ts(op.end_at, self.EPOCH).ToJsonString()
        cluster.op = None
        cluster.msg.status = container_v1.Cluster.Status.RUNNING
        if op.pool:
            cluster.pool(op.pool).status = container_v1.NodePool.Status.RUNNING

    def settle_all(self) -> None:
        with self.lock:
            for cluster in self.clusters.values():
                self._settle(cluster)

    def _recreate(self, cluster: SimCluster, pool: str, at: float) -> None:
        old = cluster.nodes.get(pool, [])
        open_ = self._port_open(cluster, pool)
        fresh = [self._new_node(cluster, pool, i, at, open_) for i in range(len(old))]
        for node in fresh:
            if node.in_use and not node.port_open:
                self.invariants.breakage.append(
                    {
                        "at": at,
                        "cluster": cluster.path,
                        "pool": pool,
                        "node": node.name,
                        "why": "port 10255 closed while a workload on the node still reads it",
                    }
                )
        cluster.nodes[pool] = fresh

    # ----- test and operator hooks --------------------------------------------------------------------------

    def set_usage(self, cluster_path: str, pool: str, usage: str, rate_per_minute: float = 6.0) -> None:
        """Change what the workloads on a pool do (a migration finished, or a new agent started)."""
        with self.lock:
            cluster = self.clusters[cluster_path]
            rate = rate_per_minute if usage == "in_use" else 0.0
            base = {"clean": 0, "in_use": 40, "used_before": 120}[usage]
            cluster.usage[pool] = (base, rate)
            for node in cluster.nodes.get(pool, []):
                node.readonly_rate = rate
                if usage == "clean":
                    node.readonly_base = 0

    def lost_settings(self) -> list[dict[str, Any]]:
        """Kubelet settings a pool had at start that it no longer has (what a careless update wipes)."""
        lost = []
        with self.lock:
            self.settle_all()
            for cluster in self.clusters.values():
                for pool in cluster.msg.node_pools:
                    before = _plain(
                        kubelet_config(
                            "unset", self.initial_kubelet.get(f"{cluster.path}/nodePools/{pool.name}", {})
                        )
                    )
                    now = _plain(pool.config.kubelet_config) if "kubelet_config" in pool.config else {}
                    for key, value in before.items():
                        if now.get(key) != value:
                            lost.append(
                                {
                                    "pool": f"{cluster.path}/nodePools/{pool.name}",
                                    "setting": key,
                                    "before": value,
                                    "after": now.get(key),
                                }
                            )
        return lost

    def invariant_report(self) -> dict[str, Any]:
        with self.lock:
            self.settle_all()
            mutations = [e for e in self.journal if e.method in ("UpdateCluster", "UpdateNodePool")]
            return {
                "mutations": len(mutations),
                "accepted": sum(1 for e in mutations if e.result.startswith("accepted")),
                "duplicates": [vars(e) for e in mutations if e.duplicate],
                "conflicts": list(self.invariants.conflicts),
                "breakage": list(self.invariants.breakage),
                "lost_settings": self.lost_settings(),
                "faults_injected": dict(self.faults.injected),
            }

    def record(self, method: str, target: str, detail: dict[str, Any], result: str) -> None:
        """Journal a mutation made outside the container API (Kubernetes objects)."""
        with self.lock:
            self.journal.append(JournalEntry(self.now(), method, target, detail, result))


def _set_fields(msg: Any) -> list[str]:
    pb = type(msg).pb(msg)
    return [fd.name for fd, _ in pb.ListFields()]


def _plain(value: Any) -> Any:
    if hasattr(type(value), "pb") and hasattr(type(value), "to_dict"):
        return type(value).to_dict(
            value, preserving_proto_field_name=True, always_print_fields_with_no_presence=False
        )
    return value


def _same(a: container_v1.NodeKubeletConfig, b: container_v1.NodeKubeletConfig) -> bool:
    return container_v1.NodeKubeletConfig.serialize(a) == container_v1.NodeKubeletConfig.serialize(b)
