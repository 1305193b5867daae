"""A wave, pipelined: its clusters are scanned in batches just ahead of the workers that change them, and each
cluster is changed as soon as its own verdict is in while the rest of the wave is still in its window.

Plain threads and a condition variable; the Prefect tasks (a scan batch, one cluster's change) come in as
callables from flows/rollout.py, so this module knows nothing of Prefect.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from config.schema import Config, Gate
from tasks.change.apply import region_of
from tasks.change.plan import plan_cluster, work_estimate
from tasks.change.rollout import ClusterRun, Outcome
from tasks.change.waves import WavePlan
from tasks.inventory.records import ClusterRecord
from tasks.inventory.state import PortState
from tasks.reporting import live, progress
from tasks.usage.scan import ScanResult, Verdict, gate_decision

# A batch of clusters scanned (one Prefect task run), reporting each verdict to the callable as it comes.
ScanBatch = Callable[[list[ClusterRecord], progress.Phase, Callable[[ScanResult], None]], list[ScanResult]]
# One cluster gated, changed and verified (one Prefect task run).
StartCluster = Callable[[ClusterRecord, ScanResult | None], ClusterRun]

FAILING = (Outcome.FAILED, Outcome.IN_FLIGHT)  # what counts against a wave's failure budget


class WaveRun:
    """One wave from scan verdicts to outcomes, pipelined: a cluster is changed as soon as its own verdict is in,
    while the wave's other clusters are still in their scan window.

    - The wave's clusters are scanned in batches (`limits.clusters_per_task` each, one Prefect task run per
      batch); the next batch starts once at most one earlier batch has yet to report a verdict and fewer than
      `lookahead` scanned clusters wait for a worker, so verdicts arrive from the first window on and stay fresh.
    - `concurrency` workers each take one cluster at a time (one disable-cluster task run per cluster): blocked
      verdicts first (they finish at once), then clusters whose project and region are below their operation
      bounds, longest work first (a short tail for the wave).
    - Once more clusters failed than the failure budget allows, no new cluster starts; those in progress finish,
      the rest are reported skipped. The same after an interrupt (`live.stopping`) or an unexpected error.
    """

    def __init__(
        self,
        plan: WavePlan,
        members: list[ClusterRecord],
        config: Config,
        scan_batch: ScanBatch,
        scans: dict[str, ScanResult] | None = None,
    ) -> None:
        self.wave = plan.wave
        self.scan_batch = scan_batch
        self.batch_size = config.limits.clusters_per_task
        self.member_list = list(members)
        self.scans = scans or {}
        self._scan_thread: threading.Thread | None = None
        self.gate = config.gate
        self.rollout = config.rollout
        self.members = {r.path: r for r in members}
        self.work = {
            r.path: work_estimate(
                r.state, plan_cluster(r.state, r.gate, PortState.DISABLED, config.rollout.set_nap_auto_config)
            )
            for r in members
        }
        self.lookahead = max(4 * self.wave.concurrency, 3 * config.limits.clusters_per_task)
        self.cond = threading.Condition()
        self.ready: list[tuple[bool, float, int, ClusterRecord, ScanResult | None]] = []
        self.seen: set[str] = set()
        self.submitted = 0  # clusters handed to the scan
        self.started = 0  # clusters a worker took
        self.quiet_batches = 0  # scan batches running that have not reported a verdict yet
        self.closed = False  # every verdict is in: no more clusters will become ready
        self.active_project: Counter[str] = Counter()
        self.active_region: Counter[str] = Counter()
        self.runs: dict[str, ClusterRun] = {}
        self.failed = 0
        self.halted: str | None = None
        self.error: BaseException | None = None

    # ----- verdicts in ----------------------------------------------------------------------------------------

    def verdict(self, path: str, scan: ScanResult | None) -> bool:
        """A cluster's verdict is in (the first one counts); True when it was new."""
        rec = self.members.get(path)
        with self.cond:
            if rec is None or path in self.seen:
                return False
            self.seen.add(path)
            passes = scan is not None and gate_decision(scan, self.gate).passes
            work = self.work[path] if passes else 0.0
            self.ready.append((passes, work, len(self.seen), rec, scan))
            self.cond.notify_all()
            return True

    def start_scan(self, then: Callable[[], None] | None = None) -> None:
        """Scan the members without a verdict yet in a thread of their own; `then()` once every one of them is in
        a scan batch under way (their verdicts are coming: the next wave's scan may start)."""
        for rec in self.member_list:
            if rec.path in self.scans:
                self.verdict(rec.path, self.scans[rec.path])
        todo = [r for r in self.member_list if r.path not in self.scans]
        # Longest work first, projects interleaved: early verdicts feed every project's operation slots.
        todo = by_project_round_robin(sorted(todo, key=lambda r: -self.work[r.path]))

        def scan() -> None:
            try:
                with progress.phase(f"wave {self.wave.name}: scan", len(todo)) as phase:
                    self.scan_batches(todo, phase, then)
            finally:
                self.close()

        self._scan_thread = threading.Thread(
            target=contextvars.copy_context().run, args=(scan,), name=f"scan-{self.wave.name}", daemon=True
        )
        self._scan_thread.start()

    def cancel(self, reason: str) -> None:
        """Start nothing more (a prescanned wave the rollout will not run); wait for scans under way."""
        with self.cond:
            self.halted = self.halted or reason
            self.cond.notify_all()
        self.join_scan()

    def join_scan(self) -> None:
        if self._scan_thread is not None:
            self._scan_thread.join()

    def scan_batches(
        self, records: list[ClusterRecord], phase: progress.Phase, submitted: Callable[[], None] | None = None
    ) -> None:
        """Scan `records` in batches as described above; every cluster gets a verdict (an error result if its
        batch failed), then the wave is closed. `submitted()` once the last batch has started."""
        size = self.batch_size
        batches = [records[i : i + size] for i in range(0, len(records), size)]

        def scan_one(batch: list[ClusterRecord]) -> None:
            heard = threading.Event()

            def on_done(result: ScanResult) -> None:
                self.verdict(result.cluster, result)
                if not heard.is_set():
                    heard.set()
                    with self.cond:
                        self.quiet_batches -= 1
                        self.cond.notify_all()

            failure = "the scan returned no result for this cluster"
            results: list[ScanResult] = []
            try:
                results = self.scan_batch(batch, phase, on_done)
            except Exception as exc:  # noqa: BLE001 - its clusters are blocked with the reason, never changed
                failure = f"the scan failed: {type(exc).__name__}: {exc}"
            for result in results:  # a scanner that reported nothing early: the verdicts are in now
                on_done(result)
            for rec in batch:
                if rec.path not in self.seen:
                    on_done(ScanResult(rec.path, str(rec.state.mode), Verdict.ERROR, [failure]))

        with ThreadPoolExecutor(
            max_workers=max(1, len(batches)), thread_name_prefix=f"scan-{self.wave.name}"
        ) as pool:
            for batch in batches:
                with self.cond:
                    while not self.stopped() and (
                        self.quiet_batches >= 2 or self.submitted - self.started >= self.lookahead
                    ):
                        self.cond.wait(1.0)
                    if self.stopped():
                        break
                    self.quiet_batches += 1
                    self.submitted += len(batch)
                pool.submit(contextvars.copy_context().run, scan_one, batch)
            if submitted is not None and not self.stopped():
                submitted()
        self.close()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    # ----- workers --------------------------------------------------------------------------------------------

    def stopped(self) -> bool:
        return self.halted is not None or live.stopping.is_set()

    def _rank(self, item: tuple[bool, float, int, ClusterRecord, ScanResult | None]) -> tuple:
        passes, work, seq, rec, _ = item
        return (
            passes,  # blocked first: they take no operation and finish at once
            self.active_project[rec.state.project] >= self.rollout.operations_per_project,
            self.active_region[region_of(rec.state.location)] >= self.rollout.operations_per_region,
            -work,
            seq,
        )

    def take(self) -> tuple[ClusterRecord, ScanResult | None] | None:
        with self.cond:
            while True:
                if self.stopped():
                    return None
                if self.ready:
                    best = min(range(len(self.ready)), key=lambda i: self._rank(self.ready[i]))
                    _, _, _, rec, scan = self.ready.pop(best)
                    self.active_project[rec.state.project] += 1
                    self.active_region[region_of(rec.state.location)] += 1
                    self.started += 1
                    self.cond.notify_all()
                    return rec, scan
                if self.closed:
                    return None
                self.cond.wait(1.0)

    def done(self, rec: ClusterRecord, run: ClusterRun | None, error: BaseException | None = None) -> None:
        with self.cond:
            self.active_project[rec.state.project] -= 1
            self.active_region[region_of(rec.state.location)] -= 1
            if run is not None:
                self.runs[rec.path] = run
                self.failed += run.outcome in FAILING
            if error is not None and self.error is None:
                self.error = error
                self.halted = f"rollout halted: wave {self.wave.name} stopped on an error: {error}"
            if self.halted is None and self.failed > self.wave.failure_budget:
                self.halted = (
                    f"rollout halted: wave {self.wave.name} had {self.failed} failed cluster(s), more than its "
                    f"failure budget of {self.wave.failure_budget}"
                )
            self.cond.notify_all()

    def worker(self, start: StartCluster) -> None:
        while (item := self.take()) is not None:
            rec, scan = item
            try:
                run = start(rec, scan)
            except BaseException as exc:  # noqa: BLE001 - kept and raised by run_wave once the wave stops
                self.done(rec, None, exc)
                return
            self.done(rec, run)


