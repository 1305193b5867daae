"""Facts about a cluster, read from GKE's messages into plain frozen values. No decisions here.

The port field is proto3 `optional`: presence is the only way to tell an explicit `false` from "the version's
default", so every read goes through `port_state`, never through the field's value alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from google.cloud import container_v1

PORT_FIELD = "insecure_kubelet_readonly_port_enabled"


class PortState(StrEnum):
    DISABLED = "disabled"  # explicit false: the only compliant state
    ENABLED = "enabled"  # explicit true
    UNSET = "unset"  # the GKE version's default; counts as not disabled


class Mode(StrEnum):
    STANDARD = "standard"
    AUTOPILOT = "autopilot"


class Level(StrEnum):
    CLUSTER_DEFAULT = (
        "cluster_default"  # Standard: node_pool_defaults.node_config_defaults.node_kubelet_config
    )
    AUTO_CONFIG = "auto_config"  # Autopilot and NAP: node_pool_auto_config.node_kubelet_config
    NODE_POOL = "node_pool"  # NodePool.config.kubelet_config


def port_state(kubelet: container_v1.NodeKubeletConfig | None) -> PortState:
    if kubelet is None or PORT_FIELD not in kubelet:
        return PortState.UNSET
    return PortState.ENABLED if getattr(kubelet, PORT_FIELD) else PortState.DISABLED


def kubelet_dict(kubelet: container_v1.NodeKubeletConfig | None) -> dict[str, Any]:
    """The whole kubelet config as plain data (proto field names), presence preserved: unset fields are absent."""
    if kubelet is None:
        return {}
    text = container_v1.NodeKubeletConfig.to_json(
        kubelet, preserving_proto_field_name=True, indent=None, always_print_fields_with_no_presence=False
    )
    return json.loads(text)


def kubelet_from_dict(data: dict[str, Any]) -> container_v1.NodeKubeletConfig:
    return container_v1.NodeKubeletConfig.from_json(json.dumps(data), ignore_unknown_fields=False)


@dataclass(frozen=True)
class PoolState:
    name: str
    version: str
    status: str
    autoprovisioned: bool
    port: PortState
    kubelet: dict[
        str, Any
    ]  # the pool's whole kubelet config, so a change can send it back with one field changed
    node_count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "autoprovisioned": self.autoprovisioned,
            "port": str(self.port),
            "kubelet_config": self.kubelet,
        }


@dataclass(frozen=True)
class ClusterState:
    project: str
    location: str
    name: str
    mode: Mode
    status: str
    version: str
    release_channel: str
    nap: bool
    endpoint: str
    ca_certificate: str = field(repr=False)
    default_port: PortState  # Standard cluster default (meaningless on Autopilot)
    default_kubelet: dict[str, Any]
    autoconfig_port: PortState
    autoconfig_kubelet: dict[str, Any]
    pools: tuple[PoolState, ...]
    labels: dict[str, str]
    deprecated: dict[str, Any]  # mirrors GKE still returns; reported, never trusted

    @property
    def path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/clusters/{self.name}"

    def levels(self) -> list[tuple[str, PortState]]:
        """Every level whose setting decides the port on this cluster's nodes, with its state.

        Standard: the cluster default and every pool; NAP's auto-config only when set explicitly (unset, new
        auto-provisioned pools inherit the cluster default, as the seed says). Autopilot: the auto-config.
        """
        if self.mode is Mode.AUTOPILOT:
            return [(Level.AUTO_CONFIG.value, self.autoconfig_port)]
        out = [(Level.CLUSTER_DEFAULT.value, self.default_port)]
        if self.nap and self.autoconfig_port is not PortState.UNSET:
            out.append((Level.AUTO_CONFIG.value, self.autoconfig_port))
        out.extend((f"{Level.NODE_POOL.value}/{p.name}", p.port) for p in self.pools)
        return out

    @property
    def compliant(self) -> bool:
        return all(state is PortState.DISABLED for _, state in self.levels())

    def pool(self, name: str) -> PoolState:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(f"{self.path} has no node pool {name!r}")


def _enum_name(value: Any) -> str:
    return getattr(value, "name", str(value))


def cluster_state(project: str, msg: container_v1.Cluster) -> ClusterState:
    autopilot = bool(msg.autopilot.enabled)
    defaults = msg.node_pool_defaults.node_config_defaults
    default_kubelet = defaults.node_kubelet_config if "node_kubelet_config" in defaults else None
    auto = msg.node_pool_auto_config
    auto_kubelet = auto.node_kubelet_config if "node_kubelet_config" in auto else None
    pools = tuple(
        PoolState(
            name=p.name,
            version=p.version,
            status=_enum_name(p.status),
            autoprovisioned=bool(p.autoscaling.autoprovisioned),
            port=port_state(p.config.kubelet_config if "kubelet_config" in p.config else None),
            kubelet=kubelet_dict(p.config.kubelet_config) if "kubelet_config" in p.config else {},
            node_count=p.initial_node_count,
        )
        for p in msg.node_pools
    )
    nap_defaults = msg.autoscaling.autoprovisioning_node_pool_defaults
    deprecated = {
        "node_config.kubelet_config": str(
            port_state(msg.node_config.kubelet_config if "kubelet_config" in msg.node_config else None)
        ),
        "autoscaling.autoprovisioning_node_pool_defaults": str(
            PortState.UNSET
            if PORT_FIELD not in nap_defaults
            else (PortState.ENABLED if getattr(nap_defaults, PORT_FIELD) else PortState.DISABLED)
        ),
    }
    return ClusterState(
        project=project,
        location=msg.location or msg.zone,
        name=msg.name,
        mode=Mode.AUTOPILOT if autopilot else Mode.STANDARD,
        status=_enum_name(msg.status),
        version=msg.current_master_version,
        release_channel=_enum_name(msg.release_channel.channel),
        nap=bool(msg.autoscaling.enable_node_autoprovisioning),
        endpoint=msg.endpoint,
        ca_certificate=msg.master_auth.cluster_ca_certificate,
        default_port=port_state(default_kubelet),
        default_kubelet=kubelet_dict(default_kubelet),
        autoconfig_port=port_state(auto_kubelet),
        autoconfig_kubelet=kubelet_dict(auto_kubelet),
        pools=pools,
        labels=dict(msg.resource_labels),
        deprecated=deprecated,
    )
