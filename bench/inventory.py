"""How fast Portcullis inventories a large fleet: 10,000 clusters in 500 projects, 50 ms added latency per call.

The simulator (`portcullis sim --clusters 10000 --projects 500 --latency-ms 50`) runs in its own process. Each
measurement runs in a fresh child process, so each has its own peak RSS (VmHWM) and nothing is warm:

- `plain`: `discover_clusters` (the folder walk, with each project's ListClusters sent as soon as the project is
  found) + `Inventory.assemble`, the plain functions the inventory flow runs, with `limits.concurrency` = the
  configured value (16, as in config/example.yaml and the schema's default), and once more with a higher bound
  (`--also`), to show where the time goes when more calls may be in flight;
- `sequential`: the same calls, one at a time (`limits.concurrency: 1`): the baseline;
- `flow`: the inventory flow end to end with Prefect (a temporary Prefect server, started by a warm-up flow
  before timing starts), the configured concurrency.

Every gRPC call Portcullis makes is counted by method (client interceptor). Goals (issue 3): >= 20x faster than
the sequential baseline, < 60 s, < 400 MB peak RSS. Exits 1 when a goal is missed. The ratio is judged at the
configured concurrency; the output also prints its ceiling there: every call holds one of the `concurrency` slots for
at least the added latency, so no run can beat calls x latency / concurrency, and the ratio cannot exceed
concurrency x (the sequential run's time per call) / latency.

    .venv/bin/python bench/inventory.py [--clusters 10000 --projects 500 --latency-ms 50 --concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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
)

GOAL_RATIO = 20.0
GOAL_SECONDS = 60.0
GOAL_MB = 400.0


# ----- children ----------------------------------------------------------------------------------------------


def child_plain(config_path: str) -> None:
    counter = CallCounter().install()
    from config.schema import load_config
    from tasks.access.runtime import Runtime
    from tasks.inventory.discovery import discover_clusters
    from tasks.inventory.records import Inventory

    rt = Runtime.build(load_config(config_path))
    c0, t0 = time.process_time(), time.perf_counter()
    listed, findings = discover_clusters(rt.config.scope, rt.clients, rt.caller, rt.config.limits.concurrency)
    c1, t1 = time.process_time(), time.perf_counter()
    inv = Inventory.assemble(listed, findings)
    c2, t2 = time.process_time(), time.perf_counter()
    emit(
        {
            "wall": t2 - t0,
            "calls_phase": t1 - t0,
            "assemble": t2 - t1,
            "cpu": {"calls": c1 - c0, "assemble": c2 - c1},
            "projects": len(listed),
            "clusters": len(inv.records),
            "findings": len(inv.findings),
            "calls": counter.as_dict(),
            "outcomes": inv.counts()["outcome"],
        }
    )


def child_flow(config_path: str) -> None:
    counter = CallCounter().install()
    from prefect import flow

    from flows.inventory import inventory_flow

    @flow(name="warm-up")
    def warm_up() -> int:
        return 1

    t0 = time.perf_counter()
    warm_up()  # starts the temporary Prefect server; not part of the inventory's time
    t1 = time.perf_counter()
    report = inventory_flow(config_path)
    t2 = time.perf_counter()
    emit(
        {
            "wall": t2 - t1,
            "prefect_start": t1 - t0,
            "clusters": report["summary"]["clusters"],
            "findings": report["summary"]["errors"],
            "calls": counter.as_dict(),
            "outcomes": report["summary"]["outcome"],
        }
    )


# ----- parent ------------------------------------------------------------------------------------------------


def row(name: str, conc: int, r: dict, base: dict | None) -> list[str]:
    ratio = f"{base['wall'] / r['wall']:.1f}x" if base else "1.0x"
    phases = (
        f"{r['calls_phase']:.2f} / {r['assemble']:.2f}"
        if "calls_phase" in r
        else f"(Prefect start {r['prefect_start']:.1f} s, not counted)"
    )
    if "cpu" in r:
        c = r["cpu"]
        phases += f" (CPU {c['calls']:.2f} / {c['assemble']:.2f})"
    return [
        name,
        str(conc),
        f"{r['wall']:.2f}",
        phases,
        f"{sum(r['calls'].values()):,}",
        f"{r['clusters']:,}",
        f"{r['peak_rss_mb']:.0f}",
        f"{r['cpu_seconds']:.1f}",
        ratio,
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument(
        "--prelude",
        help="a Python file each measured process runs first: to try a product change as a monkeypatch "
        "(the output then does not describe the committed code)",
    )
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--projects", type=int, default=500)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=16, help="limits.concurrency (the configured value)")
    ap.add_argument("--also", type=int, default=64, help="also measure this concurrency (0: skip)")
    ap.add_argument("--no-flow", action="store_true", help="skip the Prefect flow measurement")
    args = ap.parse_args()
    if args.child:
        run_prelude()
        mode, config_path = args.child
        {"plain": child_plain, "flow": child_flow}[mode](config_path)
        return 0

    if args.prelude:
        os.environ[PRELUDE_ENV] = str(Path(args.prelude).resolve())
        print(f"WITH PRELUDE {args.prelude}: not the committed product code")
    print(header("bench/inventory.py"), flush=True)
    results: dict[str, dict] = {}
    with workdir("bench-inventory-") as tmp:
        sim_args = ["--clusters", str(args.clusters), "--projects", str(args.projects), "--time-scale", "1"]
        sim_args += ["--latency-ms", str(args.latency_ms)]
        with SimProcess(sim_args, tmp) as sim:
            print(f"simulator ready in {sim.startup_seconds:.1f} s", flush=True)
            configs = {}
            for conc in {1, args.concurrency, args.also} - {0}:
                configs[conc] = bench_config(sim, tmp / f"c{conc}.yaml", limits={"concurrency": conc})
            plan = [("plain", args.concurrency), ("sequential", 1)]
            if args.also:
                plan.append(("plain", args.also))
            if not args.no_flow:
                plan.append(("flow", args.concurrency))
            for mode, conc in plan:
                env = prefect_env(tmp / "prefect") if mode == "flow" else None
                print(f"measuring {mode} (concurrency {conc}), load {loadavg()} ...", flush=True)
                child_mode = "flow" if mode == "flow" else "plain"
                results[f"{mode}-{conc}"] = run_measurement(
                    Path(__file__), [child_mode, str(configs[conc])], env=env
                )
            sim_cpu = sim.cpu()
        sim_rss = sim.peak_rss_mb

    base = results["sequential-1"]
    main_run = results[f"plain-{args.concurrency}"]
    rows = [row("plain functions (discover + list + assemble)", args.concurrency, main_run, base)]
    rows.append(row("sequential baseline (same calls, one at a time)", 1, base, None))
    if args.also:
        rows.append(row("plain functions, higher bound", args.also, results[f"plain-{args.also}"], base))
    if not args.no_flow:
        rows.append(
            row(
                "inventory flow (Prefect, end to end)",
                args.concurrency,
                results[f"flow-{args.concurrency}"],
                base,
            )
        )
    print()
    print(
        table(
            [
                "measurement",
                "concurrency",
                "wall s",
                "discover + list / assemble s (CPU s)",
                "calls",
                "clusters",
                "peak RSS MB",
                "process CPU s",
                "vs sequential",
            ],
            rows,
            "lrrrrrrrr",
        )
    )
    print()
    print(f"calls by method (configured concurrency): {main_run['calls']}")
    for key, r in results.items():
        if r["clusters"] != args.clusters:
            print(f"WARNING: {key} found {r['clusters']} clusters, expected {args.clusters}")
    print(
        f"simulator: peak RSS {sim_rss:.0f} MB, CPU {sim_cpu:.1f} s over the whole run; load now {loadavg()}"
    )
    ratio = base["wall"] / main_run["wall"]
    n_calls = sum(base["calls"].values())
    per_call_ms = 1000.0 * base["wall"] / n_calls

    def ceiling(conc: int) -> float:
        return conc * per_call_ms / args.latency_ms if args.latency_ms else float("inf")

    print(
        f"sequential: {per_call_ms:.1f} ms per call ({n_calls} calls, {args.latency_ms:.0f} ms of it added latency); "
        "ceiling of the ratio at concurrency C = C x that / latency: "
        + ", ".join(f"{ceiling(c):.1f}x at {c}" for c in sorted({args.concurrency, args.also} - {0}))
    )
    others = (
        f"; {base['wall'] / results[f'plain-{args.also}']['wall']:.1f}x at concurrency {args.also}"
        if args.also
        else ""
    )
    peak = max(r["peak_rss_mb"] for r in results.values())
    slowest = max(r["wall"] for k, r in results.items() if not k.startswith("sequential"))
    goals = [
        goal_line(
            ">= 20x faster than sequential",
            ratio >= GOAL_RATIO,
            f"{ratio:.1f}x at concurrency {args.concurrency}, whose ceiling is {ceiling(args.concurrency):.1f}x{others}",
        ),
        goal_line("< 60 s", slowest < GOAL_SECONDS, f"slowest non-baseline run {slowest:.1f} s"),
        goal_line("< 400 MB", peak < GOAL_MB, f"highest peak RSS {peak:.0f} MB"),
        goal_line(
            "every cluster found",
            all(r["clusters"] == args.clusters for r in results.values()),
            ", ".join(f"{k}: {r['clusters']}" for k, r in results.items()),
        ),
    ]
    print("\n".join(goals))
    return 0 if all(" met " in g for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
