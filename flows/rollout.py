"""The org-wide rollout: inventory, waves, and per wave: scan, gate, disable, verify, soak, approval.

The flow only passes values between steps; each step is a plain function in tasks/. A rerun reads GKE's state
again, so what is already disabled is left alone and an operation a killed run left running is waited on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from google.api_core.exceptions import GoogleAPICallError
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.inventory import collect_inventory, publish_inventory
from flows.scan import scan_batch_task, scan_records
from tasks.access.runtime import runtime_for
from tasks.change.apply import Applier, OperationSlots
from tasks.change.approval import ask_approval
from tasks.change.pipeline import FAILING, StartCluster, WaveRun, pick_canary, run_wave
from tasks.change.rollout import GOAL, ClusterRun, Outcome, disable_cluster, outside_rollout
from tasks.change.waves import WavePlan, assign_waves
from tasks.inventory.records import ClusterRecord, Inventory, InventoryOutcome
from tasks.inventory.state import gc_frozen
from tasks.reporting import artifacts, live, progress
from tasks.reporting.report import FlowReport, count_by, utc_now, write_json
from tasks.usage.scan import GateDecision, Scanner, ScanResult, gate_decision


@task(name="disable-cluster", task_run_name="disable-cluster {record.path}", cache_policy=NO_CACHE)
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


def rollout_report(
    inv: Inventory, runs: list[ClusterRun], waves: list[dict[str, Any]], dry_run: bool
) -> dict[str, Any]:
    counts = count_by(r.outcome for r in runs)
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
) -> FlowReport:
    """Disable the kubelet read-only port wave by wave on every eligible cluster whose gate is clear."""
    live.reclaim_sigterm()  # started from the CLI: SIGTERM takes Ctrl-C's path
    rt = runtime_for(config_path)
    cfg = rt.config.rollout
    applier = Applier(rt, OperationSlots(cfg))
    runs: list[ClusterRun] = []
    wave_log: list[dict[str, Any]] = []
    with artifacts.prefect_progress(), gc_frozen() as freeze:
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

        def scan_batch(
            batch: list[ClusterRecord], phase: progress.Phase, on_done: Callable[[ScanResult], None]
        ) -> list[ScanResult]:
            return scan_batch_task(config_path, batch, phase, on_done=on_done)

        def change(wave_name: str) -> StartCluster:
            return lambda rec, scan: disable_task(config_path, rec, scan, wave_name, dry_run, applier)

        def prepare(plan: WavePlan) -> WaveRun:
            """The wave's members and scan, started now; the next wave's scan starts once every cluster of this
            one is being scanned, when nobody has to approve in between (auto_approve, dry run): a verdict is good
            for gate.max_scan_age_seconds, so the next wave need not wait a window after this one's changes and
            soak. Its scan stays `lookahead` clusters ahead of its workers."""
            members, scans = [r for r in plan.clusters if r.path not in taken], None
            if plan.spares and members:  # the default canary: a spare stands in if its gate blocks
                scans = scan_records(config_path, members + plan.spares)
                members = pick_canary(plan, scans, rt.config.gate)
            taken.update(r.path for r in members)
            wave = WaveRun(plan, members, rt.config, scan_batch, scans)
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
                entry: dict[str, Any] = {"started": utc_now()}
                if wave is None:
                    with lock:
                        wave = prepare(plan)
                members = wave.member_list
                entry = {"name": plan.wave.name, "clusters": len(members), **entry}
                if plan.spares and len(members) > 1:
                    entry["canary_stand_ins"] = [r.path for r in members[1:]]
                wave_log.append(entry)
                freeze()  # what the run holds on to so far, the inventory included
                with progress.phase(f"wave {plan.wave.name}", len(members)) as ph:
                    wave_runs = run_wave(wave, change(plan.wave.name), ph)
                runs += wave_runs
                failed = [r for r in wave_runs if r.outcome in FAILING]
                entry.update(
                    {
                        "status": "done",
                        "failed": len(failed),
                        "ended": utc_now(),
                        "outcome": count_by(r.outcome for r in wave_runs),
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
    return FlowReport(report)
