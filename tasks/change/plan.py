"""Deciding what to change: a pure function from a cluster's facts and the wanted port state to a list of steps.

A `Change` carries the level's WHOLE kubelet config with only the port field set, so sending it can never wipe
another kubelet setting; a `Noop` says in words why a level is left alone. Apply never re-decides: it executes
changes, re-reading state first so a step that already landed is not sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.cloud import container_v1

from tasks.inventory.eligibility import MIN_TEXT, VersionGate
from tasks.inventory.state import PORT_FIELD, ClusterState, Level, Mode, PortState, kubelet_from_dict


@dataclass(frozen=True)
class Change:
    cluster: str  # projects/P/locations/L/clusters/C
    level: str  # cluster_default | auto_config | node_pool/NAME
    before: PortState
    after: PortState
    kubelet: dict[str, Any] = field(default_factory=dict)  # the whole config to send, port field included

    @property
    def pool(self) -> str | None:
        return self.level.split("/", 1)[1] if self.level.startswith(Level.NODE_POOL.value + "/") else None

    def kubelet_config(self) -> container_v1.NodeKubeletConfig:
        return kubelet_from_dict(self.kubelet)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "before": str(self.before),
            "after": str(self.after),
            "send": self.kubelet,
        }


@dataclass(frozen=True)
class Noop:
    cluster: str
    level: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "noop": self.reason}


Step = Change | Noop


def with_port(kubelet: dict[str, Any], want: PortState) -> dict[str, Any]:
    """The same kubelet config with only the port field set to the wanted explicit value."""
    if want is PortState.UNSET:
        raise ValueError("a change sets the port explicitly; UNSET is never a target")
    return {**kubelet, PORT_FIELD: want is PortState.ENABLED}


def _level_step(path: str, level: str, current: PortState, kubelet: dict[str, Any], want: PortState) -> Step:
    if current is want:
        return Noop(path, level, f"explicitly {want} already")
    return Change(path, level, current, want, with_port(kubelet, want))


def plan_cluster(
    state: ClusterState,
    gate: VersionGate,
    want: PortState = PortState.DISABLED,
    set_nap_auto_config: bool = False,
    pools: set[str] | None = None,
) -> list[Step]:
    """The steps that bring every level of `state` to `want`, cluster level first, then each pool.

    `pools` limits the pool steps to those names (rollback of one pool); the cluster levels are then left alone.
    """
    path = state.path
    steps: list[Step] = []
    if state.mode is Mode.AUTOPILOT:
        return [
            _level_step(path, Level.AUTO_CONFIG.value, state.autoconfig_port, state.autoconfig_kubelet, want)
        ]
    if pools is None:
        steps.append(
            _level_step(path, Level.CLUSTER_DEFAULT.value, state.default_port, state.default_kubelet, want)
        )
        if state.nap:
            if set_nap_auto_config:
                steps.append(
                    _level_step(
                        path, Level.AUTO_CONFIG.value, state.autoconfig_port, state.autoconfig_kubelet, want
                    )
                )
            elif state.autoconfig_port not in (PortState.UNSET, want):
                steps.append(
                    Noop(
                        path,
                        Level.AUTO_CONFIG.value,
                        f"NAP auto-config is explicitly {state.autoconfig_port} and overrides the cluster default; "
                        "set rollout.set_nap_auto_config to change it",
                    )
                )
    for pool in state.pools:
        if pools is not None and pool.name not in pools:
            continue
        level = f"{Level.NODE_POOL.value}/{pool.name}"
        if pool.name in gate.blocked_pools:
            steps.append(
                Noop(
                    path,
                    level,
                    f"left alone: the pool must be upgraded to {MIN_TEXT} or later first"
                    if pool.port is not want
                    else f"explicitly {want} already",
                )
            )
            continue
        steps.append(_level_step(path, level, pool.port, pool.kubelet, want))
    return steps


def changes(steps: list[Step]) -> list[Change]:
    return [s for s in steps if isinstance(s, Change)]


def current_port(state: ClusterState, level: str) -> PortState:
    """The state of one level as read now (used to skip a change that already landed)."""
    if level == Level.CLUSTER_DEFAULT.value:
        return state.default_port
    if level == Level.AUTO_CONFIG.value:
        return state.autoconfig_port
    return state.pool(level.split("/", 1)[1]).port


def current_kubelet(state: ClusterState, level: str) -> dict[str, Any]:
    if level == Level.CLUSTER_DEFAULT.value:
        return state.default_kubelet
    if level == Level.AUTO_CONFIG.value:
        return state.autoconfig_kubelet
    return state.pool(level.split("/", 1)[1]).kubelet


def work_estimate(state: ClusterState, steps: list[Step]) -> float:
    """How long a cluster's changes take, in relative units (only for ordering: longest first, smallest canary).

    GKE's operations take a fixed part plus a part per node they recreate: a pool change recreates its nodes,
    an Autopilot auto-config change rolls every node, a Standard cluster default recreates none.
    """
    total = 0.0
    for step in changes(steps):
        if step.pool is not None:
            nodes = state.pool(step.pool).node_count
        elif step.level == Level.AUTO_CONFIG.value and state.mode is Mode.AUTOPILOT:
            nodes = sum(p.node_count for p in state.pools)
        else:
            nodes = 0
        total += 1.0 + 0.5 * nodes
    return total
