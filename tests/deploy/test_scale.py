"""Scale-out: a 2,000-cluster fleet rolled out through a Prefect server on PostgreSQL + Redis and two workers.

The server is started by ops/deploy.sh from ops/scale-server.env (the documented scale configuration), with a
fresh PostgreSQL database and its own Redis db index. Two runs of rollout-wave (one per wave) go to two workers
(`--limit 1` each) and run at the same time, both bounded by one Prefect global concurrency limit on GKE
mutations. Checks: both runs complete; every task run the flows made is recorded, in a final state, with its
events; the simulator never saw more operations at once than the limit; and no setting or operation was harmed.

PostgreSQL (127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379) run on these machines: when either cannot be
reached the test fails and says so; it never skips.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.simcmd import sim_config
from gkesim.generate import generate_fleet
from gkesim.server import Simulator
from gkesim.spec import Timings
from tests.deploy.stack import REPO, Deployed, deployed, eventually

pytestmark = [pytest.mark.scale, pytest.mark.timeout(1500)]  # about 6 min at 2,000 clusters on a busy machine

CLUSTERS = int(os.environ.get("PORTCULLIS_SCALE_CLUSTERS", "2000"))  # fewer for development
PROJECTS = max(1, CLUSTERS // 20)
MUTATION_SLOTS = 8  # the fleet-wide limit; each run alone would allow 16 at once
PG = "postgresql://postgres@127.0.0.1:5432"
RECORDERS = ("task-run-recorder", "event-persister")
NOT_COMPLETED = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING", "CANCELLED", "FAILED", "CRASHED"]
WAVES = [  # chosen by project label, so both runs agree on which cluster is whose while both are running
    {"name": "prod", "select": {"project_labels": {"env": "prod"}}, "concurrency": 16},
    {"name": "rest", "select": {"all": True}, "concurrency": 16},
]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database for this run, dropped afterwards."""
    import asyncpg

    name = f"portcullis_scale_{os.getpid()}_{int(time.time())}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(f"{PG}/postgres", timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not usable at {PG} ({type(exc).__name__}: {exc}). The scale test needs it: on these "
            "machines start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`."
        )
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def server_env(path: Path, database_url: str, redis_index: int) -> Path:
    """ops/scale-server.env with this test's database and Redis db index."""
    overrides = {
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_REDIS_MESSAGING_DB": str(redis_index),
        "PREFECT_SERVER_DOCKET_URL": f"redis://127.0.0.1:6379/{redis_index}",
    }
    lines = []
    for line in (REPO / "ops" / "scale-server.env").read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={overrides.pop(key)}" if key in overrides else line)
    assert not overrides, f"ops/scale-server.env lacks {sorted(overrides)}"
    path.write_text("\n".join(lines) + "\n")
    return path


