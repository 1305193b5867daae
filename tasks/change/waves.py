"""Which cluster goes in which wave: the configured waves in order, or the default progression.

A cluster belongs to the first wave whose selector matches it; one that no wave selects is reported, never
silently dropped.

The default progression's canary is the cluster whose change exercises the most (see `canary_order`), with a few
spares: the inventory knows nothing of usage, so the canary's gate may still block it; the rollout then takes the
first spare whose gate passes instead (the spares stay in their own waves until then).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

from config.schema import Rollout, Selector, Wave
from tasks.change.plan import changes, plan_cluster, work_estimate
from tasks.inventory.eligibility import Eligibility
from tasks.inventory.records import ClusterRecord
from tasks.inventory.state import PortState

CANARY_SPARES = 4  # stand-ins scanned with the default canary, tried in order when its gate blocks


@dataclass
class WavePlan:
    wave: Wave
    clusters: list[ClusterRecord] = field(default_factory=list)
    spares: list[ClusterRecord] = field(default_factory=list)  # stand-ins for a blocked canary


def _labels_match(wanted: dict[str, str], have: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in wanted.items())


def selects(sel: Selector, rec: ClusterRecord) -> bool:
    """All given criteria must hold (AND); within a list any entry may match (OR). An empty selector selects none."""
    s = rec.state
    criteria = [
        (sel.projects, lambda: s.project in sel.projects),
        (sel.folders, lambda: any(f in rec.project_ancestors for f in sel.folders)),
        (sel.project_labels, lambda: _labels_match(sel.project_labels, rec.project_labels)),
        (sel.cluster_labels, lambda: _labels_match(sel.cluster_labels, s.labels)),
        (sel.locations, lambda: s.location in sel.locations),
        (sel.names, lambda: any(fnmatch.fnmatchcase(s.name, pat) for pat in sel.names)),
        (sel.mode, lambda: str(s.mode) == sel.mode),
    ]
    given = [check for value, check in criteria if value]
    if not given:
        return sel.all
    return all(check() for check in given)


def is_production(rec: ClusterRecord, production_labels: dict[str, str]) -> bool:
    return bool(production_labels) and (
        _labels_match(production_labels, rec.project_labels)
        or _labels_match(production_labels, rec.state.labels)
    )


def default_waves(rollout: Rollout) -> list[Wave]:
    soak = rollout.default_soak_seconds
    everything = Selector(all=True)
    return [
        Wave(
            name="canary",
            select=everything,
            max_clusters=1,
            concurrency=1,
            soak_seconds=soak,
            failure_budget=0,
        ),
        Wave(
            name="five-percent",
            select=everything,
            percent=5,
            concurrency=5,
            soak_seconds=soak,
            failure_budget=0,
        ),
        Wave(
            name="quarter", select=everything, percent=25, concurrency=10, soak_seconds=soak, failure_budget=1
        ),
        Wave(name="rest", select=everything, concurrency=20, soak_seconds=0, failure_budget=2),
    ]


def canary_order(candidates: list[ClusterRecord], rollout: Rollout) -> list[ClusterRecord]:
    """Best canary first: non-production; every level eligible (no pool waiting for an upgrade); changing both
    kinds of level (a Standard cluster's default and its pools: UpdateCluster and UpdateNodePool both run);
    then the least work (fewest nodes recreated: a small blast radius, a quick answer); then by path."""

    def key(rec: ClusterRecord) -> tuple[bool, bool, int, float, str]:
        steps = plan_cluster(rec.state, rec.gate, PortState.DISABLED, rollout.set_nap_auto_config)
        todo = changes(steps)
        kinds = len({c.pool is None for c in todo})
        return (
            is_production(rec, rollout.production_labels),
            rec.gate.eligibility is not Eligibility.ELIGIBLE,
            -kinds,
            work_estimate(rec.state, steps),
            rec.path,
        )

    return sorted(candidates, key=key)


def spares(best: list[ClusterRecord], n: int, production_labels: dict[str, str]) -> list[ClusterRecord]:
    """The next best after the canary, non-production first, and within that other projects first (an agent that
    reads the port is often installed project by project, so a spare in the canary's own project is likely
    blocked by the same agent)."""
    seen = {best[0].state.project}
    out: list[ClusterRecord] = []
    for prod in (False, True):
        first, rest = [], []
        for rec in best[1:]:
            if is_production(rec, production_labels) is prod:
                (rest if rec.state.project in seen else first).append(rec)
                seen.add(rec.state.project)
        out += first + rest
    return out[:n]


def assign_waves(
    candidates: list[ClusterRecord], rollout: Rollout
) -> tuple[list[WavePlan], list[ClusterRecord]]:
    """Waves in order with their clusters, and the clusters no wave selects."""
    ordered = sorted(candidates, key=lambda r: (is_production(r, rollout.production_labels), r.path))
    waves = rollout.waves or default_waves(rollout)
    remaining = list(ordered)
    plans = []
    if not rollout.waves and ordered:  # the default canary: the most telling cluster, and its stand-ins
        best = canary_order(ordered, rollout)
        canary = WavePlan(waves[0], best[:1], spares(best, CANARY_SPARES, rollout.production_labels))
        remaining = [r for r in remaining if r.path != best[0].path]
        plans.append(canary)
        waves = waves[1:]
    for wave in waves:
        matched = [r for r in remaining if selects(wave.select, r)]
        cap = len(matched)
        if wave.max_clusters is not None:
            cap = min(cap, wave.max_clusters)
        if wave.percent is not None:
            cap = min(cap, math.ceil(len(ordered) * wave.percent / 100))
        taken = matched[:cap]
        taken_paths = {r.path for r in taken}
        remaining = [r for r in remaining if r.path not in taken_paths]
        plans.append(WavePlan(wave, taken))
    return plans, remaining
