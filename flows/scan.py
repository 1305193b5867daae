"""The scan flow: who still reads port 10255, per cluster, with evidence and culprits. Also used by the rollout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.inventory import collect_inventory, publish_inventory
from tasks.access.runtime import runtime_for
from tasks.inventory.records import ClusterRecord, InventoryOutcome
from tasks.reporting import artifacts, live, progress
from tasks.reporting.report import FlowReport, count_by, write_json
from tasks.usage.scan import Scanner, ScanResult, gate_decision

SCANNABLE = {
    InventoryOutcome.NEEDS_DISABLE,
    InventoryOutcome.PARTLY_ELIGIBLE,
    InventoryOutcome.COMPLIANT,
    InventoryOutcome.NOT_ELIGIBLE,
}


@task(name="scan-clusters", cache_policy=NO_CACHE)
def scan_batch_task(
    config_path: str,
    records: list[ClusterRecord],
    phase: progress.Phase,
    on_done: Callable[[ScanResult], None] | None = None,
) -> list[ScanResult]:
    """Two readings a window apart on every sampled node of a batch of clusters (windows overlap).

    `on_done` gets each cluster's result as the scanner reports it (the rollout starts changing it then).
    """
    rt = runtime_for(config_path)

    def done(result: ScanResult) -> None:
        live.finished("scan", result.to_json())
        phase.advance()
        if on_done:
            on_done(result)

    return list(Scanner(rt).scan(records, on_done=done).values())


def scan_records(config_path: str, records: list[ClusterRecord]) -> dict[str, ScanResult]:
    """Scan in coarse batches that all run at once, so every batch's windows overlap."""
    size = runtime_for(config_path).config.limits.clusters_per_task
    batches = [records[i : i + size] for i in range(0, len(records), size)]
    with progress.phase("scan: clusters", len(records)) as ph:
        futures = [scan_batch_task.submit(config_path, batch, ph) for batch in batches]
        return {r.cluster: r for fut in futures for r in fut.result()}


def scan_rows(results: dict[str, ScanResult], config_path: str) -> list[dict[str, Any]]:
    gate = runtime_for(config_path).config.gate
    rows = []
    for path in sorted(results):
        r = results[path]
        d = gate_decision(r, gate)
        rows.append({**r.to_json(), "gate_passes": d.passes, "gate_reason": d.reason})
    return rows


@flow(name="scan", task_runner=ThreadPoolTaskRunner(max_workers=32), log_prints=True)
def scan_flow(
    config_path: str, clusters: list[str] | None = None, report_path: str | None = None
) -> FlowReport:
    """Scan every cluster in scope for read-only port traffic and decide its gate."""
    live.reclaim_sigterm()  # started from the CLI: SIGTERM takes Ctrl-C's path
    with artifacts.prefect_progress():
        inv = collect_inventory(config_path, clusters)
        publish_inventory(inv)
        targets = [r for r in inv.records if r.outcome in SCANNABLE]
        live.begin("scan", [(r.path, str(r.state.mode)) for r in targets])
        results = scan_records(config_path, targets)
    rows = scan_rows(results, config_path)
    counts = {"verdict": count_by(row["verdict"] for row in rows)}
    artifacts.table(
        "scan-verdicts",
        [{k: row[k] for k in ("cluster", "mode", "verdict", "gate_passes", "reasons")} for row in rows],
        "Read-only port usage per cluster",
    )
    artifacts.markdown("scan-summary", artifacts.summary_markdown("Scan", counts))
    skipped = [
        {"cluster": r.path, "outcome": str(r.outcome), "reasons": list(r.gate.reasons)}
        for r in inv.records
        if r.outcome not in SCANNABLE
    ]
    report = {
        "kind": "scan",
        "summary": {"clusters": len(rows), **counts, "not_scanned": len(skipped)},
        "clusters": rows,
        "not_scanned": skipped,
        "errors": [f.to_json() for f in inv.findings],
    }
    if report_path:
        write_json(report_path, report)
    return FlowReport(report)
