"""The org-wide rollout: inventory, waves, and per wave: scan, gate, disable, verify, soak, approval.

The flow only passes values between steps; each step is a plain function in tasks/. A rerun reads GKE's state
again, so what is already disabled is left alone and an operation a killed run left running is waited on.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.api_core.exceptions import GoogleAPICallError
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from config.schema import Config, Gate
from flows.inventory import collect_inventory, publish_inventory
from flows.scan import scan_batch_task, scan_records
from tasks import artifacts, live, progress
from tasks.apply import Applier, OperationSlots, region_of
from tasks.approval import ask_approval
from tasks.inventory import ClusterRecord, Inventory, InventoryOutcome
from tasks.plan import plan_cluster, work_estimate
from tasks.report import write_json
from tasks.rollout import GOAL, ClusterRun, Outcome, disable_cluster, outside_rollout
from tasks.runtime import runtime_for
from tasks.scan import GateDecision, Scanner, ScanResult, Verdict, gate_decision
from tasks.state import PortState
from tasks.waves import WavePlan, assign_waves


@task(name="disable-cluster", cache_policy=NO_CACHE)
def disable_task(
    config_path: str,
    record: ClusterRecord,
    scan: ScanResult | None,
    wave: str,
    dry_run: bool,
    applier: Applier,
) -> ClusterRun:
    """Gate, plan, apply and verify one cluster (one operation at a time on it)."""
    rt = runtime_for(config_path)
    if scan is not None and time.time() - scan.scanned_at > rt.config.gate.max_scan_age_seconds:
        scan = Scanner(rt).scan([record])[
            record.path
        ]  # the verdict went stale while the wave ran: read again
    decision = gate_decision(scan, rt.config.gate) if scan else GateDecision(False, "not scanned: no verdict")
    return disable_cluster(record, scan, decision, applier, wave, dry_run)


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
        config_path: str,
        plan: WavePlan,
        members: list[ClusterRecord],
        config: Config,
        scans: dict[str, ScanResult] | None = None,
    ) -> None:
        self.config_path = config_path
        self.wave = plan.wave
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
        """Scan the members without a verdict yet in a thread of their own; `then()` once every verdict is in."""
        for rec in self.member_list:
            if rec.path in self.scans:
                self.verdict(rec.path, self.scans[rec.path])
        todo = [r for r in self.member_list if r.path not in self.scans]
        # Longest work first, projects interleaved: early verdicts feed every project's operation slots.
        todo = by_project_round_robin(sorted(todo, key=lambda r: -self.work[r.path]))

        def scan() -> None:
            try:
                with progress.phase(f"wave {self.wave.name}: scan", len(todo)) as phase:
                    self.scan_batches(self.config_path, todo, phase)
            finally:
                self.close()
            if then is not None and not self.stopped():
                then()

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

    def scan_batches(self, config_path: str, records: list[ClusterRecord], phase: progress.Phase) -> None:
        """Scan `records` in batches as described above; every cluster gets a verdict (an error result if its
        batch failed), then the wave is closed."""
        size = self.rollout_batch_size(config_path)
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
                results = scan_batch_task(config_path, batch, phase, on_done=on_done)
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
        self.close()

    @staticmethod
    def rollout_batch_size(config_path: str) -> int:
        return runtime_for(config_path).config.limits.clusters_per_task

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

    def worker(self, start: Callable[[ClusterRecord, ScanResult | None], ClusterRun]) -> None:
        while (item := self.take()) is not None:
            rec, scan = item
            try:
                run = start(rec, scan)
            except BaseException as exc:
                self.done(rec, None, exc)
                return
            self.done(rec, run)


def run_wave(wave: WaveRun, applier: Applier, dry_run: bool, ph: progress.Phase) -> list[ClusterRun]:
    """Change each of the wave's clusters as soon as its verdict is in, `concurrency` at a time; the outcomes in
    the members' order. Starts the wave's scan unless it was started ahead (`WaveRun.start_scan`)."""
    if wave._scan_thread is None:
        wave.start_scan()
    name = wave.wave.name

    def start(rec: ClusterRecord, scan: ScanResult | None) -> ClusterRun:
        try:
            run = disable_task(wave.config_path, rec, scan, name, dry_run, applier)
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


def skip_all(plan: WavePlan, reason: str) -> list[ClusterRun]:
    runs = [
        ClusterRun(r.path, str(r.state.mode), Outcome.SKIPPED, reason, wave=plan.wave.name)
        for r in plan.clusters
    ]
    for r in runs:
        live.finished("rollout", r.to_json())
    return runs


def busy(rec: ClusterRecord, applier: Applier) -> bool:
    """Skipped as RECONCILING because an operation runs on it (a killed run's?): its wave waits for it first."""
    if rec.outcome is not InventoryOutcome.SKIPPED or rec.state.status != "RECONCILING":
        return False
    try:
        return bool(applier.running_operations(rec.path))
    except GoogleAPICallError:
        return False


def wave_rows(runs: list[ClusterRun]) -> list[dict[str, Any]]:
    return [
        {"cluster": r.cluster, "outcome": str(r.outcome), "reason": r.reason, "changes": len(r.changes)}
        for r in runs
    ]


def count_outcomes(runs: list[ClusterRun]) -> dict[str, int]:
    """How many clusters ended with each outcome (the report's summary and each wave's entry)."""
    return dict(Counter(str(r.outcome) for r in runs))


def rollout_report(
    inv: Inventory, runs: list[ClusterRun], waves: list[dict[str, Any]], dry_run: bool
) -> dict[str, Any]:
    counts = count_outcomes(runs)
    ok = not inv.findings and all(r.outcome in GOAL for r in runs)
    return {
        "kind": "rollout",
        "dry_run": dry_run,
        "ok": ok,
        "summary": {
            "clusters": len(runs),
            "outcome": counts,
            "errors": len(inv.findings),
            "mutations": sum(1 for r in runs for c in r.changes if c.get("attempts")),
        },
        "waves": waves,
        "clusters": [r.to_json() for r in sorted(runs, key=lambda r: r.cluster)],
        "errors": [f.to_json() for f in inv.findings],
    }


@flow(name="rollout", task_runner=ThreadPoolTaskRunner(max_workers=32), log_prints=True)
def rollout_flow(
    config_path: str,
    clusters: list[str] | None = None,
    report_path: str | None = None,
    dry_run: bool = False,
    auto_approve: bool = False,
    waves: list[str] | None = None,
) -> dict[str, Any]:
    """Disable the kubelet read-only port wave by wave on every eligible cluster whose gate is clear."""
    live.reclaim_sigterm()  # started from the CLI: SIGTERM takes Ctrl-C's path
    rt = runtime_for(config_path)
    cfg = rt.config.rollout
    applier = Applier(rt, OperationSlots(cfg))
    runs: list[ClusterRun] = []
    wave_log: list[dict[str, Any]] = []
    with artifacts.prefect_progress():
        inv = collect_inventory(config_path, clusters)
        publish_inventory(inv)
        live.begin("rollout", [(r.path, str(r.state.mode)) for r in inv.records])
        candidates = []
        for rec in inv.records:
            settled = outside_rollout(rec)
            if settled and not busy(rec, applier):
                runs.append(settled)
            else:
                candidates.append(rec)
        plans, unassigned = assign_waves(candidates, cfg)
        runs += [
            ClusterRun(r.path, str(r.state.mode), Outcome.SKIPPED, "no wave selects it") for r in unassigned
        ]
        for r in runs:
            live.finished("rollout", r.to_json())
        halted: str | None = None
        selected = [p for p in plans if not waves or p.wave.name in waves]
        taken: set[str] = set()  # clusters an earlier wave already ran (a spare that stood in for the canary)
        ahead: dict[str, WaveRun] = {}  # waves whose scan started while the wave before them still ran
        lock = threading.Lock()

        def prepare(plan: WavePlan) -> WaveRun:
            """The wave's members and scan, started now; the next wave's scan starts once this one's is done
            when nobody has to approve in between (auto_approve, dry run): a verdict is good for
            gate.max_scan_age_seconds, so the next wave need not wait a window after the soak."""
            members, scans = [r for r in plan.clusters if r.path not in taken], None
            if plan.spares and members:  # the default canary: a spare stands in if its gate blocks
                scans = scan_records(config_path, members + plan.spares)
                members = pick_canary(plan, scans, rt.config.gate)
            taken.update(r.path for r in members)
            wave = WaveRun(config_path, plan, members, rt.config, scans)
            wave.start_scan(then=lambda: scan_ahead(plan))
            return wave

        def scan_ahead(after: WavePlan) -> None:
            later = selected[selected.index(after) + 1 :]
            if not later or not (auto_approve or dry_run) or halted or live.stopping.is_set():
                return
            with lock:
                if later[0].wave.name not in ahead:
                    ahead[later[0].wave.name] = prepare(later[0])

        try:
            for plan in plans:
                with lock:
                    wave = ahead.pop(plan.wave.name, None)
                if plan not in selected or halted:
                    reason = halted or f"wave {plan.wave.name} was not selected for this run"
                    if wave is not None:  # scanned ahead: its members are taken already
                        wave.cancel(reason)
                        plan.clusters = wave.member_list
                    else:
                        plan.clusters = [r for r in plan.clusters if r.path not in taken]
                    runs += skip_all(plan, reason)
                    wave_log.append(
                        {
                            "name": plan.wave.name,
                            "clusters": len(plan.clusters),
                            "status": "skipped" if halted else "not_selected",
                        }
                    )
                    continue
                entry: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                if wave is None:
                    with lock:
                        wave = prepare(plan)
                members = wave.member_list
                entry = {"name": plan.wave.name, "clusters": len(members), **entry}
                if plan.spares and len(members) > 1:
                    entry["canary_stand_ins"] = [r.path for r in members[1:]]
                wave_log.append(entry)
                with progress.phase(f"wave {plan.wave.name}", len(members)) as ph:
                    wave_runs = run_wave(wave, applier, dry_run, ph)
                runs += wave_runs
                failed = [r for r in wave_runs if r.outcome in FAILING]
                entry.update(
                    {
                        "status": "done",
                        "failed": len(failed),
                        "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "outcome": count_outcomes(wave_runs),
                    }
                )
                artifacts.table(f"wave-{plan.wave.name}", wave_rows(wave_runs), f"Wave {plan.wave.name}")
                if len(failed) > plan.wave.failure_budget:
                    halted = (
                        f"rollout halted: wave {plan.wave.name} had {len(failed)} failed cluster(s), more than "
                        f"its failure budget of {plan.wave.failure_budget}"
                    )
                    entry["status"] = "halted"
                    entry["not_started"] = sum(1 for r in wave_runs if r.outcome is Outcome.SKIPPED)
                    continue
                remaining = selected[selected.index(plan) + 1 :]
                if remaining and members and not dry_run:
                    if plan.wave.soak_seconds:
                        time.sleep(plan.wave.soak_seconds)
                    approval = ask_approval(plan.wave.name, wave_rows(wave_runs), auto_approve)
                    entry["approval"] = approval
                    if not approval["approved"]:
                        halted = f"rollout halted: wave {plan.wave.name} was not approved ({approval.get('comment') or 'no comment'})"
        finally:
            for wave in list(ahead.values()):
                wave.cancel("the rollout ended")
    report = rollout_report(inv, runs, wave_log, dry_run)
    report["summary"]["retries"] = rt.caller.retries  # transient API errors retried by this run
    artifacts.markdown(
        "rollout-summary", artifacts.summary_markdown("Rollout", {"outcome": report["summary"]["outcome"]})
    )
    if report_path:
        write_json(report_path, report)
    return report
