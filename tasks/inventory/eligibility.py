"""The version gate: can the port setting be changed on this cluster, and on which of its pools?

GKE accepts the setting only from 1.26.4-gke.500, on the control plane and on each pool being changed.
Reasons are written for the platform engineer who has to act on them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from tasks.inventory.state import ClusterState, Mode
from tasks.inventory.versions import MIN_PORT_VERSION, parse_version

MIN_TEXT = "1.26.4-gke.500"


class Eligibility(StrEnum):
    ELIGIBLE = "eligible"
    PARTLY_ELIGIBLE = "partly_eligible"  # some pools must be upgraded first
    NOT_ELIGIBLE = "not_eligible"
    SKIPPED = "skipped"  # not RUNNING: look again later


@dataclass(frozen=True)
class VersionGate:
    eligibility: Eligibility
    reasons: tuple[str, ...] = ()
    blocked_pools: tuple[str, ...] = ()  # pools below the minimum version: left alone and reported

    def to_json(self) -> dict[str, object]:
        return {
            "eligibility": str(self.eligibility),
            "reasons": list(self.reasons),
            "blocked_pools": list(self.blocked_pools),
        }


@functools.lru_cache(maxsize=4096)
def _too_old(version: str) -> str | None:
    """Why this version cannot take the setting, or None when it can (cached: a fleet has few versions)."""
    parsed = parse_version(version)
    if parsed is None or parsed.is_unknown:
        return f"its version {version!r} could not be read"
    if parsed < MIN_PORT_VERSION:
        return f"it runs {version}, older than {MIN_TEXT}"
    return None


# What GKE and Resource Manager allow in names; anything else came from a broken or hostile API answer, and a
# path built from it could point somewhere else (a "/" in a name), so such a cluster is never touched.
SAFE_PATH = re.compile(
    r"projects/[a-z][a-z0-9-]*[a-z0-9]/locations/[a-z0-9-]+/clusters/[a-z](?:[-a-z0-9]*[a-z0-9])?"
)
SAFE_POOL = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
# SAFE_PATH part by part: none of the parts' patterns admits a "/", so the path matches SAFE_PATH exactly when each
# part matches its own pattern. Checked per part and cached, as a fleet repeats its projects, locations and names.
_SAFE_PROJECT = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]")
_SAFE_LOCATION = re.compile(r"[a-z0-9-]+")


def _cached_match(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    @functools.lru_cache(maxsize=16384)
    def matches(text: str) -> bool:
        return pattern.fullmatch(text) is not None

    return matches


_safe_project = _cached_match(_SAFE_PROJECT)
_safe_location = _cached_match(_SAFE_LOCATION)
_safe_name = _cached_match(SAFE_POOL)  # cluster and node pool names follow the same rule


def safe_path(state: ClusterState) -> bool:
    """`SAFE_PATH.fullmatch(state.path)`, without building and matching the whole path."""
    return _safe_project(state.project) and _safe_location(state.location) and _safe_name(state.name)


def version_gate(state: ClusterState) -> VersionGate:
    odd = [p.name for p in state.pools if not _safe_name(p.name)]
    if not safe_path(state) or odd:
        name = repr(state.path) + (f" (node pools {odd!r})" if odd else "")
        return VersionGate(
            Eligibility.SKIPPED,
            (f"{name} has characters GKE names never have: not touched; check what reported this cluster",),
        )
    if state.status != "RUNNING":
        return VersionGate(
            Eligibility.SKIPPED, (f"cluster is {state.status}, not RUNNING: rerun once it settles",)
        )
    problem = _too_old(state.version)
    if problem:
        return VersionGate(
            Eligibility.NOT_ELIGIBLE,
            (
                f"control plane cannot take the setting: {problem}; upgrade the control plane to {MIN_TEXT} or later",
            ),
        )
    if state.mode is Mode.AUTOPILOT:
        return VersionGate(Eligibility.ELIGIBLE)
    blocked = []
    reasons = []
    for pool in state.pools:
        why = _too_old(pool.version)
        if why:
            blocked.append(pool.name)
            reasons.append(f"node pool {pool.name}: {why}; upgrade it to {MIN_TEXT} or later first")
        elif pool.status not in ("RUNNING", "RUNNING_WITH_ERROR"):
            blocked.append(pool.name)
            reasons.append(f"node pool {pool.name} is {pool.status}, not RUNNING: rerun once it settles")
    if blocked:
        return VersionGate(Eligibility.PARTLY_ELIGIBLE, tuple(reasons), tuple(blocked))
    return VersionGate(Eligibility.ELIGIBLE)
