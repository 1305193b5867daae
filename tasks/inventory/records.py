"""The inventory record of a cluster: its facts, its port state at every level, and the version gate's answer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tasks.inventory.discovery import Finding, ProjectClusters
from tasks.inventory.eligibility import Eligibility, VersionGate, version_gate
from tasks.inventory.state import ClusterState, gc_paused


class InventoryOutcome(StrEnum):
    COMPLIANT = "compliant"  # every level that applies reads explicit false
    NEEDS_DISABLE = "needs_disable"  # eligible, some level still enabled or unset
    PARTLY_ELIGIBLE = "partly_eligible"  # not compliant, and some pools must be upgraded first
    NOT_ELIGIBLE = "not_eligible"  # control plane too old (or its version unreadable)
    SKIPPED = "skipped"  # not RUNNING


_NOT_COMPLIANT = {
    Eligibility.ELIGIBLE: InventoryOutcome.NEEDS_DISABLE,
    Eligibility.PARTLY_ELIGIBLE: InventoryOutcome.PARTLY_ELIGIBLE,
    Eligibility.NOT_ELIGIBLE: InventoryOutcome.NOT_ELIGIBLE,
    Eligibility.SKIPPED: InventoryOutcome.SKIPPED,
}


def outcome_of(state: ClusterState, gate: VersionGate) -> InventoryOutcome:
    if state.compliant:
        return InventoryOutcome.COMPLIANT
    return _NOT_COMPLIANT[gate.eligibility]


@dataclass(frozen=True)
class ClusterRecord:
    state: ClusterState
    gate: VersionGate
    outcome: InventoryOutcome
    project_labels: dict[str, str] = field(default_factory=dict)
    project_ancestors: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return self.state.path

    def to_json(self) -> dict[str, Any]:
        s = self.state
        return {
            "project": s.project,
            "location": s.location,
            "name": s.name,
            "path": s.path,
            "mode": str(s.mode),
            "status": s.status,
            "version": s.version,
            "release_channel": s.release_channel,
            "nap": s.nap,
            "outcome": str(self.outcome),
            **self.gate.to_json(),
            "levels": {level: str(state) for level, state in s.levels()},
            "cluster_default": str(s.default_port),
            "auto_config": str(s.autoconfig_port),
            "node_pools": [p.to_json() for p in s.pools],
            "deprecated_fields": s.deprecated,
            "labels": s.labels,
        }


def record(
    state: ClusterState, project_labels: dict[str, str] | None = None, parent: str = ""
) -> ClusterRecord:
    gate = version_gate(state)
    return ClusterRecord(state, gate, outcome_of(state, gate), dict(project_labels or {}), parent)


@dataclass
class Inventory:
    records: list[ClusterRecord]
    findings: list[Finding]

    @classmethod
    def assemble(
        cls, listed: list[ProjectClusters], findings: list[Finding], only: list[str] | None = None
    ) -> Inventory:
        with gc_paused():
            records = [
                record(c, pc.project.labels, pc.project.ancestors)
                for pc in listed
                for c in pc.clusters
                if not only or c.path in only
            ]
        all_findings = list(findings) + [f for pc in listed for f in pc.findings]
        if only:
            seen = {r.path for r in records}
            for path in only:
                if path not in seen:
                    all_findings.append(
                        Finding(
                            path,
                            "not_found",
                            "the cluster named by --cluster was not found in scope",
                            "check the path and that its project is in scope",
                        )
                    )
        records.sort(key=lambda r: r.path)
        return cls(records, all_findings)

    @property
    def complete(self) -> bool:
        """False when some part of the scope could not be read: clusters may be missing from the records."""
        return not self.findings

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            "outcome": dict(Counter(str(r.outcome) for r in self.records)),
            "mode": dict(Counter(str(r.state.mode) for r in self.records)),
            "eligibility": dict(Counter(str(r.gate.eligibility) for r in self.records)),
            "errors": dict(Counter(f.kind for f in self.findings)),
        }

    def to_json(self) -> dict[str, Any]:
        with gc_paused():
            return {
                "kind": "inventory",
                "summary": {
                    "clusters": len(self.records),
                    "errors": len(self.findings),
                    "complete": self.complete,
                    **self.counts(),
                },
                "clusters": [r.to_json() for r in self.records],
                "errors": [f.to_json() for f in self.findings],
            }
