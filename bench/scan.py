"""How fast Portcullis scans nodes for read-only port traffic: 1,000 Standard clusters x 3 pools x 2 nodes.

The simulator runs in its own process (`portcullis sim --fleet F --time-scale 1`), serving every node's kubelet
/metrics through the Kubernetes API server proxy over HTTPS, each payload ~2 MB (the KubeServer default,
`gkesim.kubelet.DEFAULT_METRICS_BYTES`; the bench reads one payload raw and prints its size, as text and as the
gzip the scan asks for). Usage mix: 70% of
clusters clean, 15% used before, 15% in use (with an agent whose manifest names port 10255), so the verdicts can be
checked against the fleet. Each measurement runs in a fresh child process:

- `plain`: `Scanner(rt).scan(records)` on every cluster at once (what one scan task runs), after an inventory
  that is not timed; the config's scan concurrency (32 node reads in flight, the default);
- `flow`: the scan flow end to end with Prefect (inventory, then the clusters in batches of
  `limits.clusters_per_task`, every batch at once), after a warm-up flow that starts the temporary Prefect server.

Every node read is timed (wrapping `tasks.usage.kube.read_metrics`). Reported: node readings per second while reads are
in flight (union of the read intervals; both readings of every node), the first round's rate, the scan's wall time
against the window, peak RSS. Goals (issue 4): >= 200 node readings/s on 2 cores, the whole scan within one window
+ 30 s, < 500 MB. Exits 1 when a goal is missed.

    .venv/bin/python bench/scan.py [--clusters 1000 --window 60 --concurrency 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    PRELUDE_ENV,
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

GOAL_RATE = 200.0
GOAL_SLACK = 30.0
GOAL_MB = 500.0
PROJECTS = 50


def build_fleet(clusters: int, seed: int = 0):  # -> FleetSpec
    import random

    from gkesim.spec import ClusterSpec, FleetSpec, PoolSpec, ProjectSpec

    rng = random.Random(seed)
    projects = [ProjectSpec(id=f"scan-bench-{i:03d}", labels={"env": "dev"}) for i in range(PROJECTS)]
    agents = ("datadog", "telegraf", "metrics-server", "fluent-bit", "prometheus")
    for i in range(clusters):
        roll = rng.random()
        usage = "clean" if roll < 0.70 else ("used_before" if roll < 0.85 else "in_use")
        pools = [
            PoolSpec(name=name, nodes=2, rate_per_minute=60.0)
            for name in ("default-pool", "pool-1", "pool-2")
        ]
        if usage != "clean":
            pools[rng.randrange(3)].usage = usage
        projects[i % PROJECTS].clusters.append(
            ClusterSpec(
                name=f"c-{i:04d}",
                location=("us-central1", "europe-west1", "asia-east1")[i % 3],
                version="1.30.5-gke.1014001",  # before 1.32: an unset port is open, so in-use traffic shows
                pools=pools,
                agents=[rng.choice(agents)] if usage == "in_use" else [],
            )
        )
    return FleetSpec(projects=projects)


def expected_verdicts(spec) -> dict[str, str]:  # noqa: ANN001
    out = {}
    for proj in spec.projects:
        for c in proj.clusters:
            usages = {p.usage for p in c.pools}
            verdict = (
                "in_use" if "in_use" in usages else "used_before" if "used_before" in usages else "clear"
            )
            out[f"projects/{proj.id}/locations/{c.location}/clusters/{c.name}"] = verdict
    return out


# ----- children ----------------------------------------------------------------------------------------------


class ReadTimer:
    """Wraps tasks.usage.kube.read_metrics: (round, start, end, ok) per node read."""

    def __init__(self) -> None:
        import tasks.usage.kube

        # (round, start, end, ok); list.append is atomic, so no lock on the hot path
        self.reads: list[tuple[int, float, float, bool]] = []
        self._seen: dict[tuple[int, str], int] = {}  # a node's two reads never overlap
        original = tasks.usage.kube.read_metrics

        def timed(api, node, timeout, max_bytes):  # noqa: ANN001, ANN202
            key = (id(api), node)
            rnd = self._seen[key] = self._seen.get(key, 0) + 1
            t0 = time.perf_counter()
            reading = original(api, node, timeout, max_bytes)
            self.reads.append((rnd, t0, time.perf_counter(), reading.error is None))
            return reading

        tasks.usage.kube.read_metrics = timed

    def summary(self) -> dict:
        reads = sorted(self.reads, key=lambda r: r[1])
        busy, cur_start, cur_end = 0.0, None, None
        for _, t0, t1, _ in reads:  # union of the read intervals
            if cur_end is None or t0 > cur_end:
                if cur_end is not None:
                    busy += cur_end - cur_start
                cur_start, cur_end = t0, t1
            else:
                cur_end = max(cur_end, t1)
        if cur_end is not None:
            busy += cur_end - cur_start
        first = [r for r in reads if r[0] == 1]
        span1 = (max(r[2] for r in first) - min(r[1] for r in first)) if first else 0.0
        lat = sorted(r[2] - r[1] for r in reads) or [0.0]
        return {
            "readings": len(reads),
            "errors": sum(1 for r in reads if not r[3]),
            "busy": busy,
            "round1_readings": len(first),
            "round1_span": span1,
            "read_p50": lat[len(lat) // 2],
            "read_p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        }


def payload_bytes(rt, record) -> tuple[int, int]:  # noqa: ANN001
    """One node's /metrics payload, read raw: its size as text, and on the wire as gzip (what read_metrics asks)."""
    from kubernetes import client as k8s

    from tasks.usage import kube

    api = rt.clients.kube(record.state.endpoint, record.state.ca_certificate)
    node = kube.list_nodes(api, 20)[0].name
    core = k8s.CoreV1Api(api)
    sizes = []
    for encoding in ("identity", "gzip"):
        resp = core.connect_get_node_proxy_with_path(
            node, "metrics", _preload_content=False, _headers={"Accept-Encoding": encoding}
        )
        sizes.append(sum(len(c) for c in resp.stream(1 << 20, decode_content=False)))
    return sizes[0], sizes[1]


