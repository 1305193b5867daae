"""Who still uses port 10255: two readings a window apart on every sampled node, and a verdict per cluster.

Windows overlap across the whole batch: every node is read once, then each is read again as soon as its own
window has passed, so scanning a thousand clusters takes about one window plus transfer time. Anything that
could hide use (an unreachable node, a pool not sampled, a probe that failed) makes the verdict
`inconclusive`, never `clear`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from kubernetes import client as k8s

from config.schema import Gate
from tasks import kube
from tasks.culprits import find_culprits
from tasks.inventory import ClusterRecord
from tasks.metrics import NodeReading, ProbeLog, increase
from tasks.probe import Probe, ProbeError, has_real_workload
from tasks.runtime import Runtime
from tasks.state import Mode


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
    """One Standard cluster in flight: its result so far, its node jobs, and how many second readings are due."""

    result: ScanResult
    jobs: list[_NodeJob] = field(default_factory=list)
    final: bool = False  # the result is already the verdict (no node could be listed)
    _due: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read_one(self) -> bool:
        """Count one second reading in; True for the reading that completes the cluster."""
        with self._lock:
            if self._due < 0:
                self._due = len(self.jobs)
            self._due -= 1
            return self._due == 0

    def finish(self) -> ScanResult:
        """The verdict from both readings of every sampled node (or the result as it stands when final)."""
        result = self.result
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

    def _culprits(self, api: k8s.ApiClient) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
        try:
            pods = kube.list_all(api, "Pod", self.cfg.request_timeout_seconds)
            maps = kube.list_all(api, "ConfigMap", self.cfg.request_timeout_seconds)
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
        Autopilot cluster once its probe is done. Calls come from the scan's threads, one at a time.
        """
        results: dict[str, ScanResult] = {}
        lock = threading.Lock()

        def done(result: ScanResult) -> None:
            with lock:
                results[result.cluster] = result
                if on_done:
                    on_done(result)

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
        return {r.path: results[r.path] for r in records if r.path in results}

    # ----- Standard: through the API server's node proxy -----------------------------------------------------

    def _scan_standard(self, records: list[ClusterRecord], done: Callable[[ScanResult], None]) -> None:
        """Read every sampled node twice a window apart; `done` gets each cluster as soon as it is complete."""

        def prepare(rec: ClusterRecord) -> _ClusterScan:
            result = ScanResult(rec.path, str(rec.state.mode), Verdict.ERROR)
            try:
                api = self._api(rec)
            except ValueError as exc:
                result.reasons.append(f"cannot reach the cluster: {exc}")
                return _ClusterScan(result, final=True)
            try:
                nodes = kube.list_nodes(api, self.cfg.request_timeout_seconds)
            except Exception as exc:  # noqa: BLE001 - any failure to list is a reason, never "clear"
                result.verdict = Verdict.INCONCLUSIVE
                result.reasons.append(kube.explain(exc, "listing nodes"))
                return _ClusterScan(result, final=True)
            chosen, empty = sample_nodes(
                nodes, [p.name for p in rec.state.pools], self.cfg.nodes_per_pool, self.cfg.max_nodes_per_pool
            )
            for pool in empty:
                result.reasons.append(f"pool {pool} has no nodes to sample: nothing runs there now")
            _, culprits, err = self._culprits(api)
            result.culprits = culprits
            if err:
                result.reasons.append(err)
            return _ClusterScan(result, [_NodeJob(rec.path, api, n) for n in chosen])

        with ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="scan-prep") as pool:
            prepared = list(pool.map(prepare, records))
        for cluster in prepared:
            if cluster.final or not cluster.jobs:
                done(cluster.finish())
        owner = {id(job): cluster for cluster in prepared for job in cluster.jobs}
        # Round-robin across clusters: one cluster's nodes are not all read at once (connections, server threads).
        groups = [cluster.jobs for cluster in prepared if not cluster.final]
        jobs = [job for row in itertools.zip_longest(*groups) for job in row if job is not None]
        window = self.cfg.window_seconds

        def first(job: _NodeJob) -> None:
            job.first, job.first_at = self._read(job)

        def second(job: _NodeJob) -> None:
            wait = job.first_at + window - self.now()
            if wait > 0:
                self.sleep(wait)
            job.second, job.second_at = self._read(job)
            cluster = owner[id(job)]
            if cluster.read_one():
                done(cluster.finish())

        with ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="scan-read") as pool:
            list(pool.map(first, jobs))
            jobs.sort(key=lambda j: j.first_at)
            list(pool.map(second, jobs))

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
