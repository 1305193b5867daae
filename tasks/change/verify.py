"""Is a cluster done? Every level that applies reads explicit false, and the running kubelets agree.

The API level is GKE's word; `/configz` on a node is the kubelet's. A changed pool counts as verified only when
one of its nodes runs with the read-only port closed (Autopilot grants no nodes/proxy, so there the API level
is what can be checked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.access.runtime import Runtime
from tasks.inventory.eligibility import Eligibility, VersionGate
from tasks.inventory.state import ClusterState, Mode, PortState
from tasks.usage import kube


@dataclass
class Verification:
    cluster: str
    outcome: str  # compliant | drifted | not_eligible
    not_disabled: dict[str, str] = field(default_factory=dict)  # level -> its state
    nodes: list[dict[str, Any]] = field(default_factory=list)  # pool, node, read_only_port
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == "compliant"

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def check_levels(
    state: ClusterState, gate: VersionGate, want: PortState = PortState.DISABLED
) -> Verification:
    """The API-level verdict: compliant, drifted (naming each level that is not explicit `want`), or not eligible."""
    wrong = {level: str(s) for level, s in state.levels() if s is not want}
    if not wrong:
        return Verification(state.path, "compliant")
    v = Verification(state.path, "drifted", wrong)
    v.reasons = [f"{level} is {s}, not explicitly {want}" for level, s in wrong.items()]
    if gate.eligibility in (Eligibility.NOT_ELIGIBLE, Eligibility.SKIPPED):
        v.outcome = "not_eligible"
        v.reasons = list(gate.reasons) + v.reasons
    return v


def check_nodes(
    rt: Runtime, state: ClusterState, pools: list[str], want_open: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """Read /configz on one node of each named pool; return the rows and the problems found."""
    if state.mode is Mode.AUTOPILOT or not pools:
        return [], []
    timeout = rt.config.scan.request_timeout_seconds
    try:
        api = rt.clients.kube(state.endpoint, state.ca_certificate)
        nodes = kube.list_nodes(api, timeout)
    except Exception as exc:  # noqa: BLE001 - reported, and the cluster is then not verified
        return [], [kube.explain(exc, "listing nodes to verify")]
    rows, problems = [], []
    for pool in pools:
        members = sorted(n.name for n in nodes if n.pool == pool)
        if not members:
            continue  # a pool scaled to zero: its next nodes are created with the new config
        try:
            port = kube.readonly_port(kube.read_configz(api, members[0], timeout))
        except Exception as exc:  # noqa: BLE001
            problems.append(kube.explain(exc, f"node {members[0]} /configz"))
            continue
        rows.append({"pool": pool, "node": members[0], "read_only_port": port})
        if (port != 0) != want_open:
            problems.append(f"node {members[0]} of pool {pool} still runs with readOnlyPort {port}")
    return rows, problems
