"""google.container.v1.ClusterManager over gRPC, backed by a `Fleet`.

Served with the client package's own message classes, so `ClusterManagerClient` (sync or async) talks to it
unchanged. Requests may name resources the current way (`name` / `parent`) or the deprecated way
(`project_id`, `zone`, `cluster_id`, `node_pool_id`, `operation_id`); `zone` "-" means every location.

Every call first sleeps any injected latency (outside the fleet lock), then applies injected errors and the
per-project quota (`fleet.faults.check`), then reads or changes state through `Fleet` only.
"""

from __future__ import annotations

import re

import grpc
from google.cloud import container_v1

from gkesim.fleet import Fleet
from gkesim.grpcutil import invalid, unary

SERVICE = "google.container.v1.ClusterManager"

_SEG = r"([^/]+)"
_PARENT_RE = re.compile(rf"^projects/{_SEG}/locations/{_SEG}$")
_CLUSTER_RE = re.compile(rf"^projects/{_SEG}/locations/{_SEG}/clusters/{_SEG}$")
_POOL_RE = re.compile(rf"^projects/{_SEG}/locations/{_SEG}/clusters/{_SEG}/nodePools/{_SEG}$")
_OPERATION_RE = re.compile(rf"^projects/{_SEG}/locations/{_SEG}/operations/{_SEG}$")


def _need(value: str, what: str) -> str:
    if not value:
        raise invalid(f"{what} must be set (or use the resource name).")
    return value


def parent_of(
    request: container_v1.ListClustersRequest | container_v1.ListOperationsRequest,
) -> tuple[str, str]:
    """(project, location) of a list request; location "-" means all."""
    if request.parent:
        m = _PARENT_RE.match(request.parent)
        if not m:
            raise invalid(f"Invalid parent {request.parent!r}: expected projects/PROJECT/locations/LOCATION.")
        return m.group(1), m.group(2)
    return _need(request.project_id, "project_id"), request.zone or "-"


def cluster_path_of(request: object, field: str = "name") -> tuple[str, str]:
    """(cluster path, project) from `name`/`parent` or the deprecated project_id/zone/cluster_id."""
    value = getattr(request, field)
    if value:
        m = _CLUSTER_RE.match(value)
        if not m:
            raise invalid(f"Invalid {field} {value!r}: expected projects/P/locations/L/clusters/C.")
        return value, m.group(1)
    project = _need(request.project_id, "project_id")
    zone = _need(request.zone, "zone")
    cluster = _need(request.cluster_id, "cluster_id")
    return f"projects/{project}/locations/{zone}/clusters/{cluster}", project


def pool_path_of(request: object) -> tuple[str, str, str]:
    """(cluster path, pool name, project) of a node pool request."""
    if request.name:
        m = _POOL_RE.match(request.name)
        if not m:
            raise invalid(
                f"Invalid name {request.name!r}: expected projects/P/locations/L/clusters/C/nodePools/NP."
            )
        cluster_path, _, pool = request.name.partition("/nodePools/")
        return cluster_path, pool, m.group(1)
    cluster_path, project = cluster_path_of(request)
    return cluster_path, _need(request.node_pool_id, "node_pool_id"), project


def operation_name_of(request: container_v1.GetOperationRequest) -> tuple[str, str]:
    if request.name:
        m = _OPERATION_RE.match(request.name)
        if not m:
            raise invalid(f"Invalid name {request.name!r}: expected projects/P/locations/L/operations/OP.")
        return request.name, m.group(1)
    project = _need(request.project_id, "project_id")
    zone = _need(request.zone, "zone")
    op = _need(request.operation_id, "operation_id")
    return f"projects/{project}/locations/{zone}/operations/{op}", project


def container_handlers(fleet: Fleet) -> list[grpc.GenericRpcHandler]:
    c = container_v1
    faults = fleet.faults

    def list_clusters(request: c.ListClustersRequest) -> bytes:
        faults.delay("ListClusters")
        project, location = parent_of(request)
        faults.check("ListClusters", project)
        clusters, missing = fleet.list_clusters(project, location)  # already deep copies
        response = c.ListClustersResponse.pb()(missing_zones=missing)
        response.clusters.extend(c.Cluster.pb(cluster) for cluster in clusters)
        return response.SerializeToString()

    def get_cluster(request: c.GetClusterRequest) -> bytes:
        faults.delay("GetCluster")
        path, project = cluster_path_of(request)
        faults.check("GetCluster", project)
        with fleet.lock:
            return c.Cluster.serialize(fleet.cluster(path).msg)

    def list_node_pools(request: c.ListNodePoolsRequest) -> bytes:
        faults.delay("ListNodePools")
        path, project = cluster_path_of(request, "parent")
        faults.check("ListNodePools", project)
        response = c.ListNodePoolsResponse.pb()()
        with fleet.lock:
            response.node_pools.extend(c.Cluster.pb(fleet.cluster(path).msg).node_pools)  # copies
        return response.SerializeToString()

    def get_node_pool(request: c.GetNodePoolRequest) -> bytes:
        faults.delay("GetNodePool")
        path, pool, project = pool_path_of(request)
        faults.check("GetNodePool", project)
        with fleet.lock:
            return c.NodePool.serialize(fleet.cluster(path).pool(pool))

    def update_cluster(request: c.UpdateClusterRequest) -> bytes:
        faults.delay("UpdateCluster")
        path, project = cluster_path_of(request)
        faults.check("UpdateCluster", project)
        return c.Operation.serialize(fleet.update_cluster(path, request.update))

    def update_node_pool(request: c.UpdateNodePoolRequest) -> bytes:
        faults.delay("UpdateNodePool")
        _, _, project = pool_path_of(request)
        faults.check("UpdateNodePool", project)
        return c.Operation.serialize(fleet.update_node_pool(request))

    def get_operation(request: c.GetOperationRequest) -> bytes:
        faults.delay("GetOperation")
        name, project = operation_name_of(request)
        faults.check("GetOperation", project)
        return c.Operation.serialize(fleet.get_operation(name))

    def list_operations(request: c.ListOperationsRequest) -> bytes:
        faults.delay("ListOperations")
        project, location = parent_of(request)
        faults.check("ListOperations", project)
        response = c.ListOperationsResponse.pb()()
        response.operations.extend(c.Operation.pb(op) for op in fleet.list_operations(project, location))
        return response.SerializeToString()

    methods = {
        "ListClusters": (c.ListClustersRequest, list_clusters),
        "GetCluster": (c.GetClusterRequest, get_cluster),
        "ListNodePools": (c.ListNodePoolsRequest, list_node_pools),
        "GetNodePool": (c.GetNodePoolRequest, get_node_pool),
        "UpdateCluster": (c.UpdateClusterRequest, update_cluster),
        "UpdateNodePool": (c.UpdateNodePoolRequest, update_node_pool),
        "GetOperation": (c.GetOperationRequest, get_operation),
        "ListOperations": (c.ListOperationsRequest, list_operations),
    }
    handlers = {name: unary(name, cls.deserialize, fn) for name, (cls, fn) in methods.items()}
    return [grpc.method_handlers_generic_handler(SERVICE, handlers)]
