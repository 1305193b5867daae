"""The org-wide rollout against a generated 1,000-cluster fleet with scaled operation durations.

The simulator runs in its own process (`portcullis sim --fleet F --time-scale S`; default S = 0.01, so a
60 s UpdateCluster takes 0.6 s and a node pool update 0.6 s + 0.3 s per node). The fleet is
`generate_fleet(1000, 50, seed=0)`: ~20% Autopilot, NAP, old versions, other kubelet settings, 70% of clusters
clean, 30% whose agents read port 10255 now or did before (their gate must block them). The rollout flow runs
end to end with Prefect (`auto_approve=True`) in a child process, with three waves (canary 1 cluster, 10% at
concurrency 10, the rest at 20), a small scan window, and the default bounds on operations in flight (20), per
project (5) and per region (10). Polling: the product defaults scaled like the operations
(`rollout.operation_poll_seconds` = 5 x S, `operation_poll_max_seconds` = 30 x S). The wave scans read one node
per pool (`scan.nodes_per_pool: 1`, `--nodes-per-pool 0` for every node): the gate needs every pool sampled, and
bench/scan.py measures full scans; every node doubles the scan time here.

The lower bound. Per wave w, with c_i the sum of cluster i's planned operation durations (x S; a cluster's
operations run one after another) over the clusters whose gate passes:

    LB_w = max( max_i c_i,  sum_i c_i / concurrency_w,  sum_i c_i / operations_in_flight,
                max_project sum c_i / operations_per_project,  max_region sum c_i / operations_per_region )
           + soak_w (not after the last wave with clusters)
    LB   = window + sum_w LB_w

Each term is a bound no schedule can beat (a cluster's operations are sequential; at most that many clusters or
operations at once; a wave starts after the soak of the one before), so the maximum is one too, and the waves'
bounds add up. One scan window, not one per wave: no change can start before a verdict, and no verdict before one
window, but a verdict stays good for gate.max_scan_age_seconds, so a schedule may scan a wave while the one before
it still runs (the product does, when nobody approves in between). The initial inventory is overhead, not part of
the bound. The report shows where makespan - bound goes: the inventory, each wave's wait for its first change
beyond the bound's window, its change phase beyond its operations term, and the time after its last change beyond
its soak (approval, report), with the per-cluster overhead split into operations seen DONE late, waits for an
operation slot, and the rest (calls, verification, Prefect's task run).

Checked: every cluster the plan changes gets exactly its planned levels, each sent once (client-side count of
UpdateCluster/UpdateNodePool = planned changes = operations the simulator accepted); blocked clusters get none;
the plan agrees with the fleet spec; the simulator's invariant report shows 0 conflicts, 0 breakage, 0
duplicates, 0 lost kubelet settings. Goal (issue 5): makespan <= 1.15 x the bound. Exits 1 when a check fails.

    .venv/bin/python bench/rollout.py [--clusters 1000 --time-scale 0.01 --window 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    PRELUDE_ENV,
    CallCounter,
    SimProcess,
    bench_config,
    emit,
    goal_line,
    header,
    loadavg,
    prefect_env,
    run_measurement,
    run_prelude,
    table,
    workdir,
    write_fleet,
)

GOAL_RATIO = 1.15
MUTATIONS = ("UpdateCluster", "UpdateNodePool")


def waves(soak: float) -> list[dict]:
    return [
        {
            "name": "canary",
            "select": {"all": True},
            "max_clusters": 1,
            "concurrency": 1,
            "soak_seconds": soak,
        },
        {"name": "early", "select": {"all": True}, "percent": 10, "concurrency": 10, "soak_seconds": soak},
        {"name": "rest", "select": {"all": True}, "concurrency": 20, "soak_seconds": 0, "failure_budget": 5},
    ]


# ----- what the fleet spec says should happen --------------------------------------------------------------


def spec_expectations(spec) -> dict[str, dict]:  # noqa: ANN001
    """Per cluster, from the fleet description alone: blocked by usage? which levels change, how long each takes."""
    from gkesim.fleet import supports_port_setting

    t = spec.timings
    out = {}
    for proj in spec.projects:
        for c in proj.clusters:
            path = f"projects/{proj.id}/locations/{c.location}/clusters/{c.name}"
            region = c.location if c.location.count("-") < 2 else c.location.rsplit("-", 1)[0]
            changes: dict[str, float] = {}
            if supports_port_setting(c.version) and c.status == "RUNNING":
                if c.mode == "autopilot":
                    if c.autoconfig_port != "disabled":
                        nodes = sum(p.nodes for p in c.pools)
                        changes["auto_config"] = t.update_cluster + t.autopilot_per_node * nodes
                else:
                    if c.default_port != "disabled":
                        changes["cluster_default"] = t.update_cluster
                    for p in c.pools:
                        if p.port != "disabled" and supports_port_setting(p.version or c.version):
                            changes[f"node_pool/{p.name}"] = t.update_node_pool + t.per_node * p.nodes
            used = any(p.usage != "clean" for p in c.pools)
            out[path] = {"project": proj.id, "region": region, "blocked": used, "changes": changes}
    return out


def lower_bound(
    exp: dict[str, dict], clusters_by_wave: dict[str, list[str]], cfg: dict, scale: float
) -> dict:
    """Per wave: its operations term and soak; the one scan window goes to the first wave with clusters."""
    ro = cfg["rollout"]
    window = cfg["scan"]["window_seconds"]
    per_wave = {}
    order = [w["name"] for w in ro["waves"]]
    with_clusters = [i for i, n in enumerate(order) if clusters_by_wave.get(n)]
    first, last = (with_clusters[0], with_clusters[-1]) if with_clusters else (-1, -1)
    for i, w in enumerate(ro["waves"]):
        paths = clusters_by_wave.get(w["name"], [])
        if not paths:
            per_wave[w["name"]] = {"bound": 0.0, "clusters": 0, "changing": 0, "work": 0.0}
            continue
        c = {p: scale * sum(exp[p]["changes"].values()) for p in paths if not exp[p]["blocked"]}
        c = {p: v for p, v in c.items() if v > 0}
        total = sum(c.values())
        by_project: dict[str, float] = defaultdict(float)
        by_region: dict[str, float] = defaultdict(float)
        for p, v in c.items():
            by_project[exp[p]["project"]] += v
            by_region[exp[p]["region"]] += v
        terms = {
            "longest cluster": max(c.values(), default=0.0),
            "wave concurrency": total / w["concurrency"],
            "operations in flight": total / ro["operations_in_flight"],
            "per project": max(by_project.values(), default=0.0) / ro["operations_per_project"],
            "per region": max(by_region.values(), default=0.0) / ro["operations_per_region"],
        }
        binding = max(terms, key=terms.get)
        soak = w.get("soak_seconds", 0.0) if i < last else 0.0
        win = window if i == first else 0.0
        per_wave[w["name"]] = {
            "bound": win + terms[binding] + soak,
            "window": win,
            "soak": soak,
            "ops": terms[binding],
            "binding": binding,
            "terms": terms,
            "clusters": len(paths),
            "changing": len(c),
            "work": total,
        }
    return per_wave


# ----- the child: the rollout flow ---------------------------------------------------------------------------


def child_flow(config_path: str) -> None:
    counter = CallCounter().install()
    from prefect import flow

    import flows.rollout
    from config.schema import load_config
    from tasks.access.runtime import Runtime
    from tasks.change.plan import Change, plan_cluster
    from tasks.change.rollout import outside_rollout
    from tasks.inventory.discovery import discover_projects, list_clusters
    from tasks.inventory.records import Inventory
    from tasks.inventory.state import PortState

    # The plan, from a plain inventory before the rollout (not timed): what the rollout should change.
    rt = Runtime.build(load_config(config_path))
    projects, findings = discover_projects(rt.config.scope, rt.clients, rt.caller)
    inv = Inventory.assemble(list_clusters(projects, rt.clients, rt.caller, 16), findings)
    planned = {
        rec.path: [
            s.level for s in plan_cluster(rec.state, rec.gate, PortState.DISABLED) if isinstance(s, Change)
        ]
        for rec in inv.records
        if outside_rollout(rec) is None
    }
    rt.close()
    counter.counts.clear()

    import tasks.change.apply
    from tasks.change.apply import Applier, OperationSlots

    # Instrumentation (timestamps only; the product code runs unchanged): each wave, each cluster's verdict
    # arriving and its disable_cluster, each operation from send to seen DONE, each wait for an operation slot.
    lock = threading.Lock()
    local = threading.local()
    cluster_times: dict[str, list[float]] = {}
    verdicts: dict[str, float] = {}
    wave_times: dict[str, list[float]] = {}
    ops: list[list] = []  # path, level, sent, seen done
    slot_waits: dict[str, float] = defaultdict(float)
    original_disable = flows.rollout.disable_cluster
    original_run_wave = flows.rollout.run_wave
    original_verdict = flows.rollout.WaveRun.verdict
    original_send, original_wait = Applier._send, Applier.wait
    original_slot = OperationSlots.slot

    def timed_disable(rec, *args, **kwargs):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        local.cluster = rec.path
        try:
            return original_disable(rec, *args, **kwargs)
        finally:
            with lock:
                cluster_times[rec.path] = [t0, time.perf_counter()]

    def timed_run_wave(wave, *args, **kwargs):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        try:
            return original_run_wave(wave, *args, **kwargs)
        finally:
            with lock:
                wave_times[wave.wave.name] = [t0, time.perf_counter()]

    def timed_verdict(self, path, scan):  # noqa: ANN001, ANN202
        with lock:
            verdicts.setdefault(path, time.perf_counter())
        return original_verdict(self, path, scan)

    def timed_send(self, path, level, kubelet):  # noqa: ANN001, ANN202
        local.sent = (path, level, time.perf_counter())
        return original_send(self, path, level, kubelet)

    def timed_wait(self, op_name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        sent, local.sent = getattr(local, "sent", None), None
        try:
            return original_wait(self, op_name, *args, **kwargs)
        finally:
            if sent:
                with lock:
                    ops.append([*sent, time.perf_counter()])

    @contextmanager
    def timed_slot(self, project, location):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        with original_slot(self, project, location):
            with lock:
                slot_waits[getattr(local, "cluster", "")] += time.perf_counter() - t0
            yield

    flows.rollout.disable_cluster = timed_disable
    flows.rollout.run_wave = timed_run_wave
    flows.rollout.WaveRun.verdict = timed_verdict
    Applier._send, Applier.wait = timed_send, timed_wait
    OperationSlots.slot = timed_slot
    assert tasks.change.apply.Applier is Applier

    @flow(name="warm-up")
    def warm_up() -> int:
        return 1

    t0 = time.perf_counter()
    warm_up()
    t1 = time.perf_counter()
    report = flows.rollout.rollout_flow(config_path, auto_approve=True)
    t2 = time.perf_counter()
    emit(
        {
            "prefect_start": t1 - t0,
            "makespan": t2 - t1,
            "start": t1,
            "planned": planned,
            "report": {"summary": report["summary"], "waves": report["waves"], "ok": report["ok"]},
            "clusters": [
                {k: c.get(k) for k in ("project", "location", "name", "outcome", "wave", "changes", "reason")}
                for c in report["clusters"]
            ],
            "cluster_times": cluster_times,
            "verdicts": verdicts,
            "wave_times": wave_times,
            "ops": ops,
            "slot_waits": slot_waits,
            "calls": counter.as_dict(),
        }
    )


# ----- parent ------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument(
        "--prelude",
        help="a Python file each measured process runs first: to try a product change as a monkeypatch "
        "(the output then does not describe the committed code)",
    )
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--projects", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-scale", type=float, default=0.01, help="real seconds per simulated second")
    ap.add_argument("--window", type=float, default=2.0, help="scan.window_seconds")
    ap.add_argument("--soak", type=float, default=1.0, help="soak seconds after the canary and early waves")
    ap.add_argument(
        "--nodes-per-pool",
        type=int,
        default=1,
        help="scan.nodes_per_pool (0: every node, the product default; the scan bench measures full scans)",
    )
    ap.add_argument("--save", help="also write the measurement's raw timings (JSON) here")
    args = ap.parse_args()
    if args.child:
        run_prelude()
        child_flow(args.child[1])
        return 0

    from gkesim.generate import generate_fleet

    if args.prelude:
        os.environ[PRELUDE_ENV] = str(Path(args.prelude).resolve())
        print(f"WITH PRELUDE {args.prelude}: not the committed product code")
    print(header("bench/rollout.py"), flush=True)
    spec = generate_fleet(args.clusters, args.projects, seed=args.seed)
    exp = spec_expectations(spec)
    scale = args.time_scale
    overrides = {
        "scan": {
            "window_seconds": args.window,
            "request_timeout_seconds": 60,
            "probe_log_interval_seconds": 1,
            **({"nodes_per_pool": args.nodes_per_pool} if args.nodes_per_pool else {}),  # 0: every node
        },
        "rollout": {
            "waves": waves(args.soak),
            "operations_in_flight": 20,
            "operations_per_project": 5,
            "operations_per_region": 10,
            "operation_poll_seconds": round(
                5.0 * scale, 4
            ),  # the defaults (5 s, 30 s) scaled like the operations
            "operation_poll_max_seconds": round(30.0 * scale, 4),
            "operation_timeout_seconds": 600,
            "default_soak_seconds": 0,
        },
    }
    with workdir("bench-rollout-") as tmp:
        fleet = write_fleet(spec, tmp / "fleet.yaml")
        with SimProcess(["--fleet", str(fleet), "--time-scale", str(scale)], tmp) as sim:
            print(f"simulator ready in {sim.startup_seconds:.1f} s; load {loadavg()}", flush=True)
            cfg_path = bench_config(sim, tmp / "rollout.yaml", **overrides)
            cfg = sim.config()
            cfg.update({k: {**cfg.get(k, {}), **v} for k, v in overrides.items()})
            r = run_measurement(
                Path(__file__), ["flow", str(cfg_path)], env=prefect_env(tmp / "prefect"), timeout=1200
            )
            sim_cpu = sim.cpu()
        inv = sim.invariants or {}
        sim_rss = sim.peak_rss_mb

    if args.save:
        Path(args.save).write_text(json.dumps({**r, "expected": exp, "scale": scale}))
    runs = {
        f"projects/{c['project']}/locations/{c['location']}/clusters/{c['name']}": c for c in r["clusters"]
    }
    by_wave: dict[str, list[str]] = defaultdict(list)
    for path, c in runs.items():
        if c.get("wave") and c["outcome"] not in ("skipped",):
            by_wave[c["wave"]].append(path)
    bound = lower_bound(exp, by_wave, cfg, scale)
    total_bound = sum(w["bound"] for w in bound.values())
    makespan = r["makespan"]

    # Per wave, from the flow's own timestamps: wave start (run_wave called) -> first verdict -> first cluster
    # started -> last cluster done -> the next wave's start (soak, approval) or the end of the flow.
    times = r["cluster_times"]
    verdict_at = r["verdicts"]
    flow_end = r["start"] + makespan
    wave_times = r["wave_times"]
    starts_in_order = sorted(v[0] for v in wave_times.values())
    ops = r["ops"]
    op_over: dict[str, float] = defaultdict(float)
    overshoots = []
    for path, level, sent, seen in ops:
        over = (seen - sent) - scale * exp[path]["changes"].get(level, 0.0)
        overshoots.append(over)
        op_over[path] += over
    wave_rows, where = [], []
    for w in cfg["rollout"]["waves"]:
        b = bound[w["name"]]
        paths = [p for p in by_wave.get(w["name"], []) if p in times]
        if w["name"] not in wave_times or not paths:
            wave_rows.append([w["name"], "0", "-", "-", "-", "-", "0.0", "-"])
            continue
        w0, w1 = wave_times[w["name"]]
        later = [t for t in starts_in_order if t > w0]
        end = min(later) if later else flow_end
        first_verdict = min(verdict_at.get(p, w1) for p in paths)
        last_verdict = max(verdict_at.get(p, w0) for p in paths)
        first_start = min(times[p][0] for p in paths)
        last_done = max(times[p][1] for p in paths)
        busy = sum(times[p][1] - times[p][0] for p in paths)
        phase = max(1e-9, last_done - first_start)
        wave_rows.append(
            [
                w["name"],
                f"{len(paths)} ({b['changing']} change)",
                f"{first_verdict - w0:.1f} / {last_verdict - w0:.1f}",
                f"{phase:.1f}",
                f"{100 * busy / (phase * w['concurrency']):.0f}%",
                (f"{b['window']:.0f} + " if b["window"] else "")
                + f"{b['ops']:.1f} ({b['binding']})"
                + (f" + {b['soak']:.0f} soak" if b["soak"] else ""),
                f"{b['bound']:.1f}",
                f"{end - w0:.1f}",
            ]
        )
        where += [
            [f"{w['name']}: to its first change, beyond the bound's window", first_start - w0 - b["window"]],
            [f"{w['name']}: changes, beyond the operations term", phase - b["ops"]],
            [
                f"{w['name']}: after its last change, beyond the soak (approval, report, next wave's set-up)"
                if later
                else f"{w['name']}: after its last change (report)",
                end - last_done - b["soak"],
            ],
        ]
    inventory_s = min(starts_in_order) - r["start"] if starts_in_order else 0.0
    where.insert(0, ["inventory before the first wave", inventory_s])

    # Per cluster: wall of disable_cluster minus its own operations' durations, and what that consists of.
    overhead, slot_wait, poll_over = [], [], []
    for path, (t0, t1) in times.items():
        c = runs.get(path)
        if c and c["outcome"] in ("verified", "partial"):
            overhead.append((t1 - t0) - scale * sum(exp[path]["changes"].values()))
            slot_wait.append(r["slot_waits"].get(path, 0.0))
            poll_over.append(op_over.get(path, 0.0))
    changed = [p for p, c in runs.items() if c["outcome"] in ("verified", "partial")]

    # Mutations: plan vs what was sent vs what the simulator accepted.
    planned = r["planned"]
    sent_levels = {p: [ch["level"] for ch in runs[p].get("changes") or []] for p in runs}
    attempts = sum(ch.get("attempts", 0) for p in runs for ch in runs[p].get("changes") or [])
    planned_total = sum(len(planned[p]) for p in changed)
    client_mutations = sum(r["calls"].get(m, 0) for m in MUTATIONS)
    mismatched_plan = [p for p in changed if sorted(sent_levels[p]) != sorted(planned.get(p, []))]
    spec_vs_plan = [p for p in planned if sorted(planned[p]) != sorted(exp[p]["changes"])]
    blocked_wrong = [
        p for p, c in runs.items() if p in planned and exp[p]["blocked"] != (c["outcome"] == "blocked")
    ]
    touched_blocked = [p for p, c in runs.items() if c["outcome"] == "blocked" and c.get("changes")]
    outcomes = r["report"]["summary"]["outcome"]
    n = max(1, len(changed))

    print()
    print(
        table(
            [
                "wave",
                "clusters",
                "first / last verdict s",
                "changes s",
                "workers busy",
                "lower bound s (window + operations + soak)",
                "bound s",
                "actual s",
            ],
            wave_rows,
            "lrrrrlrr",
        )
    )
    print()
    print(
        table(
            ["where makespan - bound goes", "s"],
            [[k, f"{v:.1f}"] for k, v in where] + [["total", f"{makespan - total_bound:.1f}"]],
        )
    )
    print()
    print(
        table(
            ["measure", "value"],
            [
                ["makespan (rollout flow, end to end)", f"{makespan:.1f} s"],
                ["lower bound (sum of waves)", f"{total_bound:.1f} s"],
                ["makespan / bound", f"{makespan / total_bound:.2f}x" if total_bound else "-"],
                ["clusters changed (verified + partial)", f"{len(changed)}"],
                [
                    "overhead per changed cluster (disable_cluster wall - its operations), p50 / p95 / mean",
                    f"{pct(overhead, 0.5):.2f} / {pct(overhead, 0.95):.2f} / {statistics.fmean(overhead) if overhead else 0:.2f} s",
                ],
                [
                    "of which, mean per cluster: operation seen DONE late (send + polls), slot waits, the rest",
                    f"{statistics.fmean(poll_over) if poll_over else 0:.2f} / "
                    f"{statistics.fmean(slot_wait) if slot_wait else 0:.2f} / "
                    f"{statistics.fmean(overhead) - statistics.fmean(poll_over) - statistics.fmean(slot_wait) if overhead else 0:.2f} s",
                ],
                [
                    "operation seen DONE after its duration, p50 / p95",
                    f"{pct(overshoots, 0.5):.3f} / {pct(overshoots, 0.95):.3f} s",
                ],
                ["planned changes on changed clusters", f"{planned_total}"],
                [
                    "mutating calls sent (client count) / attempts in report",
                    f"{client_mutations} / {attempts}",
                ],
                [
                    "mutations the simulator journaled / accepted",
                    f"{inv.get('mutations')} / {inv.get('accepted')}",
                ],
                [
                    "mutating calls per changed cluster",
                    f"{client_mutations / n:.2f} (plan: {planned_total / n:.2f})",
                ],
                [
                    "reads per changed cluster: GetCluster / ListOperations / GetOperation",
                    " / ".join(
                        f"{r['calls'].get(m, 0) / n:.1f}"
                        for m in ("GetCluster", "ListOperations", "GetOperation")
                    ),
                ],
                ["API calls by method", json.dumps(r["calls"])],
                ["outcomes", json.dumps(outcomes)],
                [
                    "simulator invariants",
                    f"conflicts {len(inv.get('conflicts', []))}, breakage {len(inv.get('breakage', []))}, "
                    f"duplicates {len(inv.get('duplicates', []))}, lost settings {len(inv.get('lost_settings', []))}",
                ],
                ["peak RSS (Portcullis) / (simulator)", f"{r['peak_rss_mb']:.0f} MB / {sim_rss:.0f} MB"],
                ["CPU (Portcullis) / (simulator)", f"{r['cpu_seconds']:.0f} s / {sim_cpu:.0f} s"],
                ["Prefect start (not counted)", f"{r['prefect_start']:.1f} s"],
            ],
            "lr",
        )
    )
    print(f"\nload now {loadavg()}")
    ratio = makespan / total_bound if total_bound else float("inf")
    goals = [
        goal_line("makespan <= 1.15x the lower bound", ratio <= GOAL_RATIO, f"{ratio:.2f}x"),
        goal_line(
            "exactly the planned mutations",
            client_mutations == planned_total == attempts == inv.get("accepted") and not mismatched_plan,
            f"planned {planned_total}, sent {client_mutations}, accepted {inv.get('accepted')}, "
            f"{len(mismatched_plan)} clusters differ from their plan",
        ),
        goal_line("plan matches the fleet spec", not spec_vs_plan, f"{len(spec_vs_plan)} clusters differ"),
        goal_line(
            "gate blocks exactly the clusters whose agents use the port",
            not blocked_wrong and not touched_blocked,
            f"{len(blocked_wrong)} wrong, {len(touched_blocked)} blocked yet changed",
        ),
        goal_line(
            "0 conflicts, 0 breakage, 0 duplicates, 0 lost settings",
            inv != {}
            and not any(inv.get(k) for k in ("conflicts", "breakage", "duplicates", "lost_settings")),
            "simulator invariant report" if inv else "no invariant report",
        ),
        goal_line(
            "no failed or in-flight clusters",
            not {"failed", "in_flight"} & set(outcomes),
            json.dumps(outcomes),
        ),
    ]
    print("\n".join(goals))
    return 0 if all(" met " in g for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
