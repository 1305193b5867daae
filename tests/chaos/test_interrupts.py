"""Issue 8 §2: Ctrl-C (SIGINT) and SIGTERM during a scan and during a wave.

Portcullis runs as `python -m flows.cli` in its own process group; the signal goes to the group, as a terminal's
Ctrl-C does. Judged from the simulator: the probe objects are deleted, operations already running are left to
finish (never cancelled, and nothing new is sent after the signal), the partial report names each of them as
in flight and accounts for every cluster once, the exit status is 130 (SIGINT) or 143 (SIGTERM), and the next
run picks up from GKE's state with no conflict and no duplicate mutation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from google.cloud import container_v1

from tests.chaos.harness import MUTATIONS, REPO, expectations, judge, portcullis_config, probe_objects

P = "intr-dev-0001"
LOC = "us-central1"
FLEET = {
    "organization": "130143000000",
    # slow operations (3-5 s real at time scale 0.01), so some are still running when the signal comes
    "timings": {"update_cluster": 300, "update_node_pool": 300, "per_node": 100, "autopilot_per_node": 50},
    "projects": [
        {
            "id": P,
            "clusters": [
                *[
                    {"name": f"std-{i}", "location": LOC, "pools": [
                        {"name": "a", "nodes": 1, "kubelet": {"pod_pids_limit": 1024}}, {"name": "b", "nodes": 1}]}
                    for i in range(4)
                ],
                *[{"name": f"ap-{i}", "location": LOC, "mode": "autopilot"} for i in range(2)],
            ],
        }
    ],
}  # fmt: skip
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for(proc: subprocess.Popen, what: Callable[[], bool], timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert proc.poll() is None, "the run ended before the signal could be sent"
        assert time.monotonic() < deadline, "the moment to send the signal never came"
        time.sleep(0.02)


def _not_done(sim) -> dict[str, str]:
    """Operation path -> target, for every operation the simulator has not finished."""
    with sim.fleet.lock:
        return {
            path: op.cluster + (f"/nodePools/{op.pool}" if op.pool else "")
            for path, op in sim.fleet.operations.items()
            if op.msg.status != container_v1.Operation.Status.DONE
        }


def _accepted(sim) -> list[str]:
    return [
        e.result.split()[1]
        for e in sim.fleet.journal
        if e.method in MUTATIONS and e.result.startswith("accepted")
    ]


def _probe_creates(sim) -> int:
    return sum(
        1 for e in sim.fleet.journal if e.method == "k8s.create" and e.detail.get("kind") == "DaemonSet"
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_scan_deletes_probes_and_changes_nothing(make_sim, prefect_api, tmp_path, sig) -> None:
    sim = make_sim(FLEET, time_scale=0.01)
    # a long window keeps the Autopilot probes alive long enough to be interrupted
    config = portcullis_config(sim, tmp_path / "c.yaml", scan={"window_seconds": 60})
    report = tmp_path / "scan.json"
    proc = _start(["scan", "--config", str(config), "--report", str(report)], tmp_path / "scan.log")
    _wait_for(proc, lambda: _probe_creates(sim) >= 1)
    _wait_for(proc, lambda: len(probe_objects(sim.fleet, finalize=False)) >= 5, timeout=20)
    os.killpg(proc.pid, sig)
    code = proc.wait(timeout=60)
    log = (tmp_path / "scan.log").read_text(errors="replace")

    assert code == CODES[sig], log
    assert "interrupted" in log
    sim.fleet.clock._t0 -= 60 * sim.fleet.clock.time_scale  # let Terminating namespaces finish
    assert probe_objects(sim.fleet) == [], "every probe object was deleted"
    deletes = [
        e for e in sim.fleet.journal if e.method == "k8s.delete" and e.detail.get("kind") == "ClusterRole"
    ]
    assert deletes, "the cluster-scoped ClusterRole went too (deleting the namespace does not remove it)"
    assert _accepted(sim) == [], "a scan never changes a cluster"
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["kind"] == "scan"
    assert data["signal"] == signal.Signals(sig).name and data["exit_status"] == CODES[sig]
    assert data["probe_leftovers"] == []
    paths = [c["cluster"] for c in data["clusters"]]
    assert sorted(paths) == sorted(sim.fleet.clusters) and len(set(paths)) == len(paths)
    assert {c.get("outcome") for c in data["clusters"] if "verdict" not in c} <= {"not_scanned"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_wave_leaves_operations_running_and_the_next_run_picks_up(
    make_sim, prefect_api, tmp_path, sig
) -> None:
    sim = make_sim(FLEET, time_scale=0.01)
    waves = [{"name": "all", "select": {"all": True}, "concurrency": 6}]
    config = portcullis_config(
        sim,
        tmp_path / "c.yaml",
        rollout={"waves": waves, "operation_timeout_seconds": 60, "operation_retries": 0},
    )
    report = tmp_path / "partial.json"
    args = ["rollout", "--yes", "--config", str(config)]
    proc = _start([*args, "--report", str(report)], tmp_path / "run1.log")
    _wait_for(proc, lambda: len(_not_done(sim)) >= 2)
    before = set(_accepted(sim))
    os.killpg(proc.pid, sig)
    code = proc.wait(timeout=60)
    running = _not_done(sim)  # right after the exit: operations take seconds, so these were running at exit
    after = set(_accepted(sim))
    log = (tmp_path / "run1.log").read_text(errors="replace")

    assert code == CODES[sig], log
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["kind"] == "rollout" and data["exit_status"] == CODES[sig]
    assert running, "operations were left to finish, not waited on"
    flown = data["in_flight"]
    named = {op["operation"] for op in flown if op["operation"]}
    unanswered = {(op["cluster"], op["level"]) for op in flown if not op["operation"]}
    for op, target in running.items():
        cluster = target.split("/nodePools/")[0]
        level = f"node_pool/{target.split('/nodePools/')[1]}" if "/nodePools/" in target else None
        assert op in named or any(c == cluster and (level is None or lv == level) for c, lv in unanswered), (
            f"{op} on {target} is running but not in the report's in_flight: {flown}"
        )
    ops = {path.rsplit("/", 1)[1]: op for path, op in sim.fleet.operations.items()}
    for new in after - before:  # accepted after the signal: it was already being sent when the signal came
        assert ops[new].path in named or ops[new].cluster in {c for c, _ in unanswered}, (new, flown)
    rows = {c["cluster"]: c for c in data["clusters"]}
    assert sorted(rows) == sorted(sim.fleet.clusters), "every cluster accounted for once"
    for target in running.values():
        assert rows[target.split("/nodePools/")[0]]["outcome"] == "in_flight"

    # The operations are left to finish: none is cancelled, each ends DONE without error.
    sim.fleet.clock._t0 -= 2000 * sim.fleet.clock.time_scale
    # Probes still running when the signal came (a wave's scan overlaps its changes) were deleted on the way
    # out; their namespaces are Terminating until the namespace controller is done with them.
    assert probe_objects(sim.fleet) == []
    with sim.fleet.lock:
        sim.fleet.settle_all()
        assert all(not sim.fleet.operations[op].msg.error.code for op in running)

    # The next run reads GKE's state and finishes the job, with no conflict and nothing sent twice.
    timings = sim.fleet.spec.timings  # (its own operations may be quicker: nothing needs to be running now)
    timings.update_cluster, timings.update_node_pool, timings.per_node = 60, 60, 20
    final = tmp_path / "final.json"
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--report", str(final)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    verdict = judge(sim, json.loads(final.read_text()), expectations(sim.fleet.spec))
    assert verdict["problems"] == [], verdict


def test_sigterm_during_a_rollback_leaves_its_operation_running_and_reports_it(
    make_sim, prefect_api, tmp_path
) -> None:
    """Rollback mutates too: SIGTERM takes the same path as in a rollout (Prefect's engine does not keep it)."""
    sim = make_sim(FLEET, time_scale=0.01)
    config = portcullis_config(sim, tmp_path / "c.yaml", rollout={"operation_retries": 0})
    report = tmp_path / "partial.json"
    targets = [f"projects/{P}/locations/{LOC}/clusters/std-{i}" for i in range(2)]
    args = ["rollback", "--config", str(config), "--report", str(report)]
    proc = _start([*args, *(a for t in targets for a in ("--cluster", t))], tmp_path / "run.log")
    _wait_for(proc, lambda: len(_not_done(sim)) >= 1)
    os.killpg(proc.pid, signal.SIGTERM)
    code = proc.wait(timeout=60)
    running = _not_done(sim)
    log = (tmp_path / "run.log").read_text(errors="replace")

    assert code == 143, log
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["kind"] == "rollback" and data["exit_status"] == 143
    assert running, "the operation was left to finish, not waited on"
    rows = {c["cluster"]: c for c in data["clusters"]}
    assert sorted(rows) == sorted(targets), "every named cluster accounted for once"
    for target in running.values():
        assert rows[target.split("/nodePools/")[0]]["outcome"] == "in_flight"
    assert {c["outcome"] for c in rows.values()} <= {"in_flight", "rolled_back", "skipped"}
