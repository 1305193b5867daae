"""One cluster's turn in a wave: gate, plan, apply each change in order, verify. Plain functions; flows wire them.

The outcome names are part of the report contract (README "Outcomes").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from google.api_core.exceptions import GoogleAPICallError

from tasks.change.apply import Applier, ChangeResult, OperationTimeout
from tasks.change.plan import Noop, changes, plan_cluster
from tasks.change.verify import check_levels, check_nodes
from tasks.inventory.eligibility import Eligibility, version_gate
from tasks.inventory.records import ClusterRecord, InventoryOutcome
from tasks.inventory.state import ClusterState, PortState
from tasks.usage.scan import GateDecision, ScanResult


class Outcome(StrEnum):
    VERIFIED = "verified"  # changed now, and every level and a node of every changed pool confirm it
    ALREADY_COMPLIANT = "already_compliant"  # nothing to do
    PARTIAL = "partial"  # everything eligible done and verified; some pools must be upgraded first
    DRY_RUN = "dry_run"  # would change (see changes); nothing sent
    BLOCKED = "blocked"  # the usage gate did not pass
    NOT_ELIGIBLE = "not_eligible"  # control plane too old or version unreadable
    SKIPPED = "skipped"  # not RUNNING, no wave selects it, its wave was not run, or the rollout halted
    FAILED = "failed"  # a change or the verification failed
    IN_FLIGHT = "in_flight"  # an operation is still running (timed out waiting, or interrupted)
    ROLLED_BACK = "rolled_back"  # rollback: the port is explicitly enabled again and verified


GOAL = {Outcome.VERIFIED, Outcome.ALREADY_COMPLIANT, Outcome.DRY_RUN, Outcome.ROLLED_BACK}


@dataclass
class ClusterRun:
    cluster: str
    mode: str
    outcome: Outcome
    reason: str = ""
    wave: str | None = None
    gate: dict[str, Any] | None = None
    scan: dict[str, Any] | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    left_alone: list[dict[str, Any]] = field(default_factory=list)
    verification: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        project, location, name = self.cluster.split("/")[1::2]
        out = {"project": project, "location": location, "name": name, **vars(self)}
        out["outcome"] = str(self.outcome)
        return {k: v for k, v in out.items() if v not in (None, [], "")}


def outside_rollout(rec: ClusterRecord) -> ClusterRun | None:
    """The outcome of a cluster that no wave needs to touch, or None when it is a candidate."""
    s = rec.state
    if rec.outcome is InventoryOutcome.COMPLIANT:
        return ClusterRun(
            rec.path, str(s.mode), Outcome.ALREADY_COMPLIANT, "every level is explicitly disabled"
        )
    if rec.outcome is InventoryOutcome.NOT_ELIGIBLE:
        return ClusterRun(rec.path, str(s.mode), Outcome.NOT_ELIGIBLE, "; ".join(rec.gate.reasons))
    if rec.outcome is InventoryOutcome.SKIPPED:
        return ClusterRun(rec.path, str(s.mode), Outcome.SKIPPED, "; ".join(rec.gate.reasons))
    return None


def disable_cluster(
    rec: ClusterRecord,
    scan: ScanResult | None,
    decision: GateDecision,
    applier: Applier,
    wave: str,
    dry_run: bool = False,
) -> ClusterRun:
    """Gate, then plan from a fresh read, apply in order (cluster level first), then verify."""
    run = ClusterRun(
        rec.path,
        str(rec.state.mode),
        Outcome.FAILED,
        wave=wave,
        gate={
            "passes": decision.passes,
            "reason": decision.reason,
            **({"override": decision.override} if decision.override else {}),
        },
        scan=_scan_summary(scan),
    )
    if not decision.passes:
        run.outcome, run.reason = Outcome.BLOCKED, decision.reason
        return run
    try:
        return _disable(run, rec, applier, dry_run)
    except GoogleAPICallError as exc:  # retries spent on this cluster's calls: it failed, not the run
        run.outcome = Outcome.FAILED
        run.reason = f"GKE API error after retries: {type(exc).__name__}: {exc.message}; rerun to pick up"
        return run


def _disable(run: ClusterRun, rec: ClusterRecord, applier: Applier, dry_run: bool) -> ClusterRun:
    rt = applier.rt
    try:
        applier.settle(
            rec.path
        )  # an operation already running (a killed run's, or someone else's) ends first
    except OperationTimeout as exc:
        run.outcome, run.reason = Outcome.IN_FLIGHT, str(exc)
        return run
    state = applier.read(rec.path)  # plan from GKE's state now, not from the inventory's
    settled: ClusterState | None = (
        state  # read after waiting out operations: the first change's pre-send read
    )
    gate = version_gate(state)
    if gate.eligibility in (Eligibility.NOT_ELIGIBLE, Eligibility.SKIPPED):
        run.outcome = (
            Outcome.NOT_ELIGIBLE if gate.eligibility is Eligibility.NOT_ELIGIBLE else Outcome.SKIPPED
        )
        run.reason = "; ".join(gate.reasons)
        return run
    steps = plan_cluster(state, gate, PortState.DISABLED, rt.config.rollout.set_nap_auto_config)
    run.left_alone = [s.to_json() for s in steps if isinstance(s, Noop) and "already" not in s.reason]
    results: list[ChangeResult] = []
    for change in changes(steps):
        result = applier.apply(change, dry_run, settled)
        settled = result.state  # read right after this change was confirmed: the next one's pre-send read
        results.append(result)
        run.changes.append(result.to_json())
        if result.status in ("failed", "in_flight"):
            run.outcome = Outcome.IN_FLIGHT if result.status == "in_flight" else Outcome.FAILED
            run.reason = f"{change.level}: {result.error}"
            return run  # never go on to the next level of a cluster with a failed or running change
    if dry_run:
        run.outcome = Outcome.DRY_RUN if results else Outcome.ALREADY_COMPLIANT
        run.reason = f"would change {len(results)} level(s)" if results else "nothing to change"
        return run
    changed_pools = [r.level.split("/", 1)[1] for r in results if r.level.startswith("node_pool/")]
    left_alone = {n["level"]: n["noop"] for n in run.left_alone}
    return _verify(run, applier, changed_pools, bool(results), left_alone, settled)


def _verify(
    run: ClusterRun,
    applier: Applier,
    changed_pools: list[str],
    changed: bool,
    left_alone: dict[str, str],
    state: ClusterState | None = None,
) -> ClusterRun:
    """Read back every level and a node of each changed pool; levels the plan left alone may stay as they are.

    `state`: the read that confirmed the last change (taken after its operation ended), else read now."""
    rt = applier.rt
    state = state or applier.read(run.cluster)
    v = check_levels(state, version_gate(state))
    node_problems: list[str] = []
    if rt.config.rollout.verify_nodes:
        v.nodes, node_problems = check_nodes(rt, state, changed_pools)
        v.reasons += node_problems
    run.verification = v.to_json()
    unexpected = sorted(lvl for lvl in v.not_disabled if lvl not in left_alone)
    if unexpected or node_problems:
        run.outcome = Outcome.FAILED
        run.reason = "verification failed: " + "; ".join(
            [f"{lvl} is {v.not_disabled[lvl]}" for lvl in unexpected] + node_problems
        )
    elif v.not_disabled:
        run.outcome = Outcome.PARTIAL
        run.reason = "; ".join(f"{lvl}: {left_alone[lvl]}" for lvl in sorted(v.not_disabled))
    else:
        run.outcome = Outcome.VERIFIED if changed else Outcome.ALREADY_COMPLIANT
        run.reason = "every level explicitly disabled" + (" and confirmed on the nodes" if v.nodes else "")
    return run


def _scan_summary(scan: ScanResult | None) -> dict[str, Any] | None:
    if scan is None:
        return None
    return {
        "verdict": str(scan.verdict),
        "reasons": scan.reasons[:5],
        "evidence": scan.evidence[:20],
        "culprits": scan.culprits[:20],
        "window_seconds": round(scan.window_seconds, 2),
    }
