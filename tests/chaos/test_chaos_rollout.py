"""Issue 8 §1: the rollout under every fault at once and SIGKILLed twice, judged from the simulator alone.

A 24-cluster fleet; the simulator injects 10% UNAVAILABLE and 2% DEADLINE_EXCEEDED on every gRPC method,
RESOURCE_EXHAUSTED past a per-project quota, fails 5% of operations, never finishes the operations of one cluster,
hangs the node reads of one pool, and never starts the probe pods of one Autopilot cluster. `portcullis rollout`
is killed at two seeded moments and started again; after the last run the simulator's state and journal must
show every eligible clear cluster disabled and every other one untouched, with no conflict, no breakage, no
duplicate mutation, no lost kubelet setting and no probe object left, and the last report must account for every
cluster exactly once (the stuck one as in_flight). Bounded to about three minutes on two busy cores.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.harness import categories, chaos_faults, expectations, judge, portcullis_config, run_chaos

SEED = 8
DEV, PROD, OPS = "chaos-dev-0001", "chaos-prod-0001", "chaos-ops-0001"
LOC = "us-central1"


def _path(project: str, name: str) -> str:
    return f"projects/{project}/locations/{LOC}/clusters/{name}"


def _std(name: str, **kw: object) -> dict:
    pools = kw.pop(
        "pools",
        [
            {"name": "a", "nodes": 2, "kubelet": {"pod_pids_limit": 2048}},
            {"name": "b", "nodes": 1, "kubelet": {"cpu_manager_policy": "static", "cpu_cfs_quota": True}},
        ],
    )
    return {"name": name, "location": LOC, "pools": pools, **kw}


def _ap(name: str, **kw: object) -> dict:
    return {
        "name": name,
        "location": LOC,
        "mode": "autopilot",
        "pools": [{"name": "default-pool", "nodes": 2}],
        **kw,
    }


FLEET = {
    "organization": "888888888888",
    "timings": {"update_cluster": 60, "update_node_pool": 60, "per_node": 30, "autopilot_per_node": 20},
    "projects": [
        {
            "id": DEV,
            "labels": {"env": "dev"},
            "clusters": [
                *[_std(f"std-{i}") for i in range(5)],
                _ap("ap-0"),
                _ap("ap-1"),
                _std("stuck-0"),  # its operations never finish
                _std("slow-0"),  # node reads of pool b hang
                _ap("ap-nostart"),  # probe pods never start
                _std(
                    "reader", agents=["telegraf"], pools=[{"name": "a", "usage": "in_use", "port": "enabled"}]
                ),
                _std("used", pools=[{"name": "a", "usage": "used_before"}]),
                _std("oldcp", version="1.25.16-gke.1041000"),
                _std("oldpool", pools=[{"name": "a"}, {"name": "legacy", "version": "1.26.3-gke.1000"}]),
            ],
        },
        {
            "id": PROD,
            "labels": {"env": "prod"},
            "clusters": [
                *[_std(f"p-{i}", labels={"env": "prod"}) for i in range(4)],
                _ap("ap-p0", labels={"env": "prod"}),
                _ap("ap-p1", labels={"env": "prod"}),
                _std("done-0", default_port="disabled", pools=[{"name": "a", "port": "disabled"}]),
            ],
        },
        {
            "id": OPS,
            "labels": {"env": "dev"},
            "clusters": [_std("ops-0"), _std("ops-1"), _ap("ops-ap")],
        },
    ],
}
FLEET["faults"] = chaos_faults(
    SEED,
    quota_per_minute=40,  # per project per 5 s window: bursts of a busy wave go past it
    quota_window_seconds=5,
    stuck=[_path(DEV, "stuck-0")],
    slow_nodes=[f"{_path(DEV, 'slow-0')}/b"],
    never_start=[_path(DEV, "ap-nostart")],
    failing=[_path(DEV, "std-1"), _path(DEV, "ap-1"), _path(PROD, "p-2")],
).model_dump()
WAVES = [
    {"name": "canary", "select": {"projects": [DEV]}, "max_clusters": 1, "concurrency": 1},
    # the stuck cluster counts as failed in its wave: a budget of 2 lets the rollout go on past it
    {"name": "dev", "select": {"project_labels": {"env": "dev"}}, "concurrency": 6, "failure_budget": 2},
    {"name": "rest", "select": {"all": True}, "concurrency": 6, "failure_budget": 2},
]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_rollout_survives_faults_and_kills(make_sim, prefect_api, tmp_path) -> None:
    sim = make_sim(FLEET, time_scale=0.01)
    expect = expectations(sim.fleet.spec)
    assert categories(expect) == {"disable": 17, "untouched": 6, "stuck": 1}, categories(expect)
    config = portcullis_config(sim, tmp_path / "portcullis.yaml", rollout={"waves": WAVES})

    started = time.monotonic()
    out = run_chaos(
        sim,
        config,
        tmp_path,
        kills=2,
        seed=SEED,
        kinds=["probe", "mutations"],
        kill_cap_seconds=60,
        final_timeout=240,
    )
    wall = time.monotonic() - started
    verdict = judge(sim, out.final_report, expect)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(tmp_path.glob("run*.log")))

    figures = (out.kills, out.run_seconds, verdict["faults_injected"], dict(out.calls))
    assert len(out.kills) == 2, (figures, logs)
    assert out.kills[0].probe_objects_live > 0, (
        "the first kill lands while a probe's objects are in a cluster"
    )
    assert out.kills[1].operations_running > 0, "the second kill lands while operations run"
    assert verdict["problems"] == [], (verdict, figures, logs)
    assert out.final_report["summary"]["clusters"] == len(expect) == 24
    assert out.final_exit == 1, "blocked and in-flight clusters keep the exit status at 1"
    assert list(verdict["in_flight"]) == [_path(DEV, "stuck-0")]
    # The faults really happened, everywhere at once, and were retried through.
    injected = verdict["faults_injected"]
    assert sum(n for k, n in injected.items() if k.endswith(":UNAVAILABLE")) >= 20, injected
    assert any(k.endswith(":DEADLINE_EXCEEDED") for k in injected), injected
    assert any(k.endswith(":RESOURCE_EXHAUSTED") for k in injected), injected
    assert any(k.startswith(("UpdateCluster:", "UpdateNodePool:")) for k in injected), injected
    assert out.retries_reported > 0
    failed_ops = [op for op in sim.fleet.operations.values() if op.msg.error.code]
    assert {op.cluster for op in failed_ops} >= {_path(DEV, "std-1"), _path(DEV, "ap-1"), _path(PROD, "p-2")}
    print(
        f"\nchaos: {len(expect)} clusters, {len(out.kills)} kills at {[k.trigger for k in out.kills]}, "
        f"{verdict['faults_total']} faults injected ({injected}), {len(failed_ops)} operations failed, "
        f"{out.retries_reported} retries in the final run, {sum(out.calls.values())} API calls, "
        f"runs {[round(s, 1) for s in out.run_seconds]} s, wall {wall:.1f} s"
    )
