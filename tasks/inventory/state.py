"""Facts about a cluster, read from GKE's messages into plain frozen values. No decisions here.

The port field is proto3 `optional`: presence is the only way to tell an explicit `false` from "the version's
default", so every read goes through `port_state`, never through the field's value alone.
"""

from __future__ import annotations

import functools
import gc
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from google.cloud import container_v1
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

PORT_FIELD = "insecure_kubelet_readonly_port_enabled"


_gc_lock = threading.Lock()
_gc_holders = 0


@contextmanager
def gc_frozen() -> Iterator[Callable[[], None]]:
    """Objects built so far (a run's inventory, a wave's members and verdicts) kept out of the cyclic collector's
    full passes until the block ends; call the yielded function to add those built since (at a wave's start).

    A full pass scans every tracked object and stops every thread meanwhile: 0.3-0.5 s at 1,000 clusters, each
    time the heap has grown by a quarter, with every worker's operation poll and every scan read waiting on it.
    On the way out everything is handed back to the collector, so garbage frozen by mistake is collected later.
    """
    gc.freeze()
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a fleet's facts are built (reference counting still frees).

    An inventory builds hundreds of thousands of small objects that all survive (facts, records, report rows)
    and none of which form cycles. Each time the survivors grow by a quarter, CPython 3.11 scans the whole heap
    (~0.1-0.2 s each with Prefect and the Google clients loaded): a third of the CPU of listing 10,000 clusters.
    Nested and concurrent uses are counted; the collector is turned back on by the last one out, and only if it
    was on to begin with.
    """
    global _gc_holders
    with _gc_lock:
        if _gc_holders == 0 and not gc.isenabled():
            paused = False
        else:
            paused = True
            _gc_holders += 1
            gc.disable()
    try:
        yield
    finally:
        if paused:
            with _gc_lock:
                _gc_holders -= 1
                if _gc_holders == 0:
                    gc.enable()


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


_CLUSTER_DEFAULT, _AUTO_CONFIG, _NODE_POOL = (level.value for level in Level)


def port_state(kubelet: Any) -> PortState:
    """The port's state in a kubelet config (a proto-plus or a raw `NodeKubeletConfig` message, or None)."""
    if kubelet is None:
        return PortState.UNSET
    raw = kubelet._pb if isinstance(kubelet, container_v1.NodeKubeletConfig) else kubelet
    if not raw.HasField(PORT_FIELD):
        return PortState.UNSET
    return PortState.ENABLED if raw.insecure_kubelet_readonly_port_enabled else PortState.DISABLED


def _int64_text(value: int) -> str:
    return str(value)


def _wrapped(value: Any) -> Any:
    return value.value


# How each kind of set field of a NodeKubeletConfig reads in proto3 JSON (what `to_json` gives, parsed):
# bool, string and 32-bit integers as themselves, 64-bit integers as text, a wrapper message as its value.
# Anything else (a nested message such as eviction_soft) goes the slow, general way for the whole config.
_SCALAR_TYPES = {
    FieldDescriptor.TYPE_BOOL: None,
    FieldDescriptor.TYPE_STRING: None,
    FieldDescriptor.TYPE_INT32: None,
    FieldDescriptor.TYPE_UINT32: None,
    FieldDescriptor.TYPE_SINT32: None,
    FieldDescriptor.TYPE_INT64: _int64_text,
    FieldDescriptor.TYPE_UINT64: _int64_text,
    FieldDescriptor.TYPE_SINT64: _int64_text,
}
_WRAPPERS = frozenset(f"google.protobuf.{name}Value" for name in ("Bool", "String", "Int32", "UInt32"))


def _field_readers() -> dict[str, Any]:
    """Field name -> how to read its value as JSON data (None: as it is), for the fields the fast path knows."""
    readers: dict[str, Any] = {}
    for fd in container_v1.NodeKubeletConfig.pb().DESCRIPTOR.fields:
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if fd.message_type.full_name in _WRAPPERS and not fd.is_repeated:
                readers[fd.name] = _wrapped
        elif fd.type in _SCALAR_TYPES:
            reader = _SCALAR_TYPES[fd.type]
            readers[fd.name] = list if fd.is_repeated and reader is None else reader
            if fd.is_repeated and reader is not None:
                del readers[fd.name]  # repeated 64-bit integers: the general way
    return readers


_READERS = _field_readers()
_MISSING = object()


def kubelet_dict(kubelet: Any) -> dict[str, Any]:
    """The whole kubelet config as plain data (proto field names), presence preserved: unset fields are absent.

    Exactly what `NodeKubeletConfig.to_json(preserving_proto_field_name=True)` parsed back gives, read from the
    raw message's set fields (`ListFields`, in the same order); a field kind the fast path does not know falls
    back to that general conversion.
    """
    if kubelet is None:
        return {}
    raw = kubelet._pb if isinstance(kubelet, container_v1.NodeKubeletConfig) else kubelet
    out: dict[str, Any] = {}
    for fd, value in raw.ListFields():
        reader = _READERS.get(fd.name, _MISSING)
        if reader is _MISSING:
            return _kubelet_dict_general(raw)
        out[fd.name] = value if reader is None else reader(value)
    return out


