"""Who still uses port 10255: two readings a window apart on every sampled node, and a verdict per cluster.

Windows overlap across the whole batch: every cluster's nodes are read once, then again as soon as the cluster's
window has passed, so scanning a thousand clusters takes about one window plus transfer time. The culprit search
runs while the windows pass, and each cluster's verdict is handed on as soon as it is complete. Anything that
could hide use (an unreachable node, a pool not sampled, a probe that failed) makes the verdict
`inconclusive`, never `clear`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from kubernetes import client as k8s

from config.schema import Gate
from tasks.access.runtime import Runtime
from tasks.inventory.records import ClusterRecord
from tasks.inventory.state import Mode, gc_paused
from tasks.usage import kube
from tasks.usage.culprits import find_culprits
from tasks.usage.metrics import NodeReading, ProbeLog, increase
from tasks.usage.probe import Probe, ProbeError, has_real_workload


class Verdict(StrEnum):
    CLEAR = "clear"  # no read-only series on any scanned node
    IN_USE = "in_use"  # a read-only count rose during the window
    USED_BEFORE = "used_before"  # read-only counts exist but did not rise
    INCONCLUSIVE = "inconclusive"  # something could hide use: never treated as clear
    ERROR = "error"  # the cluster could not be scanned at all


@dataclass
class ScanResult:
    cluster: str
    mode: str
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)  # node, pool, path, count, increase
    culprits: list[dict[str, Any]] = field(default_factory=list)
    nodes_scanned: int = 0
    window_seconds: float = 0.0
    scanned_at: float = field(default_factory=time.time)
    leftovers: list[str] = field(default_factory=list)  # probe objects that could not be deleted

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = str(self.verdict)
        return out


@dataclass(frozen=True)
class GateDecision:
    passes: bool
    reason: str
    override: str | None = None


def gate_decision(result: ScanResult, gate: Gate) -> GateDecision:
    """Only `clear` passes by default; `used_before` when allowed; anything with a written override."""
    for override in gate.overrides:
        if override.cluster == result.cluster:
            return GateDecision(True, f"override: {override.reason}", override.reason)
    if result.verdict is Verdict.CLEAR:
        return GateDecision(True, "clear: no read-only traffic on any scanned node")
    if result.verdict is Verdict.USED_BEFORE and gate.allow_used_before:
        return GateDecision(True, "used before but not during the window (gate.allow_used_before)")
    return GateDecision(False, f"{result.verdict}: {describe(result)}")


def describe(result: ScanResult) -> str:
    """One line a platform engineer can act on: what was seen where, and who is likely reading the port."""
    parts = list(result.reasons[:3])
    rising = sorted({e["node"] for e in result.evidence if e["increase"] > 0})
    seen = sorted({e["node"] for e in result.evidence if e["count"] > 0})
    if rising:
        parts.insert(
            0, f"read-only requests rose during the window on {len(rising)} node(s), e.g. {rising[0]}"
        )
    elif seen:
        parts.insert(0, f"read-only counters exist on {len(seen)} node(s), e.g. {seen[0]}, but did not rise")
    agents = sorted({f"{c['kind']} {c['namespace']}/{c['name']}" for c in result.culprits})
    if agents:
        parts.append("likely readers: " + ", ".join(agents[:3]) + (" ..." if len(agents) > 3 else ""))
    return "; ".join(parts) or str(result.verdict)


@dataclass
class _NodeJob:
    cluster: str
    api: k8s.ApiClient
    node: kube.Node
    first: NodeReading | None = None
    first_at: float = 0.0
    second: NodeReading | None = None
    second_at: float = 0.0


@dataclass
class _ClusterScan:
    """One Standard cluster in flight: its result so far, its node jobs, and the steps still running.

    Two steps must finish before the verdict: the node readings (both rounds) and the culprit search.
    """

    rec: ClusterRecord
    result: ScanResult
    api: k8s.ApiClient | None = None
    jobs: list[_NodeJob] = field(default_factory=list)
    final: bool = False  # the result is already the verdict (the cluster could not be read at all)
    completed: bool = False  # handed to `done` (exactly once)
    _steps: int = 2
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def step_done(self) -> bool:
        """Count one step in; True for the step that completes the cluster."""
        with self._lock:
            self._steps -= 1
            return self._steps == 0

    def finish(self) -> ScanResult:
        """The verdict from both readings of every sampled node (or the result as it stands when final)."""
        result = self.result
        if self.api is not None:
            self.api.close()  # the cluster is done: no idle connection (nor simulator thread) waits for it
        if self.final:
            return result
        problems: list[str] = []
        for job in self.jobs:
            assert job.first is not None and job.second is not None
            rows, problem = node_evidence(job.node, job.first, job.second)
            result.evidence.extend(rows)
            if problem:
                problems.append(problem)
            result.window_seconds = max(result.window_seconds, job.second_at - job.first_at)
        result.nodes_scanned = len(self.jobs)
        if not self.jobs:
            problems.append("no node could be sampled")
        result.reasons = problems + [r for r in result.reasons if r not in problems]
        result.verdict = verdict_from(result.evidence, problems)
        return result


def sample_nodes(
    nodes: list[kube.Node], pools: list[str], per_pool: int | None, cap: int
) -> tuple[list[kube.Node], list[str]]:
    """Nodes to read per pool (never fewer than one), and the pools that have no node to read."""
    chosen: list[kube.Node] = []
    empty = []
    for pool in pools:
        members = sorted((n for n in nodes if n.pool == pool), key=lambda n: n.name)
        if not members:
            empty.append(pool)
            continue
        chosen.extend(members[: max(1, min(per_pool or cap, cap))])
    return chosen, empty


def verdict_from(evidence: list[dict[str, Any]], problems: list[str]) -> Verdict:
    if any(e["increase"] > 0 for e in evidence):
        return Verdict.IN_USE  # evidence of use is conclusive even when another node could not be read
    if problems:
        return Verdict.INCONCLUSIVE
    if any(e["count"] > 0 for e in evidence):
        return Verdict.USED_BEFORE
    return Verdict.CLEAR


def node_evidence(
    node: kube.Node, first: NodeReading, second: NodeReading
) -> tuple[list[dict[str, Any]], str | None]:
    delta = increase(first, second)
    if delta.error:
        return [], f"node {node.name} (pool {node.pool}): {delta.error}"
    rows = [
        {
            "node": node.name,
            "pool": node.pool,
            "path": path,
            "count": count,
            "increase": delta.per_path.get(path, 0.0),
            **({"kubelet_restarted": True} if delta.restarted else {}),
        }
        for path, count in sorted(second.readonly.items())
    ]
    return rows, None


class Scanner:
    """Scans a batch of clusters; `sleep` and `now` are injectable for tests."""

    def __init__(
        self,
        rt: Runtime,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rt = rt
        self.cfg = rt.config.scan
        self.sleep = sleep
        self.now = now

    def _api(self, rec: ClusterRecord) -> k8s.ApiClient:
        return self.rt.clients.kube(rec.state.endpoint, rec.state.ca_certificate)

    def _read(self, job: _NodeJob) -> tuple[NodeReading, float]:
        with self.rt.node_reads:  # node reads in flight across every batch of this run, not per batch
            reading = kube.read_metrics(
                job.api, job.node.name, self.cfg.request_timeout_seconds, self.cfg.max_metrics_bytes
            )
        return reading, self.now()

    def _retry(self, fn: Callable[[], Any]) -> Any:
        return self.rt.caller.retry(fn, kube.is_transient)

    def _culprits(self, api: k8s.ApiClient) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
        try:
            pods = kube.list_all(api, "Pod", self.cfg.request_timeout_seconds, retry=self._retry)
            maps = kube.list_all(api, "ConfigMap", self.cfg.request_timeout_seconds, retry=self._retry)
        except Exception as exc:  # noqa: BLE001 - reported as a reason, never fatal
            return [], [], kube.explain(exc, "listing pods and configmaps")
        found = [c for obj in pods + maps for c in find_culprits(obj)]
        return pods, [_culprit_json(c) for c in found], None

    def scan(
        self, records: list[ClusterRecord], on_done: Callable[[ScanResult], None] | None = None
    ) -> dict[str, ScanResult]:
        """Scan a batch; returns every cluster's result by path.

        `on_done(result)` is called for each cluster as soon as its verdict is final: a Standard cluster once its
        second readings (and its culprit search) are in, while later clusters are still in their window; an
        Autopilot cluster once its probe is done. Calls come from the scan's worker threads, one at a time: keep
        them short and hand longer work (a rollout step, another scan) to a thread of your own, or the scan's
        node reads wait for it. An exception it raises is raised by `scan()` once every cluster is done.
        """
        results: dict[str, ScanResult] = {}
        lock = threading.Lock()
        raised: list[Exception] = []  # what on_done raised, raised again once every cluster is done

        def done(result: ScanResult) -> None:
            with lock:
                results[result.cluster] = result
                if on_done:
                    try:
                        on_done(result)
                    except Exception as exc:  # noqa: BLE001 - the scan goes on; the caller gets it at the end
                        raised.append(exc)

        standard = [r for r in records if r.state.mode is Mode.STANDARD]
        autopilot = [r for r in records if r.state.mode is Mode.AUTOPILOT]
        workers = max(1, min(self.cfg.clusters_in_parallel, len(autopilot)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as probes:
            pending = [probes.submit(self._scan_autopilot, r) for r in autopilot]
            for fut in pending:
                fut.add_done_callback(lambda f: f.exception() is None and done(f.result()))
            self._scan_standard(standard, done)
            for fut in pending:
                fut.result()  # raises what a probe raised
        if raised:
            raise raised[0]
        return {r.path: results[r.path] for r in records if r.path in results}

    # ----- Standard: through the API server's node proxy -----------------------------------------------------

    # Work on the run's shared queue, most urgent first: second readings that are due, then first readings,
    # then culprit searches (they do not depend on the window, so they run while it passes).
    _SECOND, _FIRST, _CULPRITS = 0, 1, 2

    def _scan_standard(self, records: list[ClusterRecord], done: Callable[[ScanResult], None]) -> None:
        """Read every sampled node twice a window apart; `done` gets each cluster as soon as it is complete.

        A cluster's nodes are read one after another on one connection (not all at once on one connection
        each), clusters in parallel up to `scan.concurrency`; each node's second reading follows its first a
        window later. Its culprit search runs meanwhile, behind every node read that is due.
        """
        if not records:
            return
        work = self.rt.scan_work
        left = [len(records)]
        lock = threading.Lock()
        all_done = threading.Event()

        def complete(cluster: _ClusterScan) -> None:
            with lock:
                if cluster.completed:
                    return
                cluster.completed = True
            try:
                done(cluster.finish())
            finally:
                with lock:
                    left[0] -= 1
                    if left[0] == 0:
                        all_done.set()

        def guarded(cluster: _ClusterScan, step: Callable[[_ClusterScan], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    step(cluster)
                except Exception as exc:  # noqa: BLE001 - never leave a cluster unfinished (the scan would wait)
                    cluster.result.verdict = Verdict.ERROR
                    cluster.result.reasons.append(f"the scan failed: {type(exc).__name__}: {exc}")
                    cluster.final = True
                    complete(cluster)

            return run

        def read_round(cluster: _ClusterScan, second: bool, then: Callable[[_ClusterScan], None]) -> None:
            """Read the cluster's nodes one after another on one connection; after a failed read (a node that
            hangs or refuses), the rest are read in parallel, so a dead pool costs one timeout, not one per node."""
            pending = [len(cluster.jobs)]

            def read(jobs: list[_NodeJob]) -> None:
                for k, job in enumerate(jobs):
                    skip = second and job.first is not None and job.first.error is not None
                    if skip:
                        # Its first reading already makes the node inconclusive: another cannot change that.
                        job.second, job.second_at = job.first, job.first_at
                    elif second:
                        wait = job.first_at + self.cfg.window_seconds - self.now()
                        if wait > 0:
                            self.sleep(wait)
                        job.second, job.second_at = self._read(job)
                    else:
                        job.first, job.first_at = self._read(job)
                    reading = job.second if second else job.first
                    rest = jobs[k + 1 :] if not skip and reading is not None and reading.error else []
                    for other in rest:
                        work.submit(
                            guarded(cluster, lambda _, j=other: read([j])),
                            self._SECOND if second else self._FIRST,
                        )
                    with cluster._lock:
                        pending[0] -= 1
                        last = pending[0] == 0
                    if last:
                        then(cluster)
                    if rest:
                        return

            if cluster.jobs:
                read(cluster.jobs)
            else:
                then(cluster)

        def first(cluster: _ClusterScan) -> None:
            if not self._prepare(cluster):
                complete(cluster)
                return
            read_round(cluster, False, after_first)

        def after_first(cluster: _ClusterScan) -> None:
            last = max((job.first_at for job in cluster.jobs), default=self.now())
            work.submit(guarded(cluster, culprits), self._CULPRITS)
            work.submit(
                guarded(cluster, second), self._SECOND, delay=last + self.cfg.window_seconds - self.now()
            )

        def second(cluster: _ClusterScan) -> None:
            read_round(cluster, True, after_second)

        def after_second(cluster: _ClusterScan) -> None:
            if cluster.step_done():
                complete(cluster)

        def culprits(cluster: _ClusterScan) -> None:
            assert cluster.api is not None
            _, found, err = self._culprits(cluster.api)
            cluster.result.culprits = found
            if err:
                cluster.result.reasons.append(err)
            if cluster.step_done():
                complete(cluster)

        # Reading builds many short-lived objects (responses, pod lists) and few cycles, and every collection of
        # the oldest generation scans the whole heap: with the collector paused the scan needs much less CPU
        # (docs/BENCHMARKS.md, Scan); reference counting still frees, the collector runs again afterwards.
        with gc_paused():
            for rec in records:
                cluster = _ClusterScan(rec, ScanResult(rec.path, str(rec.state.mode), Verdict.ERROR))
                work.submit(guarded(cluster, first), self._FIRST)
            all_done.wait()

    def _prepare(self, cluster: _ClusterScan) -> bool:
        """The cluster's client and the nodes to read; False when the cluster cannot be read (result final)."""
        rec, result = cluster.rec, cluster.result
        try:
            cluster.api = self._api(rec)
        except ValueError as exc:
            result.reasons.append(f"cannot reach the cluster: {exc}")
            cluster.final = True
            return False
        try:
            nodes = kube.list_nodes(cluster.api, self.cfg.request_timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - any failure to list is a reason, never "clear"
            result.verdict = Verdict.INCONCLUSIVE
            result.reasons.append(kube.explain(exc, "listing nodes"))
            cluster.final = True
            return False
        chosen, empty = sample_nodes(
            nodes, [p.name for p in rec.state.pools], self.cfg.nodes_per_pool, self.cfg.max_nodes_per_pool
        )
        for pool in empty:
            result.reasons.append(f"pool {pool} has no nodes to sample: nothing runs there now")
        cluster.jobs = [_NodeJob(rec.path, cluster.api, n) for n in chosen]
        return True

    # ----- Autopilot: the seed's DaemonSet probe -------------------------------------------------------------

    def _scan_autopilot(self, rec: ClusterRecord) -> ScanResult:
        result = ScanResult(rec.path, str(rec.state.mode), Verdict.ERROR)
        try:
            api = self._api(rec)
        except ValueError as exc:
            result.reasons.append(f"cannot reach the cluster: {exc}")
            return result
        try:
            nodes = kube.list_nodes(api, self.cfg.request_timeout_seconds)
        except Exception as exc:  # noqa: BLE001
            result.verdict = Verdict.INCONCLUSIVE
            result.reasons.append(kube.explain(exc, "listing nodes"))
            return result
        pods, culprits, err = self._culprits(api)
        result.culprits = culprits
        if err:
            result.verdict = Verdict.INCONCLUSIVE
            result.reasons.append(err)
            return result
        if not has_real_workload(pods):
            result.verdict = Verdict.INCONCLUSIVE
            result.reasons.append(
                "empty Autopilot cluster: no non-DaemonSet workload runs, so the probe's result "
                "would not be valid (the seed's warning)"
            )
            return result
        probe = Probe(
            api,
            rec.path,
            self.cfg.probe_image,
            self.cfg.probe_log_interval_seconds,
            self.cfg.probe_start_timeout_seconds,
        )
        try:
            probe.create()
            running = probe.wait_running(len(nodes), self.sleep)
            first = self._first_round(probe, running)
            t1 = self.now()
            self.sleep(max(self.cfg.window_seconds, self.cfg.probe_log_interval_seconds))
            second = probe.read(running)
            result.window_seconds = self.now() - t1
        except ProbeError as exc:
            result.verdict = Verdict.INCONCLUSIVE
            result.reasons.append(str(exc))
            return result
        except Exception as exc:  # noqa: BLE001 - the probe failing is inconclusive, with the reason
            result.verdict = Verdict.INCONCLUSIVE
            result.reasons.append(kube.explain(exc, "the Autopilot probe"))
            return result
        finally:
            result.leftovers = probe.delete()
        problems = []
        for pod in running:
            a, b = first.readings.get(pod), second.readings.get(pod)
            if a is None or b is None:
                problems.append(f"probe pod {pod} printed no reading")
                continue
            rows, problem = node_evidence(kube.Node(pod, ""), a, b)
            result.evidence.extend(rows)
            if problem:
                problems.append(problem)
        result.nodes_scanned = len(running)
        result.reasons = problems + result.reasons
        result.verdict = verdict_from(result.evidence, problems)
        return result

    def _first_round(self, probe: Probe, pods: list[str]) -> ProbeLog:
        """Wait until every probe pod has printed at least one reading, then return them."""
        deadline = self.now() + self.cfg.probe_start_timeout_seconds
        while True:
            log = probe.read(pods)
            if all(p in log.readings for p in pods):
                return log
            if self.now() > deadline:
                missing = [p for p in pods if p not in log.readings]
                raise ProbeError(f"probe pods printed no reading: {', '.join(missing)}")
            self.sleep(min(1.0, self.cfg.probe_log_interval_seconds))


def _culprit_json(c: Any) -> dict[str, Any]:
    data = asdict(c)
    return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in data.items() if v is not None}
