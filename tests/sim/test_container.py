"""The simulated ClusterManager, driven through the real google-cloud-container clients (sync and async)."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import container_v1
from google.cloud.container_v1.services.cluster_manager.transports import ClusterManagerGrpcAsyncIOTransport
from google.rpc import error_details_pb2

from tests.sim.grpc_helpers import GrpcSim, grpc_sim

PORT = "insecure_kubelet_readonly_port_enabled"
STD = "projects/alpha/locations/us-central1/clusters/std"
AUTO = "projects/alpha/locations/europe-west1/clusters/auto"
OLD = "projects/alpha/locations/us-east1-b/clusters/old"
NAP = "projects/beta/locations/us-central1/clusters/nap"
OperationStatus = container_v1.Operation.Status
ClusterStatus = container_v1.Cluster.Status

BASE: dict[str, Any] = {
    "projects": [
        {
            "id": "alpha",
            "clusters": [
                {
                    "name": "std",
                    "location": "us-central1",
                    "version": "1.30.5-gke.1014001",
                    "pools": [
                        {
                            "name": "default-pool",
                            "nodes": 2,
                            "kubelet": {"cpu_manager_policy": "static", "pod_pids_limit": 4096},
                        },
                        {"name": "spot", "nodes": 1, "port": "enabled"},
                        {"name": "legacy", "nodes": 1, "version": "1.26.3-gke.1000"},
                    ],
                },  # fmt: skip
                {
                    "name": "auto",
                    "location": "europe-west1",
                    "mode": "autopilot",
                    "pools": [{"name": "default-pool", "nodes": 2}],
                },  # fmt: skip
                {"name": "old", "location": "us-east1-b", "version": "1.25.16-gke.1041000"},
            ],
        },
        {"id": "beta", "clusters": [{"name": "nap", "nap": True}]},
        {"id": "denied", "clusters": [{"name": "x"}]},
        {"id": "disabled", "clusters": [{"name": "y"}]},
    ],
    "faults": {"permission_denied_projects": ["denied"], "api_disabled_projects": ["disabled"]},
}


def spec(**faults: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["faults"].update(faults)
    return out


@pytest.fixture
def sim() -> GrpcSim:
    with grpc_sim(spec()) as s:
        yield s


def port_only(value: bool = False) -> container_v1.NodeKubeletConfig:
    return container_v1.NodeKubeletConfig(**{PORT: value})


def disable_pool(sim: GrpcSim, cluster: str, pool: str, config: container_v1.NodeKubeletConfig | None = None):
    request = container_v1.UpdateNodePoolRequest(
        name=f"{cluster}/nodePools/{pool}",
        node_version="-",
        image_type="-",
        kubelet_config=config or port_only(),
    )
    return sim.container.update_node_pool(request=request)


def op_name(cluster: str, op: container_v1.Operation) -> str:
    project, location = cluster.split("/")[1], cluster.split("/")[3]
    return f"projects/{project}/locations/{location}/operations/{op.name}"


def pool_of(cluster: container_v1.Cluster, name: str) -> container_v1.NodePool:
    return next(p for p in cluster.node_pools if p.name == name)


# ----- reads ------------------------------------------------------------------------------------------------


def test_list_clusters_all_locations_and_missing_zones() -> None:
    with grpc_sim(spec(missing_zones={"alpha": ["europe-west1"]})) as sim:
        response = sim.container.list_clusters(parent="projects/alpha/locations/-")
        assert sorted(c.name for c in response.clusters) == ["old", "std"]
        assert list(response.missing_zones) == ["europe-west1"]
        # the deprecated form, and one location
        legacy = sim.container.list_clusters(project_id="alpha", zone="-")
        assert sorted(c.name for c in legacy.clusters) == ["old", "std"]
        one = sim.container.list_clusters(parent="projects/alpha/locations/us-east1-b")
        assert [c.name for c in one.clusters] == ["old"]
        # another project has no missing zones
        beta = sim.container.list_clusters(parent="projects/beta/locations/-")
        assert [c.name for c in beta.clusters] == ["nap"] and not beta.missing_zones


def test_list_clusters_every_location_without_faults(sim: GrpcSim) -> None:
    response = sim.container.list_clusters(parent="projects/alpha/locations/-")
    assert sorted(c.name for c in response.clusters) == ["auto", "old", "std"]
    auto = next(c for c in response.clusters if c.name == "auto")
    assert auto.autopilot.enabled and auto.location == "europe-west1"


def test_permission_denied_api_disabled_and_unknown_projects(sim: GrpcSim) -> None:
    with pytest.raises(exceptions.PermissionDenied) as denied:
        sim.container.list_clusters(parent="projects/denied/locations/-")
    assert "container.clusters.list" in denied.value.message and denied.value.reason is None
    with pytest.raises(exceptions.PermissionDenied) as disabled:
        sim.container.list_clusters(parent="projects/disabled/locations/-")
    assert "has not been used in project disabled" in disabled.value.message
    assert disabled.value.reason == "SERVICE_DISABLED"  # ErrorInfo, as Google sends for a disabled API
    with pytest.raises(exceptions.PermissionDenied):
        sim.container.list_clusters(parent="projects/nosuch/locations/-")
    with pytest.raises(exceptions.PermissionDenied):
        sim.container.get_cluster(name="projects/denied/locations/us-central1/clusters/x")


def test_get_cluster_and_node_pools(sim: GrpcSim) -> None:
    cluster = sim.container.get_cluster(name=STD)
    assert cluster.status == ClusterStatus.RUNNING
    assert cluster.current_master_version == "1.30.5-gke.1014001"
    assert [p.name for p in cluster.node_pools] == ["default-pool", "spot", "legacy"]
    default = pool_of(cluster, "default-pool").config.kubelet_config
    assert default.cpu_manager_policy == "static" and default.pod_pids_limit == 4096
    assert PORT not in default  # unset, not False
    spot = pool_of(cluster, "spot").config.kubelet_config
    assert PORT in spot and getattr(spot, PORT) is True

    legacy = sim.container.get_cluster(project_id="alpha", zone="us-central1", cluster_id="std")
    assert legacy == cluster

    pool = sim.container.get_node_pool(name=f"{STD}/nodePools/legacy")
    assert pool.version == "1.26.3-gke.1000" and pool.status == container_v1.NodePool.Status.RUNNING
    same = sim.container.get_node_pool(
        project_id="alpha", zone="us-central1", cluster_id="std", node_pool_id="legacy"
    )
    assert same == pool

    pools = sim.container.list_node_pools(parent=STD)
    assert [p.name for p in pools.node_pools] == ["default-pool", "spot", "legacy"]
    pools_legacy = sim.container.list_node_pools(project_id="alpha", zone="us-central1", cluster_id="std")
    assert pools_legacy == pools


def test_not_found_and_invalid_names(sim: GrpcSim) -> None:
    with pytest.raises(exceptions.NotFound):
        sim.container.get_cluster(name="projects/alpha/locations/us-central1/clusters/nope")
    with pytest.raises(exceptions.NotFound):
        sim.container.get_node_pool(name=f"{STD}/nodePools/nope")
    with pytest.raises(exceptions.NotFound):
        sim.container.get_operation(name="projects/alpha/locations/us-central1/operations/operation-1")
    with pytest.raises(exceptions.InvalidArgument):
        sim.container.get_cluster(name="alpha/std")
    with pytest.raises(exceptions.InvalidArgument):
        sim.container.get_node_pool(name=STD)  # a cluster name where a pool name belongs
    with pytest.raises(exceptions.InvalidArgument):
        sim.container.get_cluster(request=container_v1.GetClusterRequest())


def test_returned_clusters_are_copies(sim: GrpcSim) -> None:
    first = sim.container.get_cluster(name=STD)
    first.node_pools[0].config.kubelet_config.cpu_manager_policy = "none"
    assert (
        sim.container.get_cluster(name=STD).node_pools[0].config.kubelet_config.cpu_manager_policy == "static"
    )
    assert sim.fleet.clusters[STD].msg.node_pools[0].config.kubelet_config.cpu_manager_policy == "static"


# ----- node pool updates ------------------------------------------------------------------------------------


def test_update_node_pool_port_only_replaces_whole_config(sim: GrpcSim) -> None:
    op = disable_pool(sim, STD, "default-pool")
    assert op.status == OperationStatus.RUNNING
    assert op.operation_type == container_v1.Operation.Type.UPGRADE_NODES
    assert op.target_link.endswith("/clusters/std/nodePools/default-pool")

    during = sim.container.get_cluster(name=STD)
    assert during.status == ClusterStatus.RECONCILING
    assert pool_of(during, "default-pool").status == container_v1.NodePool.Status.RECONCILING
    assert sim.container.get_operation(name=op_name(STD, op)).status == OperationStatus.RUNNING

    sim.advance(60 + 30 * 2 - 1)  # update_node_pool + per_node x 2 nodes, one second short
    assert sim.container.get_operation(name=op_name(STD, op)).status == OperationStatus.RUNNING
    sim.advance(1)
    done = sim.container.get_operation(name=op_name(STD, op))
    assert done.status == OperationStatus.DONE and not done.error.message and done.end_time

    after = sim.container.get_cluster(name=STD)
    assert after.status == ClusterStatus.RUNNING
    cfg = pool_of(after, "default-pool").config.kubelet_config
    assert PORT in cfg and getattr(cfg, PORT) is False
    assert cfg.cpu_manager_policy == "" and cfg.pod_pids_limit == 0  # what was not sent is gone
    lost = {item["setting"] for item in sim.fleet.lost_settings()}
    assert lost == {"cpu_manager_policy", "pod_pids_limit"}


def test_update_node_pool_with_whole_config_keeps_other_settings(sim: GrpcSim) -> None:
    pool = sim.container.get_node_pool(name=f"{STD}/nodePools/default-pool")
    config = container_v1.NodeKubeletConfig(pool.config.kubelet_config)
    setattr(config, PORT, False)
    op = disable_pool(sim, STD, "default-pool", config)
    sim.advance(3600)
    assert sim.container.get_operation(name=op_name(STD, op)).status == OperationStatus.DONE
    cfg = sim.container.get_node_pool(name=f"{STD}/nodePools/default-pool").config.kubelet_config
    assert getattr(cfg, PORT) is False and PORT in cfg
    assert cfg.cpu_manager_policy == "static" and cfg.pod_pids_limit == 4096
    assert sim.fleet.lost_settings() == []


def test_second_update_during_operation_is_refused_and_recorded(sim: GrpcSim) -> None:
    first = disable_pool(sim, STD, "spot")
    with pytest.raises(exceptions.FailedPrecondition) as refused:
        disable_pool(sim, STD, "legacy")
    assert "incompatible operation" in refused.value.message and first.name in refused.value.message
    with pytest.raises(exceptions.FailedPrecondition):
        sim.container.update_cluster(
            name=STD, update=container_v1.ClusterUpdate(desired_node_kubelet_config=port_only())
        )
    conflicts = sim.fleet.invariants.conflicts
    assert [c["method"] for c in conflicts] == ["UpdateNodePool", "UpdateCluster"]
    assert conflicts[0]["target"] == f"{STD}/nodePools/legacy" and conflicts[0]["running"] == first.name
    assert sim.fleet.journal[-1].result == "refused FAILED_PRECONDITION"

    sim.advance(60 + 30)
    assert sim.container.get_operation(name=op_name(STD, first)).status == OperationStatus.DONE
    # once the operation is over, the next change is accepted
    second = sim.container.update_cluster(
        name=STD, update=container_v1.ClusterUpdate(desired_node_kubelet_config=port_only())
    )
    assert second.status == OperationStatus.RUNNING


def test_node_pool_change_recreates_its_nodes(sim: GrpcSim) -> None:
    cluster = sim.fleet.clusters[STD]
    before = [(n.name, n.port_open) for n in cluster.nodes["spot"]]
    others = [n.name for n in cluster.nodes["default-pool"]]
    assert [open_ for _, open_ in before] == [True]
    disable_pool(sim, STD, "spot")
    sim.advance(60)
    sim.container.get_cluster(name=STD)  # still running: the nodes are the old ones
    assert [(n.name, n.port_open) for n in cluster.nodes["spot"]] == before
    sim.advance(30)
    sim.container.get_cluster(name=STD)
    after = cluster.nodes["spot"]
    assert len(after) == 1 and after[0].name != before[0][0] and after[0].port_open is False
    assert [n.name for n in cluster.nodes["default-pool"]] == others  # other pools untouched


def test_old_control_plane_and_old_pool_are_refused(sim: GrpcSim) -> None:
    with pytest.raises(exceptions.InvalidArgument) as old_cp:
        sim.container.update_cluster(
            name=OLD, update=container_v1.ClusterUpdate(desired_node_kubelet_config=port_only())
        )
    assert "1.26.4-gke.500" in old_cp.value.message
    with pytest.raises(exceptions.InvalidArgument) as old_pool:
        disable_pool(sim, STD, "legacy")
    assert "1.26.3-gke.1000" in old_pool.value.message
    assert sim.fleet.operations == {}


def test_failing_operation_is_done_with_error_and_changes_nothing() -> None:
    with grpc_sim(spec(failing_operations=[STD])) as sim:
        op = disable_pool(sim, STD, "spot")
        sim.advance(3600)
        failed = sim.container.get_operation(name=op_name(STD, op))
        assert failed.status == OperationStatus.DONE
        assert failed.error.code == 13 and "timed out" in failed.error.message
        assert failed.status_message == failed.error.message
        spot = sim.container.get_node_pool(name=f"{STD}/nodePools/spot").config.kubelet_config
        assert getattr(spot, PORT) is True  # unchanged
        assert sim.container.get_cluster(name=STD).status == ClusterStatus.RUNNING
        # it fails once; the retry goes through
        retry = disable_pool(sim, STD, "spot")
        sim.advance(3600)
        assert not sim.container.get_operation(name=op_name(STD, retry)).error.message
        assert (
            getattr(sim.container.get_node_pool(name=f"{STD}/nodePools/spot").config.kubelet_config, PORT)
            is False
        )


def test_stuck_operation_never_finishes() -> None:
    with grpc_sim(spec(stuck_operations=[STD])) as sim:
        op = disable_pool(sim, STD, "spot")
        sim.advance(10 * 24 * 3600)
        assert sim.container.get_operation(name=op_name(STD, op)).status == OperationStatus.RUNNING
        assert sim.container.get_cluster(name=STD).status == ClusterStatus.RECONCILING
        with pytest.raises(exceptions.FailedPrecondition):
            disable_pool(sim, STD, "default-pool")


def test_operations_listed_and_read_the_deprecated_way(sim: GrpcSim) -> None:
    op = disable_pool(sim, STD, "spot")
    listed = sim.container.list_operations(parent="projects/alpha/locations/-")
    assert [o.name for o in listed.operations] == [op.name]
    assert sim.container.list_operations(parent="projects/alpha/locations/europe-west1").operations == []
    legacy = sim.container.get_operation(project_id="alpha", zone="us-central1", operation_id=op.name)
    assert legacy.name == op.name and legacy.status == OperationStatus.RUNNING
    with pytest.raises(exceptions.PermissionDenied):
        sim.container.list_operations(parent="projects/denied/locations/-")


# ----- cluster updates --------------------------------------------------------------------------------------


def test_standard_cluster_default_changes_new_pools_only(sim: GrpcSim) -> None:
    op = sim.container.update_cluster(
        project_id="alpha",
        zone="us-central1",
        cluster_id="std",
        update=container_v1.ClusterUpdate(desired_node_kubelet_config=port_only()),
    )
    assert op.operation_type == container_v1.Operation.Type.UPDATE_CLUSTER
    assert sim.container.get_cluster(name=STD).status == ClusterStatus.RECONCILING
    sim.advance(60)
    assert sim.container.get_operation(name=op_name(STD, op)).status == OperationStatus.DONE
    cluster = sim.container.get_cluster(name=STD)
    defaults = cluster.node_pool_defaults.node_config_defaults.node_kubelet_config
    assert PORT in defaults and getattr(defaults, PORT) is False
    assert PORT not in pool_of(cluster, "default-pool").config.kubelet_config  # existing pools unchanged
    assert getattr(pool_of(cluster, "spot").config.kubelet_config, PORT) is True


def test_autopilot_rejects_node_pool_defaults_and_takes_auto_config(sim: GrpcSim) -> None:
    with pytest.raises(exceptions.InvalidArgument) as rejected:
        sim.container.update_cluster(
            name=AUTO, update=container_v1.ClusterUpdate(desired_node_kubelet_config=port_only())
        )
    assert "not allowed on GKE Autopilot" in rejected.value.message
    with pytest.raises(exceptions.InvalidArgument):
        disable_pool(sim, AUTO, "default-pool")

    nodes_before = {n.name for n in sim.fleet.clusters[AUTO].all_nodes()}
    op = sim.container.update_cluster(
        name=AUTO, update=container_v1.ClusterUpdate(desired_node_pool_auto_config_kubelet_config=port_only())
    )
    sim.advance(60 + 20 * 2)  # update_cluster + autopilot_per_node x 2 nodes
    assert sim.container.get_operation(name=op_name(AUTO, op)).status == OperationStatus.DONE
    cluster = sim.container.get_cluster(name=AUTO)
    assert getattr(cluster.node_pool_auto_config.node_kubelet_config, PORT) is False
    nodes_after = list(sim.fleet.clusters[AUTO].all_nodes())
    assert len(nodes_after) == 2 and not nodes_before & {n.name for n in nodes_after}
    assert all(not n.port_open for n in nodes_after)


def test_nap_auto_config_on_standard(sim: GrpcSim) -> None:
    op = sim.container.update_cluster(
        name=NAP, update=container_v1.ClusterUpdate(desired_node_pool_auto_config_kubelet_config=port_only())
    )
    sim.advance(60)
    assert sim.container.get_operation(name=op_name(NAP, op)).status == OperationStatus.DONE
    cluster = sim.container.get_cluster(name=NAP)
    assert getattr(cluster.node_pool_auto_config.node_kubelet_config, PORT) is False
    assert PORT not in cluster.node_pools[0].config.kubelet_config  # existing pools are not touched


# ----- injected faults --------------------------------------------------------------------------------------


def test_injected_unavailable_surfaces_without_retry_and_is_retried_by_get_methods() -> None:
    with grpc_sim(spec(error_rates={"GetCluster": {"UNAVAILABLE": 1.0}})) as sim:
        with pytest.raises(exceptions.ServiceUnavailable):
            sim.container.get_cluster(name=STD, retry=None)
        assert sim.container.list_clusters(
            parent="projects/alpha/locations/-"
        ).clusters  # other methods unaffected
    with grpc_sim(spec(error_rates={"GetCluster": {"UNAVAILABLE": 0.5}})) as sim:
        for _ in range(10):
            assert sim.container.get_cluster(name=STD).name == "std"  # the default retry hides them
        assert sim.fleet.faults.injected["GetCluster:UNAVAILABLE"] >= 3


def test_update_methods_are_not_retried_on_unavailable() -> None:
    with grpc_sim(spec(error_rates={"UpdateNodePool": {"UNAVAILABLE": 1.0}})) as sim:
        with pytest.raises(exceptions.ServiceUnavailable):
            disable_pool(sim, STD, "spot")
        assert sim.fleet.faults.injected["UpdateNodePool:UNAVAILABLE"] == 1
        assert sim.fleet.operations == {}


def test_quota_resource_exhausted_carries_retry_info() -> None:
    with grpc_sim(spec(quota_per_minute=3)) as sim:
        for _ in range(3):
            sim.container.get_cluster(name=STD)
        with pytest.raises(exceptions.ResourceExhausted) as exhausted:
            sim.container.get_cluster(name=STD, retry=None)
        retry_info = [d for d in exhausted.value.details if isinstance(d, error_details_pb2.RetryInfo)]
        assert len(retry_info) == 1
        delay = retry_info[0].retry_delay.ToTimedelta().total_seconds()
        assert 50 < delay <= 60
        assert exhausted.value.reason == "RATE_LIMIT_EXCEEDED"
        assert exhausted.value.code == 429
        # the quota is per project
        assert sim.container.get_cluster(name=NAP).name == "nap"


def test_latency_is_injected_outside_the_fleet_lock() -> None:
    with grpc_sim(spec(latency_ms={"GetCluster": 1000})) as sim:
        took: dict[str, float] = {}

        def slow() -> None:
            t0 = time.perf_counter()
            sim.container.get_cluster(name=STD)
            took["get"] = time.perf_counter() - t0

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.1)
        t0 = time.perf_counter()
        sim.container.list_clusters(parent="projects/alpha/locations/-")
        took["list"] = time.perf_counter() - t0
        thread.join()
        assert took["get"] >= 1.0
        assert took["list"] < 0.7


def test_async_client() -> None:
    with grpc_sim(spec()) as sim:

        async def run() -> tuple[list[container_v1.Cluster], container_v1.Operation]:
            channel = grpc.aio.insecure_channel(sim.address)
            try:
                client = container_v1.ClusterManagerAsyncClient(
                    transport=ClusterManagerGrpcAsyncIOTransport(channel=channel)
                )
                clusters = await asyncio.gather(*(client.get_cluster(name=STD) for _ in range(20)))
                op = await client.update_node_pool(
                    request=container_v1.UpdateNodePoolRequest(
                        name=f"{STD}/nodePools/spot", kubelet_config=port_only()
                    )
                )
                sim.advance(90)
                done = await client.get_operation(name=op_name(STD, op))
                with pytest.raises(exceptions.PermissionDenied):
                    await client.list_clusters(parent="projects/disabled/locations/-")
                return clusters, done
            finally:
                await channel.close()

        clusters, done = asyncio.run(run())
        assert len(clusters) == 20 and all(c.name == "std" for c in clusters)
        assert done.status == OperationStatus.DONE
