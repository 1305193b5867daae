"""Facts read from the raw protobuf: the same answers as the general (proto-plus, JSON) way, for any message."""

from __future__ import annotations

import json

import pytest
from google.cloud import container_v1
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.inventory.state import PortState, cluster_state, kubelet_dict, kubelet_from_dict, port_state

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
TEXT = st.text(max_size=12)

# Every field kind NodeKubeletConfig has: plain scalars, int64 (text in JSON), a BoolValue wrapper, a repeated
# string, optional scalars (presence) and nested messages (the fast path hands those to the general way).
KUBELET_FIELDS = {
    "cpu_manager_policy": TEXT,
    "cpu_cfs_quota": st.booleans(),
    "cpu_cfs_quota_period": TEXT,
    "pod_pids_limit": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "insecure_kubelet_readonly_port_enabled": st.booleans(),
    "image_gc_low_threshold_percent": INT32,
    "image_minimum_gc_age": TEXT,
    "container_log_max_files": INT32,
    "allowed_unsafe_sysctls": st.lists(TEXT, max_size=3),
    "single_process_oom_kill": st.booleans(),
    "shutdown_grace_period_seconds": INT32,
    "topology_manager": st.builds(lambda p: {"policy": p}, TEXT),
    "eviction_soft": st.builds(lambda m: {"memory_available": m}, TEXT),
}


def kubelets() -> st.SearchStrategy[container_v1.NodeKubeletConfig]:
    return st.fixed_dictionaries({}, optional=KUBELET_FIELDS).map(
        lambda d: container_v1.NodeKubeletConfig(**d)
    )


def general(kubelet: container_v1.NodeKubeletConfig) -> dict:
    """The way kubelet configs were read before the fast path (proto-plus to_json, parsed back)."""
    text = container_v1.NodeKubeletConfig.to_json(
        kubelet, preserving_proto_field_name=True, indent=None, always_print_fields_with_no_presence=False
    )
    return json.loads(text)


@settings(max_examples=400)
@given(kubelets())
def test_kubelet_dict_is_the_json_of_the_message(kubelet: container_v1.NodeKubeletConfig) -> None:
    want = general(kubelet)
    got = kubelet_dict(container_v1.NodeKubeletConfig.pb(kubelet))
    assert got == want
    assert list(got) == list(want), "same field order as the JSON"
    assert kubelet_dict(kubelet) == want, "a proto-plus message reads the same"
    assert kubelet_from_dict(got) == kubelet, "what is sent back is the message read"


def test_port_state_reads_presence() -> None:
    assert port_state(None) is PortState.UNSET
    assert port_state(container_v1.NodeKubeletConfig(pod_pids_limit=5)) is PortState.UNSET
    off = container_v1.NodeKubeletConfig(insecure_kubelet_readonly_port_enabled=False)
    assert port_state(off) is PortState.DISABLED
    assert port_state(container_v1.NodeKubeletConfig.pb(off)) is PortState.DISABLED
    assert port_state(container_v1.NodeKubeletConfig(insecure_kubelet_readonly_port_enabled=True)) is (
        PortState.ENABLED
    )


@pytest.mark.filterwarnings(
    "ignore:Unrecognized .* enum value:UserWarning"
)  # proto-plus, on numbers 99 and 42
@settings(max_examples=150)
@given(
    autopilot=st.booleans(),
    nap=st.booleans(),
    default=st.none() | kubelets(),
    auto=st.none() | kubelets(),
    pools=st.lists(st.tuples(st.none() | kubelets(), st.sampled_from([0, 2, 5, 99])), max_size=3),
    status=st.sampled_from([0, 2, 3, 99]),
    channel=st.sampled_from([0, 1, 3, 42]),
    deprecated=st.none() | st.booleans(),
)
def test_cluster_state_from_raw_and_proto_plus_agree(
    autopilot, nap, default, auto, pools, status, channel, deprecated
) -> None:
    msg = container_v1.Cluster(
        name="c1",
        location="us-central1",
        current_master_version="1.30.5-gke.1014001",
        endpoint="10.0.0.1",
        autopilot={"enabled": autopilot},
        autoscaling={"enable_node_autoprovisioning": nap},
        resource_labels={"env": "dev", "team": "x"},
    )
    pb = container_v1.Cluster.pb(msg)
    pb.status = status  # numbers this client has no name for too
    pb.release_channel.channel = channel
    if default is not None:
        pb.node_pool_defaults.node_config_defaults.node_kubelet_config.CopyFrom(
            container_v1.NodeKubeletConfig.pb(default)
        )
    if auto is not None:
        pb.node_pool_auto_config.node_kubelet_config.CopyFrom(container_v1.NodeKubeletConfig.pb(auto))
    if deprecated is not None:
        pb.node_config.kubelet_config.insecure_kubelet_readonly_port_enabled = deprecated
        pb.autoscaling.autoprovisioning_node_pool_defaults.insecure_kubelet_readonly_port_enabled = deprecated
    for i, (kubelet, pool_status) in enumerate(pools):
        pool = pb.node_pools.add(
            name=f"p{i}", version="1.29.1-gke.500", initial_node_count=i, status=pool_status
        )
        pool.autoscaling.autoprovisioned = i % 2 == 1
        if kubelet is not None:
            pool.config.kubelet_config.CopyFrom(container_v1.NodeKubeletConfig.pb(kubelet))

    raw = cluster_state("proj", pb)
    assert raw == cluster_state("proj", msg)
    # the same facts as reading every field through proto-plus
    assert raw.status == getattr(msg.status, "name", str(msg.status))
    assert raw.release_channel == getattr(
        msg.release_channel.channel, "name", str(msg.release_channel.channel)
    )
    assert raw.default_kubelet == (general(default) if default is not None else {})
    assert raw.autoconfig_kubelet == (general(auto) if auto is not None else {})
    assert raw.default_port is port_state(default)
    assert [p.kubelet for p in raw.pools] == [general(k) if k is not None else {} for k, _ in pools]
    assert [p.status for p in raw.pools] == [getattr(p.status, "name", str(p.status)) for p in msg.node_pools]
    expected_deprecated = str(
        PortState.UNSET if deprecated is None else port_state(msg.node_config.kubelet_config)
    )
    assert raw.deprecated == {
        "node_config.kubelet_config": expected_deprecated,
        "autoscaling.autoprovisioning_node_pool_defaults": expected_deprecated,
    }
    assert raw.compliant == all(state is PortState.DISABLED for _, state in raw.levels())
    assert raw.path == "projects/proj/locations/us-central1/clusters/c1"


def test_gc_paused_nests_and_restores() -> None:
    import gc
    import threading

    from tasks.inventory.state import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        inner_done = threading.Event()

        def other() -> None:
            with gc_paused():
                assert not gc.isenabled()
            inner_done.set()

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert inner_done.is_set() and not gc.isenabled(), "the other thread leaving does not turn it back on"
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled(), "a collector that was off stays off"
    finally:
        gc.enable()