def run_wave(wave: WaveRun, change: StartCluster, ph: progress.Phase) -> list[ClusterRun]:
    """Change each of the wave's clusters as soon as its verdict is in, `concurrency` at a time; the outcomes in
    the members' order. Starts the wave's scan unless it was started ahead (`WaveRun.start_scan`)."""
    if wave._scan_thread is None:
        wave.start_scan()
    name = wave.wave.name

    def start(rec: ClusterRecord, scan: ScanResult | None) -> ClusterRun:
        try:
            run = change(rec, scan)
            live.finished("rollout", run.to_json())
            return run
        finally:
            ph.advance()

    with ThreadPoolExecutor(max_workers=wave.wave.concurrency, thread_name_prefix=f"wave-{name}") as pool:
        workers = [
            pool.submit(contextvars.copy_context().run, wave.worker, start)
            for _ in range(wave.wave.concurrency)
        ]
        for w in workers:
            w.result()
    wave.join_scan()  # the scans under way when the wave stopped early; at once otherwise
    if wave.error is not None:
        raise wave.error
    runs = []
    for rec in wave.member_list:
        run = wave.runs.get(rec.path)
        if run is None:  # never started: the wave halted (or the run was interrupted) first
            run = ClusterRun(
                rec.path,
                str(rec.state.mode),
                Outcome.SKIPPED,
                f"{wave.halted or 'interrupted'} before this cluster's turn",
                wave=name,
            )
            live.finished("rollout", run.to_json())
            ph.advance()
        runs.append(run)
    return runs


def pick_canary(plan: WavePlan, scans: dict[str, ScanResult], gate: Gate) -> list[ClusterRecord]:
    """The canary, or when its gate blocks, it and the spares tried in order up to the first whose gate passes."""
    members: list[ClusterRecord] = []
    needed = len(plan.clusters)
    for rec in plan.clusters + plan.spares:
        if needed == 0:
            break
        members.append(rec)
        scan = scans.get(rec.path)
        needed -= bool(scan and gate_decision(scan, gate).passes)
    return members


def by_project_round_robin(records: list[ClusterRecord]) -> list[ClusterRecord]:
    groups: dict[str, list[ClusterRecord]] = {}
    for rec in records:
        groups.setdefault(rec.state.project, []).append(rec)
    return [r for row in itertools.zip_longest(*groups.values()) for r in row if r is not None]