def _kubelet_dict_general(raw: Any) -> dict[str, Any]:
    text = json_format.MessageToJson(
        raw, preserving_proto_field_name=True, indent=None, use_integers_for_enums=True
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

    @functools.cached_property
    def path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/clusters/{self.name}"

    def levels(self) -> list[tuple[str, PortState]]:
        """Every level whose setting decides the port on this cluster's nodes, with its state.

        Standard: the cluster default and every pool; NAP's auto-config only when set explicitly (unset, new
        auto-provisioned pools inherit the cluster default, as the seed says). Autopilot: the auto-config.
        """
        if self.mode is Mode.AUTOPILOT:
            return [(_AUTO_CONFIG, self.autoconfig_port)]
        out = [(_CLUSTER_DEFAULT, self.default_port)]
        if self.nap and self.autoconfig_port is not PortState.UNSET:
            out.append((_AUTO_CONFIG, self.autoconfig_port))
        out.extend((f"{_NODE_POOL}/{p.name}", p.port) for p in self.pools)
        return out

    @functools.cached_property
    def compliant(self) -> bool:
        """Every level of `levels()` reads explicit false."""
        if self.mode is Mode.AUTOPILOT:
            return self.autoconfig_port is PortState.DISABLED
        return (
            self.default_port is PortState.DISABLED
            and not (self.nap and self.autoconfig_port is PortState.ENABLED)
            and all(p.port is PortState.DISABLED for p in self.pools)
        )

    def pool(self, name: str) -> PoolState:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(f"{self.path} has no node pool {name!r}")


def _enum_names(enum: Any) -> dict[int, str]:
    return {member.value: member.name for member in enum}


_CLUSTER_STATUS = _enum_names(container_v1.Cluster.Status)
_POOL_STATUS = _enum_names(container_v1.NodePool.Status)
_CHANNEL = _enum_names(container_v1.ReleaseChannel.Channel)


def _name(names: dict[int, str], value: int) -> str:
    """An enum value's name; a value this client does not know is reported as its number."""
    return names.get(value) or str(value)


def _pool_state(p: Any) -> PoolState:
    config = p.config
    kubelet = config.kubelet_config if config.HasField("kubelet_config") else None
    return PoolState(
        name=p.name,
        version=p.version,
        status=_name(_POOL_STATUS, p.status),
        autoprovisioned=p.autoscaling.autoprovisioned,
        port=port_state(kubelet),
        kubelet=kubelet_dict(kubelet),
        node_count=p.initial_node_count,
    )


def cluster_state(project: str, msg: Any) -> ClusterState:
    """The facts of one cluster, from a `Cluster` message (proto-plus, or the raw protobuf it wraps).

    Read from the raw protobuf: proto-plus marshals every attribute read, which cost ~1 ms per cluster.
    """
    pb = msg._pb if isinstance(msg, container_v1.Cluster) else msg
    defaults = pb.node_pool_defaults.node_config_defaults
    default_kubelet = defaults.node_kubelet_config if defaults.HasField("node_kubelet_config") else None
    auto = pb.node_pool_auto_config
    auto_kubelet = auto.node_kubelet_config if auto.HasField("node_kubelet_config") else None
    node_config = pb.node_config
    autoscaling = pb.autoscaling
    nap_defaults = autoscaling.autoprovisioning_node_pool_defaults
    deprecated = {
        "node_config.kubelet_config": str(
            port_state(node_config.kubelet_config if node_config.HasField("kubelet_config") else None)
        ),
        "autoscaling.autoprovisioning_node_pool_defaults": str(
            PortState.UNSET
            if not nap_defaults.HasField(PORT_FIELD)
            else (
                PortState.ENABLED
                if nap_defaults.insecure_kubelet_readonly_port_enabled
                else PortState.DISABLED
            )
        ),
    }
    return ClusterState(
        project=project,
        location=pb.location or pb.zone,
        name=pb.name,
        mode=Mode.AUTOPILOT if pb.autopilot.enabled else Mode.STANDARD,
        status=_name(_CLUSTER_STATUS, pb.status),
        version=pb.current_master_version,
        release_channel=_name(_CHANNEL, pb.release_channel.channel),
        nap=autoscaling.enable_node_autoprovisioning,
        endpoint=pb.endpoint,
        ca_certificate=pb.master_auth.cluster_ca_certificate,
        default_port=port_state(default_kubelet),
        default_kubelet=kubelet_dict(default_kubelet),
        autoconfig_port=port_state(auto_kubelet),
        autoconfig_kubelet=kubelet_dict(auto_kubelet),
        pools=tuple(_pool_state(p) for p in pb.node_pools),
        labels=dict(pb.resource_labels),
        deprecated=deprecated,
    )
