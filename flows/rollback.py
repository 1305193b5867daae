"""Undo: set the port back to explicitly enabled on named clusters or pools, with the same safety and checks.

For the day a forgotten workload breaks. No usage gate (re-opening the port cannot break a reader), but the
same one-operation-at-a-time rule, whole-config sends, and verification on the API and the nodes.
"""

from __future__ import annotations

from prefect import flow

from flows.inventory import collect_inventory
from tasks.access.runtime import runtime_for
from tasks.change.apply import Applier, OperationSlots
from tasks.change.plan import Noop, changes, plan_cluster
from tasks.change.rollout import GOAL, ClusterRun, Outcome
from tasks.change.verify import check_nodes
from tasks.inventory.eligibility import version_gate
from tasks.inventory.state import PortState
from tasks.reporting import artifacts, live
from tasks.reporting.report import FlowReport, count_by, write_json


@flow(name="rollback", log_prints=True)
def rollback_flow(
    config_path: str,
    clusters: list[str],
    node_pools: list[str] | None = None,
    report_path: str | None = None,
    dry_run: bool = False,
) -> FlowReport:
    """Re-enable the read-only port on the named clusters (or only the named node pools)."""
    live.reclaim_sigterm()  # started from the CLI: SIGTERM takes Ctrl-C's path
    rt = runtime_for(config_path)
    applier = Applier(rt, OperationSlots(rt.config.rollout))
    inv = collect_inventory(config_path, clusters)
    live.begin("rollback", [(r.path, str(r.state.mode)) for r in inv.records])
    runs = []
    for rec in inv.records:
        state = applier.read(rec.path)
        pools = set(node_pools) if node_pools else None
        steps = plan_cluster(
            state, version_gate(state), PortState.ENABLED, rt.config.rollout.set_nap_auto_config, pools
        )
        run = ClusterRun(rec.path, str(state.mode), Outcome.ROLLED_BACK)
        run.left_alone = [s.to_json() for s in steps if isinstance(s, Noop) and "already" not in s.reason]
        for change in changes(steps):
            result = applier.apply(change, dry_run)
            run.changes.append(result.to_json())
            if result.status in ("failed", "in_flight"):
                run.outcome = Outcome.FAILED if result.status == "failed" else Outcome.IN_FLIGHT
                run.reason = f"{change.level}: {result.error}"
                break
        else:
            if dry_run:
                run.outcome, run.reason = Outcome.DRY_RUN, f"would change {len(run.changes)} level(s)"
            else:
                after = applier.read(rec.path)
                pool_names = [
                    c["level"].split("/", 1)[1] for c in run.changes if c["level"].startswith("node_pool/")
                ]
                rows, problems = check_nodes(rt, after, pool_names, want_open=True)
                run.verification = {"nodes": rows, "problems": problems}
                run.reason = "port explicitly enabled again" if not problems else "; ".join(problems)
                if problems:
                    run.outcome = Outcome.FAILED
        runs.append(run)
        live.finished("rollback", run.to_json())
    report = {
        "kind": "rollback",
        "dry_run": dry_run,
        "ok": not inv.findings and all(r.outcome in GOAL for r in runs),
        "summary": {"clusters": len(runs), "outcome": count_by(r.outcome for r in runs)},
        "clusters": [r.to_json() for r in runs],
        "errors": [f.to_json() for f in inv.findings],
    }
    artifacts.table(
        "rollback",
        [{"cluster": r.cluster, "outcome": str(r.outcome), "reason": r.reason} for r in runs],
        "Rollback",
    )
    if report_path:
        write_json(report_path, report)
    return FlowReport(report)