def rollout_config(path: Path, sim: Simulator) -> Path:
    cfg = sim_config(sim.endpoints, sim.fleet.spec, window_seconds=0.5)
    # Fewer, bigger scan tasks and fewer reads at once: the simulator's one process serves every cluster.
    cfg["scan"].update({"nodes_per_pool": 1, "concurrency": 8, "clusters_in_parallel": 10})
    cfg["limits"] = {"clusters_per_task": 200}
    cfg["rollout"].update(
        {
            "waves": WAVES,
            "verify_nodes": False,  # node-level verification has its own tests; this one is about Prefect
            "operation_poll_seconds": 0.05,
            "operations_in_flight": 16,
            "prefect_mutation_limit": "scale-gke-mutations",
            "prefect_mutations_in_flight": MUTATION_SLOTS,
        }
    )
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def max_concurrent_operations(sim: Simulator) -> int:
    """The most GKE operations the simulator had running at one moment (from each operation's start and end)."""
    from google.protobuf import timestamp_pb2

    def seconds(text: str) -> float:
        ts = timestamp_pb2.Timestamp()
        ts.FromJsonString(text)
        return ts.seconds + ts.nanos / 1e9

    sim.fleet.settle_all()
    edges = []
    for op in sim.fleet.operations.values():
        assert op.msg.end_time, f"operation {op.path} never finished"
        edges += [(seconds(op.msg.start_time), 1), (seconds(op.msg.end_time), -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def drained(redis_client: Any) -> bool:
    """The server has recorded every message it received: no lag and nothing pending for either recorder."""
    groups = {g["name"].decode(): g for g in redis_client.xinfo_groups("events")}
    return all(
        name in groups and not groups[name]["lag"] and not groups[name]["pending"] for name in RECORDERS
    )


def wait_exited(stack: Deployed, flow_run_ids: list[str], timeout: float) -> None:
    """Until the process of each flow run (its `infrastructure_pid`: the pid, or "host:pid") has exited."""
    pids = [int(stack.flow_run(i)["infrastructure_pid"].rsplit(":", 1)[-1]) for i in flow_run_ids]
    eventually(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids),
        timeout,
        what=f"the flow-run processes {pids} to exit",
    )


def wait_recorded(redis_client: Any, timeout: float) -> None:
    """Until the events stream is drained and stays so past the server's publish interval (10 s)."""
    deadline = time.monotonic() + timeout
    stable_since, length = None, -1
    while time.monotonic() < deadline:
        now_length = redis_client.xlen("events")
        if drained(redis_client) and now_length == length:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 12:
                return
        else:
            stable_since = None
        length = now_length
        time.sleep(1)
    raise AssertionError(
        f"the server did not record its events in {timeout:.0f}s: {redis_client.xinfo_groups('events')}"
    )


def count_task_runs(stack: Deployed, flow_run_ids: list[str], **task_filter: Any) -> int:
    body = {"flow_runs": {"id": {"any_": flow_run_ids}}, "task_runs": task_filter}
    r = stack.post("/task_runs/count", body)
    r.raise_for_status()
    return r.json()


def unfinished(stack: Deployed, flow_run_ids: list[str]) -> list[tuple[str, str, str]]:
    """Name, state and flow run of the task runs that are not Completed (for the failure message)."""
    body = {
        "flow_runs": {"id": {"any_": flow_run_ids}},
        "task_runs": {"state": {"type": {"any_": NOT_COMPLETED}}},
        "limit": 50,
    }
    r = stack.post("/task_runs/filter", body)
    r.raise_for_status()
    return [(t["name"], (t["state"] or {}).get("type", "none"), t["flow_run_id"]) for t in r.json()]


def task_run_names(stack: Deployed, flow_run_ids: list[str], like: str) -> set[str]:
    names: set[str] = set()
    offset = 0
    while True:
        body = {
            "flow_runs": {"id": {"any_": flow_run_ids}},
            "task_runs": {"name": {"like_": like}},
            "limit": 200,
            "offset": offset,
        }
        r = stack.post("/task_runs/filter", body)
        r.raise_for_status()
        page = [t["name"] for t in r.json()]
        names.update(page)
        if len(page) < 200:
            return names
        offset += 200


def diagnose_missing(
    stack: Deployed, ids: list[str], reports: list[dict[str, Any]], database_url: str
) -> str:
    """Which clusters' disable-cluster task runs the server lacks, and what its events table holds for them."""
    import asyncpg

    ran = {
        f"disable-cluster projects/{c['project']}/locations/{c['location']}/clusters/{c['name']}"
        for rep in reports
        for c in rep["clusters"]
        if c.get("wave") and c["outcome"] not in ("skipped",)
    }
    missing = sorted(ran - task_run_names(stack, ids, "disable-cluster"))

    async def events() -> list[tuple[str, str, str]]:
        conn = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT resource->>'prefect.resource.name', event, occurred::text FROM events "
                "WHERE resource->>'prefect.resource.name' = ANY($1::text[]) ORDER BY occurred",
                missing[:20],
            )
            return [tuple(r) for r in rows]
        finally:
            await conn.close()

    server_log = (stack.state / "server.log").read_text(errors="replace").splitlines()
    worrying = [
        ln for ln in server_log if any(w in ln for w in ("Dropping", "Error flushing", "Duplicate", "rror"))
    ]
    return (
        f"{len(missing)} disable-cluster task runs missing: {missing[:10]}; "
        f"their events in the server's database: {asyncio.run(events())}; "
        f"server log lines about errors: {worrying[-20:]}"
    )


def count_events(stack: Deployed, flow_run_id: str, event: str) -> int:
    body = {
        "filter": {
            "event": {"name": [event]},
            "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
        },
        "time_unit": "day",
        "time_interval": 1,
    }
    r = stack.post("/events/count-by/event", body)
    r.raise_for_status()
    return sum(row["count"] for row in r.json())