def verdict_check(results: dict, expected: dict[str, str]) -> tuple[dict, int]:
    got = Counter(str(r.verdict) if hasattr(r, "verdict") else r for r in results.values())
    wrong = sum(
        1
        for path, r in results.items()
        if (str(r.verdict) if hasattr(r, "verdict") else r) != expected.get(path)
    )
    return dict(got), wrong


def child_plain(config_path: str, expected_path: str) -> None:
    from config.schema import load_config
    from flows.scan import SCANNABLE
    from tasks.access.runtime import Runtime
    from tasks.inventory.discovery import discover_projects, list_clusters
    from tasks.inventory.records import Inventory
    from tasks.usage.scan import Scanner

    expected = json.loads(Path(expected_path).read_text())
    timer = ReadTimer()
    rt = Runtime.build(load_config(config_path))
    t0 = time.perf_counter()
    projects, findings = discover_projects(rt.config.scope, rt.clients, rt.caller)
    inv = Inventory.assemble(
        list_clusters(projects, rt.clients, rt.caller, rt.config.limits.concurrency), findings
    )
    records = [r for r in inv.records if r.outcome in SCANNABLE]
    t1, c1 = time.perf_counter(), time.process_time()
    results = Scanner(rt).scan(records)
    t2, c2 = time.perf_counter(), time.process_time()
    verdicts, wrong = verdict_check(results, expected)
    emit(
        {
            "inventory": t1 - t0,
            "wall": t2 - t1,
            "scan_cpu": c2 - c1,
            "clusters": len(records),
            "verdicts": verdicts,
            "wrong_verdicts": wrong,
            "payload_bytes": payload_bytes(rt, records[0]),
            **timer.summary(),
        }
    )


def child_flow(config_path: str, expected_path: str) -> None:
    from prefect import flow

    import flows.scan

    expected = json.loads(Path(expected_path).read_text())
    timer = ReadTimer()
    spans: dict[str, float] = {}
    original = flows.scan.scan_records

    def timed_scan_records(config_path, records):  # noqa: ANN001, ANN202
        spans["scan_start"] = time.perf_counter()
        try:
            return original(config_path, records)
        finally:
            spans["scan_end"] = time.perf_counter()

    flows.scan.scan_records = timed_scan_records

    @flow(name="warm-up")
    def warm_up() -> int:
        return 1

    t0 = time.perf_counter()
    warm_up()
    t1 = time.perf_counter()
    report = flows.scan.scan_flow(config_path)
    t2 = time.perf_counter()
    got = {row["cluster"]: row["verdict"] for row in report["clusters"]}
    verdicts, wrong = verdict_check(got, expected)
    emit(
        {
            "prefect_start": t1 - t0,
            "flow_wall": t2 - t1,
            "wall": spans["scan_end"] - spans["scan_start"],
            "clusters": len(got),
            "verdicts": verdicts,
            "wrong_verdicts": wrong,
            **timer.summary(),
        }
    )


