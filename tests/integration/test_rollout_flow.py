"""The rollout, verify and rollback flows end to end, and a rollout killed mid-wave and started again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from google.cloud import container_v1

from tests.integration.helpers import path

P, Q = "flow-dev", "flow-prod"
FLEET = {
    "organization": "444444444444",
    "timings": {"update_cluster": 30, "update_node_pool": 30, "per_node": 15},
    "projects": [
        {
            "id": P,
            "labels": {"env": "dev"},
            "clusters": [
                {
                    "name": f"d{i}",
                    "pools": [{"name": "a", "kubelet": {"pod_pids_limit": 2048}}, {"name": "b", "nodes": 1}],
                }
                for i in range(4)
            ]
            + [{"name": "reader", "agents": ["telegraf"], "pools": [{"name": "a", "usage": "in_use"}]}],
        },
        {
            "id": Q,
            "labels": {"env": "prod"},
            "clusters": [{"name": f"p{i}", "mode": "autopilot" if i % 2 else "standard"} for i in range(4)],
        },
    ],
}
ROLLOUT = {"operation_poll_seconds": 0.05, "operation_timeout_seconds": 30}


def mutations(sim):
    return [e for e in sim.fleet.journal if e.method in ("UpdateCluster", "UpdateNodePool")]


def test_rollout_waves_then_verify_drift_then_rollback(make_sim, write_config, prefect_api, tmp_path) -> None:
    from flows.rollback import rollback_flow
    from flows.rollout import rollout_flow
    from flows.verify import verify_flow

    sim = make_sim(FLEET, time_scale=0.005)
    waves = [
        {"name": "canary", "select": {"projects": [P]}, "max_clusters": 1, "concurrency": 1},
        {"name": "dev", "select": {"project_labels": {"env": "dev"}}, "concurrency": 3},
        {"name": "prod", "select": {"all": True}, "concurrency": 4},
    ]
    cfg = str(write_config(sim, rollout={**ROLLOUT, "waves": waves}, scan={"window_seconds": 0.5}))
    report = rollout_flow(cfg, report_path=str(tmp_path / "r.json"), auto_approve=True)
    outcomes = {c["name"]: c["outcome"] for c in report["clusters"]}
    assert outcomes["reader"] == "blocked"
    assert all(outcomes[f"d{i}"] == "verified" for i in range(4))
    assert all(outcomes[f"p{i}"] == "verified" for i in range(4))
    assert [w["name"] for w in report["waves"]] == ["canary", "dev", "prod"]
    assert [w["clusters"] for w in report["waves"]] == [1, 4, 4]
    assert all(w["approval"]["by"] == "auto_approve" for w in report["waves"][:2])
    assert report["ok"] is False  # one cluster is blocked
    canary = next(c for c in report["clusters"] if c.get("wave") == "canary")
    assert canary["name"] == "d0" and canary["changes"][0]["started"]
    stamps = [c[k] for c in canary["changes"] for k in ("started", "ended")]
    stamps += [w[k] for w in report["waves"] for k in ("started", "ended")] + [
        report["waves"][0]["approval"]["at"]
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in stamps), stamps  # one format
    assert json.loads((tmp_path / "r.json").read_text())["summary"] == report["summary"]
    inv = sim.fleet.invariant_report()
    assert (
        inv["conflicts"] == []
        and inv["breakage"] == []
        and inv["duplicates"] == []
        and inv["lost_settings"] == []
    )
    assert inv["accepted"] == 4 * 3 + 2 * 2 + 2, (
        "exactly the needed mutations: 3 per dev cluster, 2 per prod standard, 1 per autopilot"
    )

    # Rerun: reads GKE's state and does nothing new.
    before = len(mutations(sim))
    again = rollout_flow(cfg, auto_approve=True)
    assert len(mutations(sim)) == before
    assert {c["outcome"] for c in again["clusters"] if c["name"] != "reader"} == {"already_compliant"}

    # Drift: someone re-enables a pool by hand.
    sim.fleet.update_node_pool(
        container_v1.UpdateNodePoolRequest(
            name=path(P, "d1") + "/nodePools/b",
            kubelet_config=container_v1.NodeKubeletConfig(insecure_kubelet_readonly_port_enabled=True),
        )
    )
    sim.fleet.clock._t0 -= 1000 * sim.fleet.clock.time_scale  # let that operation finish
    drift = verify_flow(cfg)
    d1 = next(c for c in drift["clusters"] if c["cluster"] == path(P, "d1"))
    assert d1["outcome"] == "drifted" and d1["not_disabled"] == {"node_pool/b": "enabled"}
    assert drift["ok"] is False

    # Rollback one pool of one cluster.
    back = rollback_flow(cfg, [path(P, "d2")], ["a"])
    assert back["clusters"][0]["outcome"] == "rolled_back", back
    pool = sim.fleet.clusters[path(P, "d2")].pool("a")
    assert pool.config.kubelet_config.insecure_kubelet_readonly_port_enabled is True
    assert pool.config.kubelet_config.pod_pids_limit == 2048
    assert back["clusters"][0]["verification"]["nodes"][0]["read_only_port"] == 10255


def test_failure_budget_halts_later_waves(make_sim, write_config, prefect_api) -> None:
    from flows.rollout import rollout_flow

    fleet = {**FLEET, "faults": {"failing_operation_rate": 1.0}}
    sim = make_sim(fleet, time_scale=0.005)
    waves = [
        {
            "name": "first",
            "select": {"projects": [P]},
            "max_clusters": 2,
            "concurrency": 2,
            "failure_budget": 0,
        },
        {"name": "second", "select": {"all": True}},
    ]
    cfg = str(
        write_config(
            sim, rollout={**ROLLOUT, "operation_retries": 0, "waves": waves}, scan={"window_seconds": 0.3}
        )
    )
    report = rollout_flow(cfg, auto_approve=True)
    assert report["waves"][0]["status"] == "halted"
    second = [c for c in report["clusters"] if c.get("wave") == "second"]
    assert second and all(c["outcome"] == "skipped" and "halted" in c["reason"] for c in second)
    assert {c["outcome"] for c in report["clusters"] if c.get("wave") == "first"} == {"failed"}


def test_killed_rollout_resumes_without_duplicates(make_sim, write_config, prefect_api, tmp_path) -> None:
    sim = make_sim(FLEET, time_scale=0.02)
    cfg = write_config(
        sim,
        rollout={
            **ROLLOUT,
            "operation_timeout_seconds": 60,
            "waves": [{"name": "all", "select": {"all": True}, "concurrency": 3}],
        },
        scan={"window_seconds": 0.3},
    )
    cmd = [sys.executable, "-m", "flows.cli", "rollout", "--yes", "--config", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while len([e for e in mutations(sim) if e.result.startswith("accepted")]) < 4:
        assert proc.poll() is None, "the rollout ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    running = [o for o in sim.fleet.operations.values() if o.msg.status != container_v1.Operation.Status.DONE]
    killed_at = len(mutations(sim))

    report = tmp_path / "resume.json"
    done = subprocess.run([*cmd, "--report", str(report)], capture_output=True, text=True, timeout=300)
    data = json.loads(report.read_text())
    outcomes = {c["name"]: c["outcome"] for c in data["clusters"]}
    assert outcomes.pop("reader") == "blocked"
    assert set(outcomes.values()) == {"verified"} | ({"already_compliant"} & set(outcomes.values())), outcomes
    assert done.returncode == 1  # the blocked cluster keeps the exit status at 1
    inv = sim.fleet.invariant_report()
    assert inv["conflicts"] == [], "the resumed run waited on operations in flight instead of colliding"
    assert inv["duplicates"] == [], "nothing already applied was sent again"
    assert inv["accepted"] == 4 * 3 + 2 * 2 + 2
    assert killed_at >= 4 and running is not None


CANARY_FLEET = {
    "organization": "555555555555",
    "timings": {"update_cluster": 20, "update_node_pool": 20, "per_node": 10},
    "projects": [
        {
            "id": "canary-dev",
            "labels": {"env": "dev"},
            "clusters": [
                # the smallest cluster changing both kinds of level: the preferred canary, but its gate blocks
                {
                    "name": "a-reader",
                    "agents": ["telegraf"],
                    "pools": [{"name": "a", "nodes": 1, "usage": "in_use"}],
                },
                {"name": "b-big", "pools": [{"name": "a", "nodes": 3}, {"name": "b", "nodes": 3}]},
                {"name": "c-ap", "mode": "autopilot"},
            ],
        },
        {
            "id": "canary-dev2",
            "labels": {"env": "dev"},
            "clusters": [{"name": "d-small", "pools": [{"name": "a", "nodes": 1}]}],
        },
        {
            "id": "canary-prod",
            "labels": {"env": "prod"},
            "clusters": [{"name": f"p{i}", "pools": [{"name": "a", "nodes": 1}]} for i in range(3)],
        },
    ],
}


def test_default_canary_is_exercised_even_when_its_first_choice_is_blocked(
    make_sim, write_config, prefect_api
) -> None:
    """The default progression picks the most telling non-production canary; when its gate blocks, the first
    spare whose gate passes (another project first) stands in, so the canary wave really changes a cluster."""
    from config.schema import load_config
    from flows.rollout import rollout_flow
    from tasks.change.waves import assign_waves
    from tests.integration.helpers import inventory

    sim = make_sim(CANARY_FLEET, time_scale=0.005)
    cfg = write_config(sim, rollout={**ROLLOUT, "default_soak_seconds": 0}, scan={"window_seconds": 0.3})
    plans, _ = assign_waves(inventory(cfg).records, load_config(cfg).rollout)
    canary = plans[0]
    assert [r.state.name for r in canary.clusters] == ["a-reader"]
    assert [r.state.name for r in canary.spares][:2] == ["d-small", "b-big"], "another project's spare first"

    report = rollout_flow(str(cfg), auto_approve=True)
    waves = {w["name"]: w for w in report["waves"]}
    assert waves["canary"]["canary_stand_ins"] == [path("canary-dev2", "d-small")]
    by_name = {c["name"]: c for c in report["clusters"]}
    assert by_name["a-reader"]["outcome"] == "blocked" and by_name["a-reader"]["wave"] == "canary"
    assert by_name["d-small"]["outcome"] == "verified" and by_name["d-small"]["wave"] == "canary"
    assert all(
        by_name[n]["outcome"] == "verified" and by_name[n]["wave"] != "canary"
        for n in ("b-big", "c-ap", "p0", "p1", "p2")
    )
    assert sum(1 for c in report["clusters"] if c["name"] == "d-small") == 1, "the stand-in ran once"
    inv = sim.fleet.invariant_report()
    assert inv["conflicts"] == [] and inv["breakage"] == [] and inv["duplicates"] == []


def test_failure_budget_stops_starting_clusters_within_the_wave(make_sim, write_config, prefect_api) -> None:
    """Clusters already changing finish; once the budget is exceeded no new cluster of the wave starts."""
    from flows.rollout import rollout_flow

    fleet = {**FLEET, "faults": {"failing_operation_rate": 1.0}}
    sim = make_sim(fleet, time_scale=0.005)
    waves = [{"name": "dev", "select": {"projects": [P]}, "concurrency": 1, "failure_budget": 0}]
    cfg = write_config(
        sim, rollout={**ROLLOUT, "operation_retries": 0, "waves": waves}, scan={"window_seconds": 0.3}
    )
    report = rollout_flow(str(cfg), auto_approve=True)
    assert report["waves"][0]["status"] == "halted"
    outcomes = [c["outcome"] for c in report["clusters"] if c.get("wave") == "dev"]
    assert outcomes.count("failed") == 1, outcomes  # one at a time: the first failure stops the wave
    assert outcomes.count("skipped") + outcomes.count("blocked") == len(outcomes) - 1
    skipped = [c for c in report["clusters"] if c["outcome"] == "skipped" and c.get("wave") == "dev"]
    assert skipped and all(
        "halted" in c["reason"] and "before this cluster's turn" in c["reason"] for c in skipped
    )
    assert len(mutations(sim)) == 1, "nothing was sent after the failure"


def test_wave_concurrency_bounds_clusters_changing_at_once(make_sim, write_config, prefect_api) -> None:
    """More workers than `concurrency` gate and book-keep, but never more clusters than that change at once
    (judged from the simulator's journal: each cluster's span from its first operation to its last's end)."""
    from flows.rollout import rollout_flow

    fleet = {
        "organization": "666666666666",
        "timings": {"update_cluster": 20, "update_node_pool": 20, "per_node": 10},
        "projects": [
            {
                "id": "conc",
                "clusters": [{"name": f"c{i}", "pools": [{"name": "a", "nodes": 1}]} for i in range(8)],
            }
        ],
    }
    sim = make_sim(fleet, time_scale=0.005)
    waves = [{"name": "all", "select": {"all": True}, "concurrency": 2}]
    cfg = write_config(sim, rollout={**ROLLOUT, "waves": waves}, scan={"window_seconds": 0.3})
    report = rollout_flow(str(cfg), auto_approve=True)
    assert {c["outcome"] for c in report["clusters"]} == {"verified"}
    ends = {o.msg.name: o.end_at for o in sim.fleet.operations.values()}
    spans: dict[str, list[float]] = {}
    for e in mutations(sim):
        op = e.result.split()[-1]
        cluster = e.target.split("/nodePools/")[0]
        first, last = spans.get(cluster, [e.at, ends[op]])
        spans[cluster] = [min(first, e.at), max(last, ends[op])]
    points = sorted([(a, 1) for a, _ in spans.values()] + [(b, -1) for _, b in spans.values()])
    at_once, most = 0, 0
    for _, step in points:  # an end sorts before a start at the same instant
        at_once += step
        most = max(most, at_once)
    assert most == 2, spans
