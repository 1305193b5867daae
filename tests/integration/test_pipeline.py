"""A pipelined wave (tasks/change/pipeline.py) against the simulator, whichever way its scan batches report verdicts.

The rollout flow passes a Prefect task that reports each cluster's verdict as soon as its readings are in; these
tests pass plain callables that report nothing early (a scanner that only returns its results) or fail outright,
and check from the simulator's journal that exactly the clear clusters are changed.
"""

from __future__ import annotations

import threading
import time

import pytest

from config.schema import Wave
from tasks.change.apply import Applier, OperationSlots
from tasks.change.pipeline import WaveRun, run_wave
from tasks.change.rollout import Outcome, disable_cluster
from tasks.change.waves import WavePlan
from tasks.reporting import progress
from tasks.usage.scan import Scanner, gate_decision
from tests.integration.helpers import by_name, inventory, path, runtime

P = "pipe-proj"
FLEET = {
    "organization": "444444444444",
    "timings": {"update_cluster": 20, "update_node_pool": 20, "per_node": 10},
    "projects": [
        {
            "id": P,
            "clusters": [
                *[{"name": f"clean-{i}", "pools": [{"name": "a", "nodes": 1}]} for i in range(3)],
                {"name": "reader", "pools": [{"name": "a", "nodes": 1, "usage": "in_use"}]},
            ],
        }
    ],
}


@pytest.fixture
def wave_env(make_sim, write_config):
    sim = make_sim(FLEET, time_scale=0.005)
    cfg_path = write_config(
        sim,
        scan={"window_seconds": 0.5},
        rollout={"operation_poll_seconds": 0.05, "operation_timeout_seconds": 20},
        limits={"clusters_per_task": 2},  # two scan batches for four clusters
    )
    rt = runtime(cfg_path)
    applier = Applier(rt, OperationSlots(rt.config.rollout), sleep=time.sleep)
    members = sorted(by_name(inventory(cfg_path)).values(), key=lambda r: r.path)
    plan = WavePlan(Wave(name="w", select={"all": True}, concurrency=2), members)

    def change(rec, scan):
        return disable_cluster(rec, scan, gate_decision(scan, rt.config.gate), applier, "w")

    yield sim, rt, plan, change
    rt.close()


def changed(sim) -> set[str]:
    return {
        e.target.split("/nodePools/")[0]
        for e in sim.fleet.journal
        if e.method in ("UpdateCluster", "UpdateNodePool") and e.result.startswith("accepted")
    }


def test_verdicts_that_arrive_only_when_a_batch_returns_still_feed_the_workers(wave_env) -> None:
    sim, rt, plan, change = wave_env
    batches = []

    def returns_only(batch, phase, on_done):  # never calls on_done: the wave must take the returned results
        batches.append([r.path for r in batch])
        return list(Scanner(rt).scan(batch).values())

    wave = WaveRun(plan, plan.clusters, rt.config, returns_only)
    with progress.phase("wave w", len(plan.clusters)) as ph:
        runs = {r.cluster: r for r in run_wave(wave, change, ph)}

    assert sorted(p for b in batches for p in b) == sorted(r.path for r in plan.clusters)
    assert len(batches) == 2
    clean = {path(P, f"clean-{i}") for i in range(3)}
    assert {c for c, r in runs.items() if r.outcome is Outcome.VERIFIED} == clean
    assert runs[path(P, "reader")].outcome is Outcome.BLOCKED
    assert changed(sim) == clean  # the reader was never touched
    report = sim.fleet.invariant_report()
    assert report["conflicts"] == [] and report["breakage"] == [] and report["duplicates"] == []


def test_a_scan_batch_that_fails_blocks_its_clusters_and_changes_nothing(wave_env) -> None:
    sim, rt, plan, change = wave_env

    def fails(batch, phase, on_done):
        raise RuntimeError("the scan's task run crashed")

    wave = WaveRun(plan, plan.clusters, rt.config, fails)
    with progress.phase("wave w", len(plan.clusters)) as ph:
        runs = run_wave(wave, change, ph)

    assert [r.outcome for r in runs] == [Outcome.BLOCKED] * len(plan.clusters)
    assert all("the scan failed: RuntimeError" in r.reason for r in runs), [r.reason for r in runs]
    assert changed(sim) == set()


def test_the_next_wave_may_start_scanning_once_every_cluster_is_in_a_scan_batch(wave_env) -> None:
    """`then()` (the rollout's scan-ahead) runs while this wave's batches are still in their window, not after."""
    sim, rt, plan, change = wave_env
    release = threading.Event()
    started: list[list[str]] = []
    then_saw: list[int] = []

    def held(batch, phase, on_done):  # a scan that reports nothing until the test lets it go
        started.append([r.path for r in batch])
        assert release.wait(10)
        return list(Scanner(rt).scan(batch).values())

    wave = WaveRun(plan, plan.clusters, rt.config, held)
    wave.start_scan(then=lambda: then_saw.append(len(started)))
    deadline = time.monotonic() + 10
    while not then_saw and time.monotonic() < deadline:
        time.sleep(0.01)
    assert then_saw == [2] and not wave.seen, "then() ran with both batches started and no verdict in yet"
    release.set()
    with progress.phase("wave w", len(plan.clusters)) as ph:
        runs = {r.cluster: r for r in run_wave(wave, change, ph)}
    assert runs[path(P, "reader")].outcome is Outcome.BLOCKED
    assert changed(sim) == {path(P, f"clean-{i}") for i in range(3)}