# ----- parent ------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument(
        "--prelude",
        help="a Python file each measured process runs first: to try a product change as a monkeypatch "
        "(the output then does not describe the committed code)",
    )
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument(
        "--window",
        type=float,
        default=60.0,
        help="scan.window_seconds (default: the product's default, 60 s, the window issue 4 names)",
    )
    ap.add_argument("--concurrency", type=int, default=32, help="scan.concurrency (node reads in flight)")
    ap.add_argument("--no-flow", action="store_true", help="skip the Prefect flow measurement")
    args = ap.parse_args()
    if args.child:
        run_prelude()
        mode, config_path, expected_path = args.child
        {"plain": child_plain, "flow": child_flow}[mode](config_path, expected_path)
        return 0

    if args.prelude:
        os.environ[PRELUDE_ENV] = str(Path(args.prelude).resolve())
        print(f"WITH PRELUDE {args.prelude}: not the committed product code")
    print(header("bench/scan.py"), flush=True)
    spec = build_fleet(args.clusters)
    expected = expected_verdicts(spec)
    nodes = sum(p.nodes for proj in spec.projects for c in proj.clusters for p in c.pools)
    results: dict[str, dict] = {}
    with workdir("bench-scan-") as tmp:
        fleet = write_fleet(spec, tmp / "fleet.yaml")
        (tmp / "expected.json").write_text(json.dumps(expected))
        with SimProcess(["--fleet", str(fleet), "--time-scale", "1"], tmp) as sim:
            print(f"simulator ready in {sim.startup_seconds:.1f} s ({args.clusters} clusters, {nodes} nodes)")
            cfg = bench_config(
                sim,
                tmp / "scan.yaml",
                scan={
                    "window_seconds": args.window,
                    "concurrency": args.concurrency,
                    "request_timeout_seconds": 60,
                },
            )
            modes = ["plain"] + ([] if args.no_flow else ["flow"])
            for mode in modes:
                print(f"measuring {mode}, load {loadavg()} ...", flush=True)
                env = prefect_env(tmp / "prefect") if mode == "flow" else None
                results[mode] = run_measurement(
                    Path(__file__), [mode, str(cfg), str(tmp / "expected.json")], env=env, timeout=900
                )
            sim_cpu = sim.cpu()
        sim_rss = sim.peak_rss_mb

    rows = []
    for mode, r in results.items():
        rate = r["readings"] / r["busy"] if r["busy"] else 0.0
        rate1 = r["round1_readings"] / r["round1_span"] if r["round1_span"] else 0.0
        name = (
            "Scanner.scan (plain), all clusters at once"
            if mode == "plain"
            else "scan flow (Prefect), scan part"
        )
        rows.append(
            [
                name,
                f"{r['readings']:,}",
                f"{r['errors']}",
                f"{rate:.0f}",
                f"{rate1:.0f}",
                f"{r['read_p50'] * 1000:.0f} / {r['read_p99'] * 1000:.0f}",
                f"{r['wall']:.1f}",
                f"{r['wall'] - args.window:+.1f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{r['cpu_seconds']:.0f}",
            ]
        )
        r["rate"] = rate
    print()
    print(
        table(
            [
                "measurement",
                "node readings",
                "errors",
                "readings/s (reading)",
                "readings/s (1st round)",
                "read p50 / p99 ms",
                "wall s",
                "vs window s",
                "peak RSS MB",
                "CPU s",
            ],
            rows,
            "lrrrrrrrrr",
        )
    )
    print()
    p = results["plain"]
    print(
        f"window {args.window:.0f} s; scan concurrency {args.concurrency}; payload {p['payload_bytes'][0]:,} bytes per node "
        f"reading ({p['payload_bytes'][1]:,} on the wire: gzip)"
    )
    print(
        f"plain: inventory first (not in the scan's wall) {p['inventory']:.1f} s; scan CPU {p['scan_cpu']:.1f} s"
    )
    if "flow" in results:
        f = results["flow"]
        print(
            f"flow: whole flow {f['flow_wall']:.1f} s (inventory + scan + artifacts); Prefect start {f['prefect_start']:.1f} s, not counted"
        )
    for mode, r in results.items():
        print(f"{mode}: verdicts {r['verdicts']}, {r['wrong_verdicts']} differ from the fleet's usage")
    print(
        f"simulator: peak RSS {sim_rss:.0f} MB, CPU {sim_cpu:.0f} s over the whole run; load now {loadavg()}"
    )
    worst_rate = min(r["rate"] for r in results.values())
    worst_wall = max(r["wall"] for r in results.values())
    peak = max(r["peak_rss_mb"] for r in results.values())
    goals = [
        goal_line(
            ">= 200 node readings/s", worst_rate >= GOAL_RATE, f"lowest {worst_rate:.0f}/s while reading"
        ),
        goal_line(
            "scan within one window + 30 s",
            worst_wall <= args.window + GOAL_SLACK,
            f"slowest {worst_wall:.1f} s for a {args.window:.0f} s window",
        ),
        goal_line("< 500 MB", peak < GOAL_MB, f"highest peak RSS {peak:.0f} MB"),
        goal_line(
            "every node read, every verdict right",
            all(
                r["errors"] == 0 and r["wrong_verdicts"] == 0 and r["readings"] == 2 * nodes
                for r in results.values()
            ),
            ", ".join(
                f"{m}: {r['readings']} readings, {r['errors']} errors, {r['wrong_verdicts']} wrong"
                for m, r in results.items()
            ),
        ),
    ]
    print("\n".join(goals))
    return 0 if all(" met " in g for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