def test_two_workers_roll_out_a_generated_fleet_through_postgres_and_redis(
    tmp_path: Path, postgres_url: str, redis_db: Any
) -> None:
    started = time.monotonic()
    spec = generate_fleet(CLUSTERS, PROJECTS, seed=11)
    # Operations take 60 s + 30 s a node; the Autopilot probe prints once per window instead of every 20 s.
    spec.timings = Timings(probe_pod_start=1.0, probe_log_interval=5000.0)
    with Simulator.from_spec(spec, time_scale=0.001) as sim:
        # Kubelet /metrics of 64 KB instead of 2 MB: reading payloads is bench/scan.py's subject; this test is
        # about Prefect's records, and 2 MB per node reading would spend most of its time in TLS.
        sim.kube.metrics_bytes = 64_000
        config = rollout_config(tmp_path / "portcullis.yaml", sim)
        env = {
            "PORTCULLIS_CONFIG": str(config),
            "PORTCULLIS_SERVER_ENV": str(
                server_env(
                    tmp_path / "server.env", postgres_url, redis_db.connection_pool.connection_kwargs["db"]
                )
            ),
            "PORTCULLIS_WORKERS": "2",
        }
        with deployed(tmp_path / "deploy", env) as stack:
            limit = stack.get("/v2/concurrency_limits/scale-gke-mutations")
            assert limit["limit"] == MUTATION_SLOTS  # created by `make deploy` from the config
            deployed_at = time.monotonic()
            runs = [
                stack.run(
                    "rollout-wave",
                    {"wave": w["name"], "dry_run": False, "auto_approve": True, "report_dir": str(tmp_path)},
                    run_name=f"scale-{w['name']}",
                )
                for w in WAVES
            ]
            ids = [r["id"] for r in runs]
            finished = [
                stack.wait_state(i, {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, 600) for i in ids
            ]
            flows_done = time.monotonic()
            for run in finished:
                assert run["state"]["type"] == "COMPLETED", (
                    run["name"],
                    run["state"],
                    stack.log_tail("worker-1"),
                )

            # Both workers worked: with --limit 1 each, the two runs overlapping means two workers ran them.
            spans = sorted((r["start_time"], r["end_time"]) for r in finished)
            assert spans[1][0] < spans[0][1], f"the runs did not overlap: {spans}"

            reports = [json.loads(next(tmp_path.glob(f"wave-{w['name']}-*.json")).read_text()) for w in WAVES]
            in_waves = [
                next(x for x in rep["waves"] if x["name"] == w["name"])
                for rep, w in zip(reports, WAVES, strict=True)
            ]
            assert sum(w["clusters"] for w in in_waves) > CLUSTERS // 2
            changed = sum(rep["summary"]["mutations"] for rep in reports)
            assert changed > CLUSTERS // 2

            # No task run lost: every cluster the flows handled has its task run, all of them final. A flow run's
            # process sends the rest of its events as it exits (Prefect drains its events worker at exit), after
            # the run is Completed: the stream is read once those processes are gone.
            wait_exited(stack, ids, timeout=300)
            wait_recorded(redis_db, timeout=300)
            dead = redis_db.keys(
                "dlq*"
            )  # messages the server gave up on (acknowledged, so no lag shows them)
            assert not dead, (
                f"the server dead-lettered messages (their task runs stay behind): {sorted(dead)[:5]}"
            )
            recorded_at = time.monotonic()
            total = count_task_runs(stack, ids)
            disable = count_task_runs(stack, ids, name={"like_": "disable-cluster"})
            scans = count_task_runs(stack, ids, name={"like_": "scan-clusters"})
            completed = count_task_runs(stack, ids, state={"type": {"any_": ["COMPLETED"]}})
            cfg = yaml.safe_load(config.read_text())
            per_task = cfg.get("limits", {}).get("clusters_per_task", 50)
            assert disable == sum(w["clusters"] for w in in_waves), diagnose_missing(
                stack, ids, reports, postgres_url
            )
            assert scans == sum(math.ceil(w["clusters"] / per_task) for w in in_waves)
            assert total > disable
            assert completed == total, (
                f"{total - completed} task runs not Completed: {unfinished(stack, ids)}"
            )
            # No event lost: each task run's Completed event is stored.
            for fid in ids:
                done_here = count_task_runs(stack, [fid], state={"type": {"any_": ["COMPLETED"]}})
                assert count_events(stack, fid, "prefect.task-run.Completed") == done_here

        # The shared limit held across both runs, and nothing was harmed on the way.
        peak = max_concurrent_operations(sim)
        invariants = sim.fleet.invariant_report()
    assert 1 < peak <= MUTATION_SLOTS, peak
    assert not invariants["conflicts"] and not invariants["duplicates"] and not invariants["lost_settings"]
    assert invariants["accepted"] >= changed
    print(
        f"\nscale: {CLUSTERS} clusters, {total} task runs, {changed} GKE operations (at most {peak} at once); "
        f"deploy {deployed_at - started:.0f}s, flows {flows_done - deployed_at:.0f}s, "
        f"recorded {recorded_at - flows_done:.0f}s later, total {time.monotonic() - started:.0f}s"
    )
