"""The org-wide rollout: inventory, waves, and per wave: scan, gate, disable, verify, soak, approval.

The flow only passes values between steps; each step is a plain function in tasks/. A rerun reads GKE's state
again, so what is already disabled is left alone and an operation a killed run left running is waited on.
"""

from __future__ import annotations

import contextvars
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.api_core.exceptions import GoogleAPICallError
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.inventory import collect_inventory, publish_inventory
from flows.scan import scan_records
from tasks import artifacts, live, progress
from tasks.apply import Applier, OperationSlots
from tasks.approval import ask_approval
from tasks.inventory import ClusterRecord, Inventory, InventoryOutcome
from tasks.report import write_json
from tasks.rollout import GOAL, ClusterRun, Outcome, disable_cluster, outside_rollout
from tasks.runtime import runtime_for
from tasks.scan import GateDecision, Scanner, ScanResult, gate_decision
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


def run_wave(
    config_path: str, plan: WavePlan, applier: Applier, dry_run: bool, ph: progress.Phase
) -> list[ClusterRun]:
    """Scan the wave's clusters right before changing them, then change `concurrency` clusters at a time."""
    scans = scan_records(config_path, plan.clusters)
    runs: list[ClusterRun] = []

    def one(rec: ClusterRecord) -> ClusterRun:
        try:
            run = disable_task(config_path, rec, scans.get(rec.path), plan.wave.name, dry_run, applier)
            live.finished("rollout", run.to_json())
            return run
        finally:
            ph.advance()

    with ThreadPoolExecutor(
        max_workers=plan.wave.concurrency, thread_name_prefix=f"wave-{plan.wave.name}"
    ) as pool:
        # Interleave projects so the workers do not all queue on one project's operation slots.
        futures = {
            rec.path: pool.submit(contextvars.copy_context().run, one, rec)
            for rec in by_project_round_robin(plan.clusters)
        }
        runs = [futures[rec.path].result() for rec in plan.clusters]
    return runs


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


def rollout_report(
    inv: Inventory, runs: list[ClusterRun], waves: list[dict[str, Any]], dry_run: bool
) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in runs:
        counts[str(r.outcome)] = counts.get(str(r.outcome), 0) + 1
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
        for plan in plans:
            entry: dict[str, Any] = {"name": plan.wave.name, "clusters": len(plan.clusters)}
            wave_log.append(entry)
            if plan not in selected:
                runs += skip_all(plan, f"wave {plan.wave.name} was not selected for this run")
                entry["status"] = "not_selected"
                continue
            if halted:
                runs += skip_all(plan, halted)
                entry["status"] = "skipped"
                continue
            entry["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with progress.phase(f"wave {plan.wave.name}", len(plan.clusters)) as ph:
                wave_runs = run_wave(config_path, plan, applier, dry_run, ph) if plan.clusters else []
            runs += wave_runs
            failed = [r for r in wave_runs if r.outcome in (Outcome.FAILED, Outcome.IN_FLIGHT)]
            entry.update(
                {
                    "status": "done",
                    "failed": len(failed),
                    "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "outcome": {
                        str(o): sum(1 for r in wave_runs if r.outcome is o)
                        for o in {r.outcome for r in wave_runs}
                    },
                }
            )
            artifacts.table(f"wave-{plan.wave.name}", wave_rows(wave_runs), f"Wave {plan.wave.name}")
            if len(failed) > plan.wave.failure_budget:
                halted = (
                    f"rollout halted: wave {plan.wave.name} had {len(failed)} failed cluster(s), more than its "
                    f"failure budget of {plan.wave.failure_budget}"
                )
                entry["status"] = "halted"
                continue
            remaining = [p for p in selected if p is not plan and selected.index(p) > selected.index(plan)]
            if remaining and plan.clusters and not dry_run:
                if plan.wave.soak_seconds:
                    time.sleep(plan.wave.soak_seconds)
                approval = ask_approval(plan.wave.name, wave_rows(wave_runs), auto_approve)
                entry["approval"] = approval
                if not approval["approved"]:
                    halted = f"rollout halted: wave {plan.wave.name} was not approved ({approval.get('comment') or 'no comment'})"
    report = rollout_report(inv, runs, wave_log, dry_run)
    report["summary"]["retries"] = rt.caller.retries  # transient API errors retried by this run
    artifacts.markdown(
        "rollout-summary", artifacts.summary_markdown("Rollout", {"outcome": report["summary"]["outcome"]})
    )
    if report_path:
        write_json(report_path, report)
    return report
