"""Small fleets and shortcuts shared by the integration tests (real clients against gkesim)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.schema import load_config
from tasks.access.runtime import Runtime
from tasks.inventory.discovery import discover_projects, list_clusters
from tasks.inventory.records import Inventory


def runtime(config_path: Path) -> Runtime:
    return Runtime.build(load_config(config_path))


def inventory(config_path: Path, only: list[str] | None = None) -> Inventory:
    rt = runtime(config_path)
    try:
        projects, findings = discover_projects(rt.config.scope, rt.clients, rt.caller)
        listed = list_clusters(projects, rt.clients, rt.caller, rt.config.limits.concurrency)
        return Inventory.assemble(listed, findings, only)
    finally:
        rt.close()


def by_name(inv: Inventory) -> dict[str, Any]:
    return {r.state.name: r for r in inv.records}


def path(project: str, name: str, location: str = "us-central1") -> str:
    return f"projects/{project}/locations/{location}/clusters/{name}"
