"""The fleet description a simulator is built from (YAML, or generated for benchmarks).

Kept declarative, kwok-style: a file says what exists and how it behaves; `fleet.Fleet` makes it live.
Validated strictly so a typo in a scenario fails loudly instead of silently simulating something else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

PortSetting = Literal["unset", "enabled", "disabled"]
Usage = Literal["clean", "in_use", "used_before"]
Agent = Literal[
    "datadog", "telegraf", "metrics-server", "heapster", "fluent-bit", "prometheus", "signalfx", "curl"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoolSpec(_Strict):
    name: str
    version: str | None = None  # default: the cluster's control-plane version
    nodes: int = Field(default=2, ge=0)
    port: PortSetting = "unset"
    kubelet: dict[str, object] = Field(default_factory=dict)  # other NodeKubeletConfig fields, snake_case
    autoprovisioned: bool = False
    usage: Usage = "clean"
    # read-only requests per simulated minute per path when in use
    rate_per_minute: float = Field(default=6.0, ge=0)
    status: str = "RUNNING"


class ClusterSpec(_Strict):
    name: str
    location: str = "us-central1"
    mode: Literal["standard", "autopilot"] = "standard"
    version: str = "1.30.5-gke.1014001"
    status: str = "RUNNING"
    release_channel: Literal["UNSPECIFIED", "RAPID", "REGULAR", "STABLE", "EXTENDED"] = "REGULAR"
    nap: bool = False
    default_port: PortSetting = "unset"  # node_pool_defaults.node_config_defaults.node_kubelet_config
    autoconfig_port: PortSetting = "unset"  # node_pool_auto_config.node_kubelet_config
    pools: list[PoolSpec] = Field(default_factory=list)
    agents: list[Agent] = Field(default_factory=list)  # workloads whose manifests reference 10255
    workloads: bool = True  # Autopilot: at least one non-DaemonSet workload runs
    labels: dict[str, str] = Field(default_factory=dict)


class ProjectSpec(_Strict):
    id: str
    number: int | None = None
    parent: str | None = None  # "folders/N" or "organizations/N"; default: the organization
    display_name: str | None = None
    state: Literal["ACTIVE", "DELETE_REQUESTED"] = "ACTIVE"
    labels: dict[str, str] = Field(default_factory=dict)
    clusters: list[ClusterSpec] = Field(default_factory=list)


class FolderSpec(_Strict):
    id: str
    display_name: str | None = None
    parent: str | None = None  # default: the organization

    @field_validator("id")
    @classmethod
    def _digits(cls, v: str) -> str:
        return v.removeprefix("folders/")


class Timings(_Strict):
    """Simulated seconds; real time is this times the simulator's time scale."""

    update_cluster: float = 60.0
    update_node_pool: float = 60.0
    per_node: float = 30.0  # each node a node-pool change recreates
    autopilot_per_node: float = 20.0
    probe_pod_start: float = 10.0
    probe_log_interval: float = 20.0


class FaultSpec(_Strict):
    """Faults injected by the simulator. Rates are probabilities per call; methods are gRPC/HTTP method names or '*'."""

    seed: int = 0
    error_rates: dict[str, dict[str, float]] = Field(default_factory=dict)  # method -> {STATUS_CODE: rate}
    latency_ms: dict[str, float] = Field(default_factory=dict)  # method -> added latency per call
    # method (or '*') -> how many times each request for a page after the first (one with a page token or a
    # `continue`) answers UNAVAILABLE (Kubernetes: 503) before it is served; the first page is never failed.
    # Methods: ListProjects, ListFolders, SearchProjects, KubeList.
    later_page_failures: dict[str, int] = Field(default_factory=dict)
    quota_per_minute: int | None = None  # container API calls per project per quota window
    quota_window_seconds: float = Field(default=60.0, gt=0)  # real seconds; GCP's quotas are per minute
    failing_operation_rate: float = 0.0
    failing_operations: list[str] = Field(default_factory=list)  # cluster paths whose next op fails once
    stuck_operation_rate: float = 0.0
    stuck_operations: list[str] = Field(default_factory=list)  # cluster paths whose ops never finish
    permission_denied_projects: list[str] = Field(default_factory=list)
    api_disabled_projects: list[str] = Field(default_factory=list)
    missing_zones: dict[str, list[str]] = Field(default_factory=dict)  # project -> zones that did not answer
    node_read_timeouts: list[str] = Field(
        default_factory=list
    )  # cluster paths (or path/pool) whose node reads hang
    node_read_timeout_rate: float = 0.0
    forbidden_node_proxy: list[str] = Field(
        default_factory=list
    )  # cluster paths where nodes/proxy is denied (403)
    probe_pods_never_start: list[str] = Field(default_factory=list)  # cluster paths
    wrong_ca: list[str] = Field(default_factory=list)  # cluster paths served with a CA that does not match


class FleetSpec(_Strict):
    organization: str = "123456789012"
    folders: list[FolderSpec] = Field(default_factory=list)
    projects: list[ProjectSpec] = Field(default_factory=list)
    timings: Timings = Field(default_factory=Timings)
    faults: FaultSpec = Field(default_factory=FaultSpec)


def load_fleet_spec(path: str | Path) -> FleetSpec:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    return FleetSpec.model_validate(data)
