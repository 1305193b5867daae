"""`portcullis plan`: which cluster goes in which wave, what would change at which level, and what is skipped.

Changes nothing and scans nothing: the usage gate is decided right before each wave, when it is fresh.
"""

from __future__ import annotations

from prefect import flow

from flows.inventory import collect_inventory
from tasks.access.runtime import runtime_for
from tasks.change.plan import Change, plan_cluster
from tasks.change.rollout import outside_rollout
from tasks.change.waves import assign_waves
from tasks.inventory.state import PortState
from tasks.reporting import artifacts, live
from tasks.reporting.report import FlowReport, write_json


@flow(name="plan", log_prints=True)
def plan_flow(
    config_path: str, clusters: list[str] | None = None, report_path: str | None = None
) -> FlowReport:
    """Show the rollout's waves and every change it would make; change nothing."""
    live.reclaim_sigterm()  # started from the CLI: SIGTERM takes Ctrl-C's path
    cfg = runtime_for(config_path).config.rollout
    inv = collect_inventory(config_path, clusters)
    skipped, candidates = [], []
    for rec in inv.records:
        settled = outside_rollout(rec)
        if settled:
            skipped.append({"cluster": rec.path, "outcome": str(settled.outcome), "reason": settled.reason})
        else:
            candidates.append(rec)
    plans, unassigned = assign_waves(candidates, cfg)
    skipped += [{"cluster": r.path, "outcome": "skipped", "reason": "no wave selects it"} for r in unassigned]
    waves = []
    for p in plans:
        clusters_out = []
        for rec in p.clusters:
            steps = plan_cluster(rec.state, rec.gate, PortState.DISABLED, cfg.set_nap_auto_config)
            clusters_out.append(
                {
                    "cluster": rec.path,
                    "mode": str(rec.state.mode),
                    "changes": [s.to_json() for s in steps if isinstance(s, Change)],
                    "left_alone": [s.to_json() for s in steps if not isinstance(s, Change)],
                }
            )
        waves.append(
            {
                "name": p.wave.name,
                "concurrency": p.wave.concurrency,
                "soak_seconds": p.wave.soak_seconds,
                "failure_budget": p.wave.failure_budget,
                "clusters": clusters_out,
                **({"warning": "this wave selects no cluster"} if not p.clusters else {}),
            }
        )
    rows = [
        {"wave": w["name"], "cluster": c["cluster"], "changes": ", ".join(ch["level"] for ch in c["changes"])}
        for w in waves
        for c in w["clusters"]
    ]
    artifacts.table("plan", rows, "Planned changes per wave (nothing changed)")
    report = {
        "kind": "plan",
        "summary": {
            "waves": len(waves),
            "clusters_in_waves": len(rows),
            "skipped": len(skipped),
            "errors": len(inv.findings),
        },
        "waves": waves,
        "skipped": skipped,
        "errors": [f.to_json() for f in inv.findings],
    }
    if report_path:
        write_json(report_path, report)
    return FlowReport(report)
