"""Verification only: no writes. Per cluster compliant, drifted (naming each level) or not eligible."""

from __future__ import annotations

from prefect import flow

from flows.inventory import collect_inventory, publish_inventory
from tasks.change.verify import check_levels
from tasks.reporting import artifacts, live
from tasks.reporting.report import FlowReport, count_by, write_json


@flow(name="verify", log_prints=True)
def verify_flow(
    config_path: str, clusters: list[str] | None = None, report_path: str | None = None
) -> FlowReport:
    """Read every cluster's port setting at every level and report drift from explicit false."""
    live.reclaim_sigterm()  # started from the CLI: SIGTERM takes Ctrl-C's path
    with artifacts.prefect_progress():
        inv = collect_inventory(config_path, clusters)
    publish_inventory(inv)
    rows = []
    for rec in inv.records:
        v = check_levels(rec.state, rec.gate)
        rows.append(
            {
                "cluster": rec.path,
                "mode": str(rec.state.mode),
                "outcome": v.outcome,
                "not_disabled": v.not_disabled,
                "reasons": v.reasons,
            }
        )
    counts = count_by(row["outcome"] for row in rows)
    artifacts.table("verify-clusters", rows, "Port state per cluster (verification only)")
    artifacts.markdown("verify-summary", artifacts.summary_markdown("Verification", {"outcome": counts}))
    report = {
        "kind": "verify",
        "ok": not inv.findings and all(r["outcome"] == "compliant" for r in rows),
        "summary": {"clusters": len(rows), "outcome": counts, "errors": len(inv.findings)},
        "clusters": rows,
        "errors": [f.to_json() for f in inv.findings],
    }
    if report_path:
        write_json(report_path, report)
    return FlowReport(report)
