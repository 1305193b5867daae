"""The inventory flow: every project in scope, every cluster, its port state at every level, the version gate."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.access.runtime import runtime_for
from tasks.inventory.discovery import Finding, ProjectClusters, discover_clusters
from tasks.inventory.records import Inventory
from tasks.reporting import artifacts, progress
from tasks.reporting.report import FlowReport, write_json


@task(name="discover-and-list-clusters", cache_policy=NO_CACHE)
def discover_clusters_task(
    config_path: str, phase: progress.Phase
) -> tuple[list[ProjectClusters], list[Finding]]:
    """Walk the scope's organization and folders and list each project's clusters as soon as it is found.

    One coarse task: Prefect records every task run, and the calls are bounded by `limits.concurrency` anyway.
    """
    rt = runtime_for(config_path)

    def projects(n: int) -> None:  # known once the walk is done, while the first projects are being listed
        phase.total = n

    return discover_clusters(
        rt.config.scope,
        rt.clients,
        rt.caller,
        rt.config.limits.concurrency,
        on_projects=projects,
        on_done=lambda _: phase.advance(),
    )


def collect_inventory(config_path: str, clusters: list[str] | None = None) -> Inventory:
    """The inventory as tasks of the current flow (also used by scan, rollout and verify)."""
    with progress.phase("inventory: projects", 0) as ph:
        listed, findings = discover_clusters_task(config_path, ph)
    return Inventory.assemble(listed, findings, clusters)


def publish_inventory(inv: Inventory, report: dict[str, Any] | None = None) -> None:
    """The inventory's table and summary artifacts; `report`: `inv.to_json()` when the caller has it already."""
    records = report["clusters"] if report is not None else (rec.to_json() for rec in inv.records)
    rows = [
        {k: r[k] for k in ("path", "mode", "version", "outcome", "eligibility", "levels", "reasons")}
        for r in records
    ]
    artifacts.table("inventory-clusters", rows, "Every cluster in scope with its port state per level")
    extra = "\n".join(f"- **{f.kind}** `{f.scope}`: {f.message}. {f.action}" for f in inv.findings)
    artifacts.markdown(
        "inventory-summary",
        artifacts.summary_markdown("Inventory", inv.counts(), ("## Errors\n\n" + extra) if extra else ""),
    )


@flow(name="inventory", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=True)
def inventory_flow(
    config_path: str, clusters: list[str] | None = None, report_path: str | None = None
) -> FlowReport:
    """Find every GKE cluster in scope and report its read-only port state at every level."""
    with artifacts.prefect_progress():
        inv = collect_inventory(config_path, clusters)
    report = inv.to_json()
    publish_inventory(inv, report)
    if report_path:
        write_json(report_path, report)
    return FlowReport(report)
