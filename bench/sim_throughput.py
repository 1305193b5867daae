"""How fast the simulator's gRPC front end answers the real Google clients, and how much memory a big fleet takes.

Generates a 10,000-cluster / 500-project fleet, serves it from a SUBPROCESS (so client and server do not share a
GIL), then measures for a few seconds each:

- GetCluster calls/s with the sync ClusterManagerClient over one channel from N threads,
- GetCluster calls/s with ClusterManagerAsyncClient (grpc.aio) keeping C calls in flight,
- ListClusters calls/s (every location of a random project) with the sync client,

with the server's and the client's CPU per call (from /proc), so the limit is visible. Also reports the server's
resident memory after building the fleet (VmRSS) and at its peak (VmHWM), and an in-process breakdown of the
server-side cost of GetCluster and ListClusters on the same fleet (no gRPC).

    .venv/bin/python bench/sim_throughput.py [--clusters 10000 --projects 500 --seconds 8 --threads 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.cloud import container_v1
from google.cloud.container_v1.services.cluster_manager.transports import (
    ClusterManagerGrpcAsyncIOTransport,
    ClusterManagerGrpcTransport,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gkesim.generate import generate_fleet  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
GOAL_CALLS = 1000.0
GOAL_MB = 300.0


def proc_cpu(pid: int) -> float:
    """utime + stime of a process, seconds (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


@dataclass
class Result:
    name: str
    calls: int
    seconds: float
    server_cpu: float
    client_cpu: float
    latencies: list[float]
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def row(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        return (
            f"| {self.name} | {self.rate:,.0f} | {p50:.1f} | {p99:.1f} | "
            f"{self.server_cpu / self.seconds:.2f} | {self.client_cpu / self.seconds:.2f} | "
            f"{1e6 * self.server_cpu / max(1, self.calls):.0f} | {1e6 * self.client_cpu / max(1, self.calls):.0f} | "
            f"{self.errors} |"
        )


HEADER = (
    "| measurement | calls/s | p50 ms | p99 ms | server cores | client cores | server µs/call | client µs/call | errors |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


class Server:
    def __init__(self, clusters: int, projects: int, seed: int, workers: int) -> None:
        code = (
            "from gkesim.server import serve_forever; "
            f"serve_forever({clusters}, {projects}, seed={seed}, workers={workers})"
        )
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "READY":
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line}")
        self.port = int(line[1])
        self.build_seconds = float(line[2])
        self.startup_seconds = time.perf_counter() - t0
        self.address = f"127.0.0.1:{self.port}"
        self.after_build = proc_mem(self.proc.pid)

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> dict[str, float]:
        mem = proc_mem(self.proc.pid)
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        return mem


def measure(name: str, server: Server, run) -> Result:
    s0, c0, t0 = server.cpu(), time.process_time(), time.perf_counter()
    calls, latencies, errors = run()
    t1 = time.perf_counter()
    return Result(name, calls, t1 - t0, server.cpu() - s0, time.process_time() - c0, latencies, errors)


def sync_get(address: str, paths: list[str], threads: int, seconds: float):
    channel = grpc.insecure_channel(address)
    client = container_v1.ClusterManagerClient(transport=ClusterManagerGrpcTransport(channel=channel))
    client.get_cluster(name=paths[0])  # connect
    deadline = time.perf_counter() + seconds
    counts, lats, errs = [0] * threads, [[] for _ in range(threads)], [0] * threads

    def worker(i: int) -> None:
        rng = random.Random(i)
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                client.get_cluster(name=rng.choice(paths), retry=None, timeout=30)
            except Exception:  # noqa: BLE001 - counted, reported
                errs[i] += 1
            lats[i].append(time.perf_counter() - t)
            counts[i] += 1

    def run():
        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        channel.close()
        return sum(counts), [x for lat in lats for x in lat], sum(errs)

    return run


def async_get(address: str, paths: list[str], concurrency: int, seconds: float):
    def run():
        async def main():
            channel = grpc.aio.insecure_channel(address)
            client = container_v1.ClusterManagerAsyncClient(
                transport=ClusterManagerGrpcAsyncIOTransport(channel=channel)
            )
            await client.get_cluster(name=paths[0])
            deadline = time.perf_counter() + seconds
            lats: list[float] = []
            errs = 0

            async def worker(i: int) -> None:
                nonlocal errs
                rng = random.Random(i)
                while time.perf_counter() < deadline:
                    t = time.perf_counter()
                    try:
                        await client.get_cluster(name=rng.choice(paths), retry=None, timeout=30)
                    except Exception:  # noqa: BLE001
                        errs += 1
                    lats.append(time.perf_counter() - t)

            await asyncio.gather(*(worker(i) for i in range(concurrency)))
            await channel.close()
            return len(lats), lats, errs

        return asyncio.run(main())

    return run


def sync_list(address: str, projects: list[str], threads: int, seconds: float, sizes: list[int]):
    channel = grpc.insecure_channel(address)
    client = container_v1.ClusterManagerClient(transport=ClusterManagerGrpcTransport(channel=channel))
    deadline = time.perf_counter() + seconds
    counts, lats, errs = [0] * threads, [[] for _ in range(threads)], [0] * threads

    def worker(i: int) -> None:
        rng = random.Random(100 + i)
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                response = client.list_clusters(
                    parent=f"projects/{rng.choice(projects)}/locations/-", retry=None
                )
                sizes.append(len(response.clusters))
            except Exception:  # noqa: BLE001
                errs[i] += 1
            lats[i].append(time.perf_counter() - t)
            counts[i] += 1

    def run():
        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        channel.close()
        return sum(counts), [x for lat in lats for x in lat], sum(errs)

    return run


def handler_breakdown(spec, n: int = 20000) -> dict[str, float]:
    """Server-side cost of GetCluster and ListClusters without gRPC, in µs, on the same fleet, in this process."""
    from gkesim.container import container_handlers
    from gkesim.fleet import Fleet

    fleet = Fleet(spec)
    paths = list(fleet.clusters)
    rng = random.Random(7)
    projects = sorted({c.project for c in fleet.clusters.values()})
    get_requests = [
        container_v1.GetClusterRequest.serialize(container_v1.GetClusterRequest(name=p)) for p in paths
    ]

    class Details:
        invocation_metadata = ()

        def __init__(self, method: str) -> None:
            self.method = f"/google.container.v1.ClusterManager/{method}"

    generic = container_handlers(fleet)[0]
    get_handler, list_handler = (
        generic.service(Details("GetCluster")),
        generic.service(Details("ListClusters")),
    )

    def per_call(fn, count: int) -> float:
        t0 = time.perf_counter()
        for i in range(count):
            fn(i)
        return (time.perf_counter() - t0) / count * 1e6

    def get_whole(i: int) -> None:
        get_handler.unary_unary(get_handler.request_deserializer(get_requests[i % len(paths)]), None)

    out: dict[str, float] = {
        "GetCluster: deserialize request": per_call(
            lambda i: container_v1.GetClusterRequest.deserialize(get_requests[i % len(paths)]), n
        ),
        "GetCluster: fleet.cluster (lock, access, settle)": per_call(
            lambda i: fleet.cluster(paths[i % len(paths)]), n
        ),
        "GetCluster: serialize Cluster": per_call(
            lambda i: container_v1.Cluster.serialize(fleet.clusters[paths[i % len(paths)]].msg), n
        ),
        "GetCluster: whole handler": per_call(get_whole, n),
    }

    picks = [rng.choice(projects) for _ in range(500)]
    list_requests = [
        container_v1.ListClustersRequest.serialize(
            container_v1.ListClustersRequest(parent=f"projects/{p}/locations/-")
        )
        for p in picks
    ]

    def scan(i: int) -> None:
        project = picks[i % len(picks)]
        with fleet.lock:
            for c in fleet.clusters.values():
                if c.project == project:
                    pass

    def list_whole(i: int) -> None:
        list_handler.unary_unary(list_handler.request_deserializer(list_requests[i % len(picks)]), None)

    out["ListClusters: fleet.list_clusters"] = per_call(
        lambda i: fleet.list_clusters(picks[i % len(picks)]), 500
    )
    out["ListClusters: of which scanning every cluster"] = per_call(scan, 500)
    out["ListClusters: whole handler"] = per_call(list_whole, 500)
    out["GetCluster response bytes (mean)"] = statistics.mean(
        len(container_v1.Cluster.serialize(c.msg)) for c in fleet.clusters.values()
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--projects", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    ap.add_argument("--threads", type=int, default=8, help="sync client threads")
    ap.add_argument("--concurrency", type=int, default=32, help="async calls in flight")
    ap.add_argument(
        "--server-workers", type=int, default=64, help="server thread pool (gkesim.server uses 64)"
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    spec = generate_fleet(args.clusters, args.projects, seed=args.seed)
    generate_s = time.perf_counter() - t0
    paths = [
        f"projects/{p.id}/locations/{c.location}/clusters/{c.name}" for p in spec.projects for c in p.clusters
    ]
    projects = [p.id for p in spec.projects if p.clusters]

    server = Server(args.clusters, args.projects, args.seed, args.server_workers)
    try:
        results = [
            measure(f"GetCluster, sync client, {args.threads} threads", server,
                    sync_get(server.address, paths, args.threads, args.seconds)),
            measure("GetCluster, sync client, 1 thread", server, sync_get(server.address, paths, 1, args.seconds / 2)),
            measure(f"GetCluster, async client, {args.concurrency} in flight", server,
                    async_get(server.address, paths, args.concurrency, args.seconds)),
        ]  # fmt: skip
        sizes: list[int] = []
        results.append(
            measure(f"ListClusters (locations/-), sync, {args.threads} threads", server,
                    sync_list(server.address, projects, args.threads, args.seconds, sizes))
        )  # fmt: skip
    finally:
        mem = server.stop()

    breakdown = handler_breakdown(spec)
    print(f"fleet: {args.clusters:,} clusters, {args.projects} projects; generate_fleet {generate_s:.2f} s, "
          f"Fleet() in the server {server.build_seconds:.2f} s (server ready after {server.startup_seconds:.1f} s)")  # fmt: skip
    print(f"server memory: {server.after_build['VmRSS']:.0f} MB resident after building the fleet, "
          f"peak (VmHWM) {mem['VmHWM']:.0f} MB  [goal < {GOAL_MB:.0f} MB]")  # fmt: skip
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, grpcio {grpc.__version__}\n")
    print(HEADER)
    for r in results:
        print(r.row())
    if sizes:
        print(f"\nListClusters returned {statistics.mean(sizes):.1f} clusters per call on average")
    print("\nserver-side cost per call without gRPC, same fleet, in-process (µs; bytes for the last line):")
    for key, value in breakdown.items():
        print(f"  {key:52s} {value:9.1f}")
    best_get = max(r.rate for r in results if r.name.startswith("GetCluster"))
    ok_rate, ok_mem = best_get >= GOAL_CALLS, mem["VmHWM"] < GOAL_MB
    print(f"\ngoals: GetCluster >= {GOAL_CALLS:.0f}/s: {'met' if ok_rate else 'NOT met'} ({best_get:,.0f}/s); "
          f"server peak < {GOAL_MB:.0f} MB: {'met' if ok_mem else 'NOT met'} ({mem['VmHWM']:.0f} MB)")  # fmt: skip
    return 0 if ok_rate and ok_mem else 1


if __name__ == "__main__":
    sys.exit(main())
