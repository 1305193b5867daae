"""The generated benchmark fleet: exact sizes, determinism, a realistic mix, and that Fleet can run it."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from gkesim.fleet import Fleet, supports_port_setting, version_tuple
from gkesim.generate import generate_fleet
from gkesim.spec import FleetSpec
from tests.sim.grpc_helpers import grpc_sim


@pytest.fixture(scope="module")
def big() -> FleetSpec:
    return generate_fleet(10_000, 500, seed=0)


def clusters_of(spec: FleetSpec):
    return [c for p in spec.projects for c in p.clusters]


def test_exact_sizes_and_fast(big: FleetSpec) -> None:
    t0 = time.perf_counter()
    again = generate_fleet(10_000, 500, seed=0)
    assert time.perf_counter() - t0 < 5.0
    assert len(clusters_of(again)) == 10_000 and len(again.projects) == 500
    assert len({p.id for p in again.projects}) == 500
    assert len({p.number for p in again.projects}) == 500
    for p in again.projects:
        keys = [(c.location, c.name) for c in p.clusters]
        assert len(keys) == len(set(keys))


def test_deterministic_per_seed(big: FleetSpec) -> None:
    assert generate_fleet(300, 20, seed=7).model_dump() == generate_fleet(300, 20, seed=7).model_dump()
    assert generate_fleet(300, 20, seed=7).model_dump() != generate_fleet(300, 20, seed=8).model_dump()


def test_folder_tree_has_two_levels(big: FleetSpec) -> None:
    folders = {f"folders/{f.id}": f for f in big.folders}
    top = [f for f in folders.values() if f.parent is None]
    second = [f for f in folders.values() if f.parent is not None]
    assert top and second
    assert all(f.parent in folders and folders[f.parent].parent is None for f in second)
    parents = Counter(p.parent.split("/")[0] if p.parent else "organization" for p in big.projects)
    assert parents["folders"] > 400 and parents["organization"] > 0
    assert all(p.parent is None or p.parent in folders for p in big.projects)
    assert 1 <= sum(p.state == "DELETE_REQUESTED" for p in big.projects) <= 20
    assert all(not p.clusters for p in big.projects if p.state == "DELETE_REQUESTED")
    sizes = sorted((len(p.clusters) for p in big.projects), reverse=True)
    assert sizes[0] > 5 * (10_000 / 500) and sizes[-1] == 0  # skewed: some large projects, some empty


def test_realistic_mix(big: FleetSpec) -> None:
    clusters = clusters_of(big)
    n = len(clusters)
    modes = Counter(c.mode for c in clusters)
    assert 0.16 < modes["autopilot"] / n < 0.24
    standard = [c for c in clusters if c.mode == "standard"]
    assert 0.15 < sum(c.nap for c in standard) / len(standard) < 0.35
    old = sum(not supports_port_setting(c.version) for c in clusters)
    assert 0.01 < old / n < 0.06
    pools = [(c, p) for c in standard for p in c.pools]
    old_pools = sum(p.version is not None and not supports_port_setting(p.version) for _, p in pools)
    assert 0.01 < old_pools / len(pools) < 0.06
    assert all(
        version_tuple(p.version) <= version_tuple(c.version) or not supports_port_setting(p.version)
        for c, p in pools
        if p.version
    )
    kubelet = [p.kubelet for _, p in pools if p.kubelet]
    assert 0.10 < len(kubelet) / len(pools) < 0.20
    assert any(k.get("cpu_manager_policy") == "static" for k in kubelet)
    assert any(k.get("pod_pids_limit") == 4096 for k in kubelet)
    assert any(k.get("cpu_cfs_quota") is True for k in kubelet)

    def usage_of(c) -> str:
        kinds = {p.usage for p in c.pools}
        return "in_use" if "in_use" in kinds else ("used_before" if "used_before" in kinds else "clean")

    usage = Counter(usage_of(c) for c in clusters)
    assert 0.64 < usage["clean"] / n < 0.76
    assert 0.10 < usage["used_before"] / n < 0.22
    assert 0.10 < usage["in_use"] / n < 0.20
    assert all(bool(c.agents) == (usage_of(c) == "in_use") for c in clusters)  # agents exactly where in use

    assert sum(p.port == "disabled" for _, p in pools) > 0.03 * len(pools)
    assert sum(c.default_port == "disabled" for c in standard) > 0.05 * len(standard)
    autopilot = [c for c in clusters if c.mode == "autopilot"]
    assert sum(c.autoconfig_port == "disabled" for c in autopilot) > 0.05 * len(autopilot)
    assert Counter(c.labels["env"] for c in clusters).keys() == {"prod", "staging", "dev"}
    assert {p.labels["env"] for p in big.projects} == {"prod", "staging", "dev"}
    assert {len(c.pools) for c in clusters} == {1, 2, 3}
    assert {p.nodes for c in clusters for p in c.pools} == {1, 2, 3}


def test_in_use_pools_have_the_port_open_in_the_fleet() -> None:
    fleet = Fleet(generate_fleet(1000, 50, seed=1))
    in_use = [(c, pool) for c in fleet.clusters.values() for pool, (_, rate) in c.usage.items() if rate > 0]
    assert len(in_use) > 80
    assert all(node.port_open for c, pool in in_use for node in c.nodes[pool])
    closed = [n for c in fleet.clusters.values() for n in c.all_nodes() if not n.port_open]
    assert len(closed) > 100  # some ports are already closed (explicitly, or by the 1.32+ default)


def test_small_generated_fleet_runs_behind_the_real_clients() -> None:
    spec = generate_fleet(200, 12, seed=3)
    fleet = Fleet(spec)
    assert len(fleet.clusters) == 200
    busiest = max(spec.projects, key=lambda p: len(p.clusters))
    with grpc_sim(spec) as sim:
        listed = sim.container.list_clusters(parent=f"projects/{busiest.id}/locations/-")
        assert len(listed.clusters) == len(busiest.clusters)
        any_cluster = listed.clusters[0]
        path = f"projects/{busiest.id}/locations/{any_cluster.location}/clusters/{any_cluster.name}"
        assert sim.container.get_cluster(name=path).node_pools == any_cluster.node_pools
        folders = [f.name for f in sim.folders.list_folders(parent=sim.fleet.organization)]
        assert folders and all(f.startswith("folders/") for f in folders)
        assert len(list(sim.projects.search_projects(query="state:ACTIVE"))) == sum(
            p.state == "ACTIVE" for p in spec.projects
        )


def test_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError):
        generate_fleet(10, 0)
    with pytest.raises(ValueError):
        generate_fleet(-1, 5)
    assert clusters_of(generate_fleet(0, 3)) == []
