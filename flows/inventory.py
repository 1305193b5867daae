"""The inventory flow: every project in scope, every cluster, its port state at every level, the version gate."""

from __future__ import annotations

from collections import UserDict
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import artifacts, progress
from tasks.discovery import Finding, Project, ProjectClusters, discover_projects, list_clusters
from tasks.inventory import Inventory
from tasks.report import write_json
from tasks.runtime import runtime_for

PROJECTS_PER_TASK = 25  # coarse tasks: Prefect records every task run, and 500 projects are 20 of them


@task(name="discover-projects", cache_policy=NO_CACHE)
def discover_task(config_path: str) -> tuple[list[Project], list[Finding]]:
    """Walk the scope's organization and folders and resolve its projects."""
    rt = runtime_for(config_path)
    return discover_projects(rt.config.scope, rt.clients, rt.caller)


@task(name="list-clusters", cache_policy=NO_CACHE)
def list_clusters_task(
    config_path: str, projects: list[Project], phase: progress.Phase
) -> list[ProjectClusters]:
    """List the clusters of a batch of projects."""
    rt = runtime_for(config_path)
    return list_clusters(
        projects, rt.clients, rt.caller, rt.config.limits.concurrency, on_done=lambda _: phase.advance()
    )


def collect_inventory(config_path: str, clusters: list[str] | None = None) -> Inventory:
    """The inventory as tasks of the current flow (also used by scan, rollout and verify)."""
    projects, findings = discover_task(config_path)
    batches = [projects[i : i + PROJECTS_PER_TASK] for i in range(0, len(projects), PROJECTS_PER_TASK)]
    with progress.phase("inventory: projects", len(projects)) as ph:
        futures = [list_clusters_task.submit(config_path, batch, ph) for batch in batches]
        listed = [pc for fut in futures for pc in fut.result()]
    return Inventory.assemble(listed, findings, clusters)


def publish_inventory(inv: Inventory) -> None:
    rows = [
        {k: r[k] for k in ("path", "mode", "version", "outcome", "eligibility", "levels", "reasons")}
        for r in (rec.to_json() for rec in inv.records)
    ]
    artifacts.table("inventory-clusters", rows, "Every cluster in scope with its port state per level")
    extra = "\n".join(f"- **{f.kind}** `{f.scope}`: {f.message}. {f.action}" for f in inv.findings)
    artifacts.markdown(
        "inventory-summary",
        artifacts.summary_markdown("Inventory", inv.counts(), ("## Errors\n\n" + extra) if extra else ""),
    )


class InventoryReport(UserDict[str, Any]):
    """The JSON report as the flow's return value: a mapping like the dict it holds, which Prefect keeps as one
    value. Prefect walks a returned dict or list node by node looking for futures and states (~230,000 nodes,
    ~3 s, for 10,000 clusters); it does not look inside a UserDict."""


@flow(name="inventory", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=True)
def inventory_flow(
    config_path: str, clusters: list[str] | None = None, report_path: str | None = None
) -> InventoryReport:
    """Find every GKE cluster in scope and report its read-only port state at every level."""
    with artifacts.prefect_progress():
        inv = collect_inventory(config_path, clusters)
    publish_inventory(inv)
    report = inv.to_json()
    if report_path:
        write_json(report_path, report)
    return InventoryReport(report)
