"""The org-wide rollout against a generated 1,000-cluster fleet with scaled operation durations.

The simulator runs in its own process (`portcullis sim --fleet F --time-scale S`; default S = 0.01, so a
60 s UpdateCluster takes 0.6 s and a node pool update 0.6 s + 0.3 s per node). The fleet is
`generate_fleet(1000, 50, seed=0)`: ~20% Autopilot, NAP, old versions, other kubelet settings, 70% of clusters
clean, 30% whose agents read port 10255 now or did before (their gate must block them). The rollout flow runs
end to end with Prefect (`auto_approve=True`) in a child process, with three waves (canary 1 cluster, 10% at
concurrency 10, the rest at 20), a small scan window, and the default bounds on operations in flight (20), per
project (5) and per region (10). Poll interval: 5 s scaled (`rollout.operation_poll_seconds` = 5 x S). The
wave scans read one node per pool (`scan.nodes_per_pool: 1`, `--nodes-per-pool 0` for every node): the gate needs
every pool sampled, and bench/scan.py measures full scans; every node doubles the scan time here.

The lower bound. Per wave w, with c_i the sum of cluster i's planned operation durations (x S; a cluster's
operations run one after another) over the clusters whose gate passes:

    LB_w = window + max( max_i c_i,  sum_i c_i / concurrency_w,  sum_i c_i / operations_in_flight,
                         max_project sum c_i / operations_per_project,  max_region sum c_i / operations_per_region )
           + soak_w (not after the last wave)

Each term is a bound no schedule can beat (the wave's scan cannot end before one window; a cluster's operations
are sequential; at most that many clusters or operations at once), so the maximum is one too. The rollout's makespan
is compared with sum_w LB_w; the initial inventory is reported but is overhead, not part of the bound.

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
    ro = cfg["rollout"]
    window = cfg["scan"]["window_seconds"]
    per_wave = {}
    order = [w["name"] for w in ro["waves"]]
    last_with_clusters = max((i for i, n in enumerate(order) if clusters_by_wave.get(n)), default=-1)
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
        soak = w.get("soak_seconds", 0.0) if i < last_with_clusters else 0.0
        per_wave[w["name"]] = {
            "bound": window + terms[binding] + soak,
            "window": window,
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
    from tasks.discovery import discover_projects, list_clusters
    from tasks.inventory import Inventory
    from tasks.plan import Change, plan_cluster
    from tasks.rollout import outside_rollout
    from tasks.runtime import Runtime
    from tasks.state import PortState

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

    lock = threading.Lock()
    cluster_times: dict[str, list[float]] = {}
    scans: list[tuple[float, float, int]] = []
    original_disable = flows.rollout.disable_cluster
    original_scan = flows.rollout.scan_records

    def timed_disable(rec, *args, **kwargs):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        try:
            return original_disable(rec, *args, **kwargs)
        finally:
            with lock:
                cluster_times[rec.path] = [t0, time.perf_counter()]

    def timed_scan(config_path, records):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        try:
            return original_scan(config_path, records)
        finally:
            with lock:
                scans.append((t0, time.perf_counter(), len(records)))

    flows.rollout.disable_cluster = timed_disable
    flows.rollout.scan_records = timed_scan

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
            "scans": scans,
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
            "operation_poll_seconds": round(5.0 * scale, 4),
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

    # Wave timings from the flow's own instrumentation: from the wave's scan start to the next wave's (soak and
    # approval included), or to the end of the flow for the last one.
    scans = sorted(r["scans"])
    times = r["cluster_times"]
    flow_end = r["start"] + makespan
    scanned_waves = [w for w in cfg["rollout"]["waves"] if by_wave.get(w["name"])]
    starts = {w["name"]: scans[i] for i, w in enumerate(scanned_waves) if i < len(scans)}
    wave_rows = []
    for w in cfg["rollout"]["waves"]:
        b = bound[w["name"]]
        paths = by_wave.get(w["name"], [])
        if w["name"] not in starts:
            wave_rows.append([w["name"], "0", "-", "-", "-", "0.0", "-"])
            continue
        s0, s1, _ = starts[w["name"]]
        later = [v[0] for k, v in starts.items() if v[0] > s0]
        end = min(later) if later else flow_end
        last_done = max((times[p][1] for p in paths if p in times), default=s1)
        wave_rows.append(
            [
                w["name"],
                f"{len(paths)} ({b['changing']} change)",
                f"{s1 - s0:.1f}",
                f"{last_done - s1:.1f}",
                f"{b['window']:.0f} + {b['ops']:.1f} ({b['binding']})"
                + (f" + {b['soak']:.0f} soak" if b["soak"] else ""),
                f"{b['bound']:.1f}",
                f"{end - s0:.1f}",
            ]
        )

    # Per cluster: wall of disable_cluster minus its own operations' durations.
    overhead = []
    for path, (t0, t1) in times.items():
        c = runs.get(path)
        if c and c["outcome"] in ("verified", "partial"):
            overhead.append((t1 - t0) - scale * sum(exp[path]["changes"].values()))
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

    print()
    print(
        table(
            [
                "wave",
                "clusters",
                "scan s",
                "changes s",
                "lower bound s (window + operations + soak)",
                "bound s",
                "actual s",
            ],
            wave_rows,
            "lrrrlrr",
        )
    )
    inventory_s = (scans[0][0] - r["start"]) if scans else 0.0
    print()
    print(
        table(
            ["measure", "value"],
            [
                ["makespan (rollout flow, end to end)", f"{makespan:.1f} s"],
                ["lower bound (sum of waves)", f"{total_bound:.1f} s"],
                ["makespan / bound", f"{makespan / total_bound:.2f}x" if total_bound else "-"],
                ["of which: inventory before the first wave", f"{inventory_s:.1f} s"],
                [
                    "of which: scan time beyond one window per wave",
                    f"{sum(s1 - s0 for s0, s1, _ in scans) - args.window * len(scans):.1f} s",
                ],
                ["clusters changed (verified + partial)", f"{len(changed)}"],
                [
                    "orchestration overhead per changed cluster (disable_cluster wall - its operations), p50 / p95 / mean",
                    f"{pct(overhead, 0.5):.2f} / {pct(overhead, 0.95):.2f} / {statistics.fmean(overhead) if overhead else 0:.2f} s",
                ],
                [
                    "(makespan - bound) per changed cluster",
                    f"{(makespan - total_bound) / max(1, len(changed)):.3f} s",
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
                    f"{client_mutations / max(1, len(changed)):.2f} (plan: {planned_total / max(1, len(changed)):.2f})",
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
