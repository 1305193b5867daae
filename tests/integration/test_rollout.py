"""Disabling, verifying, rerunning and undoing against the simulator, judged from the simulator's own journal."""

from __future__ import annotations

import pytest
from google.cloud import container_v1

from tasks.change.apply import Applier, OperationSlots
from tasks.change.rollout import Outcome, disable_cluster
from tasks.usage.scan import GateDecision
from tests.integration.helpers import by_name, inventory, path, runtime

CLEAR = GateDecision(True, "clear (test)")
ROLLOUT = {"operation_poll_seconds": 0.05, "operation_timeout_seconds": 20, "operation_retries": 2}
P = "roll-proj"

FLEET = {
    "organization": "333333333333",
    "timings": {"update_cluster": 20, "update_node_pool": 20, "per_node": 10},
    "projects": [
        {
            "id": P,
            "clusters": [
                {
                    "name": "tuned",
                    "pools": [
                        {
                            "name": "a",
                            "kubelet": {
                                "cpu_manager_policy": "static",
                                "pod_pids_limit": 4096,
                                "cpu_cfs_quota": True,
                            },
                        },
                        {"name": "b", "kubelet": {"pod_pids_limit": 1024}, "nodes": 1},
                    ],
                },
                {"name": "ap", "mode": "autopilot"},
                {
                    "name": "nap",
                    "nap": True,
                    "autoconfig_port": "enabled",
                    "pools": [{"name": "p"}, {"name": "nap-auto", "autoprovisioned": True, "nodes": 1}],
                },
                {
                    "name": "mixed",
                    "pools": [{"name": "new"}, {"name": "legacy", "version": "1.25.10-gke.1200"}],
                },
                {"name": "flaky"},
                {"name": "stuck"},
                {"name": "plain"},
            ],
        }
    ],
    "faults": {"failing_operations": [path(P, "flaky")], "stuck_operations": [path(P, "stuck")]},
}


@pytest.fixture
def env(make_sim, write_config):
    sim = make_sim(FLEET, time_scale=0.005)

    def setup(**rollout):
        cfg = write_config(sim, rollout={**ROLLOUT, **rollout})
        rt = runtime(cfg)
        return (
            rt,
            Applier(rt, OperationSlots(rt.config.rollout), sleep=__import__("time").sleep),
            by_name(inventory(cfg)),
        )

    return sim, setup


def mutations(sim, cluster=None):
    return [
        e
        for e in sim.fleet.journal
        if e.method in ("UpdateCluster", "UpdateNodePool")
        and (cluster is None or e.target.startswith(cluster))
    ]


def test_disable_keeps_every_other_kubelet_setting(env) -> None:
    sim, setup = env
    rt, applier, recs = setup()
    run = disable_cluster(recs["tuned"], None, CLEAR, applier, "w1")
    assert run.outcome is Outcome.VERIFIED, run.reason
    assert [c["level"] for c in run.changes] == ["cluster_default", "node_pool/a", "node_pool/b"]
    assert all(c["status"] == "applied" and c["operation"] for c in run.changes)
    sent_a = run.changes[1]["sent"]
    assert sent_a == {
        "cpu_manager_policy": "static",
        "cpu_cfs_quota": True,
        "pod_pids_limit": "4096",
        "insecure_kubelet_readonly_port_enabled": False,
    }
    assert sim.fleet.lost_settings() == []
    pool_a = sim.fleet.clusters[path(P, "tuned")].pool("a")
    assert pool_a.config.kubelet_config.cpu_manager_policy == "static"
    assert pool_a.config.kubelet_config.pod_pids_limit == 4096
    assert {n["pool"] for n in run.verification["nodes"]} == {"a", "b"}
    assert all(n["read_only_port"] == 0 for n in run.verification["nodes"])
    report = sim.fleet.invariant_report()
    assert report["conflicts"] == [] and report["breakage"] == [] and report["duplicates"] == []


def test_rerun_changes_nothing(env) -> None:
    sim, setup = env
    rt, applier, recs = setup()
    assert disable_cluster(recs["plain"], None, CLEAR, applier, "w").outcome is Outcome.VERIFIED
    before = len(mutations(sim))
    again = disable_cluster(recs["plain"], None, CLEAR, applier, "w")
    assert again.outcome is Outcome.ALREADY_COMPLIANT and again.changes == []
    assert len(mutations(sim)) == before


def test_autopilot_uses_only_the_auto_config(env) -> None:
    sim, setup = env
    rt, applier, recs = setup()
    run = disable_cluster(recs["ap"], None, CLEAR, applier, "w")
    assert run.outcome is Outcome.VERIFIED, run.reason
    sent = mutations(sim, path(P, "ap"))
    assert len(sent) == 1 and list(sent[0].detail) == ["desired_node_pool_auto_config_kubelet_config"]


def test_nap_auto_config_left_alone_unless_asked(env) -> None:
    sim, setup = env
    rt, applier, recs = setup()
    run = disable_cluster(recs["nap"], None, CLEAR, applier, "w")
    assert run.outcome is Outcome.PARTIAL
    assert "NAP auto-config is explicitly enabled" in run.reason
    assert [c["level"] for c in run.changes] == ["cluster_default", "node_pool/p", "node_pool/nap-auto"]
    msg = sim.fleet.clusters[path(P, "nap")].msg
    assert msg.node_pool_auto_config.node_kubelet_config.insecure_kubelet_readonly_port_enabled is True

    rt2, applier2, recs2 = setup(set_nap_auto_config=True)
    run = disable_cluster(recs2["nap"], None, CLEAR, applier2, "w")
    assert run.outcome is Outcome.VERIFIED, run.reason
    assert [c["level"] for c in run.changes] == ["auto_config"]


def test_old_pools_are_left_alone_and_reported(env) -> None:
    sim, setup = env
    rt, applier, recs = setup()
    run = disable_cluster(recs["mixed"], None, CLEAR, applier, "w")
    assert run.outcome is Outcome.PARTIAL
    assert "node_pool/legacy" in run.reason and "1.26.4-gke.500" in run.reason
    assert not [e for e in mutations(sim) if e.target.endswith("/legacy")]


def test_failed_operation_is_retried(env) -> None:
    sim, setup = env
    rt, applier, recs = setup()
    run = disable_cluster(recs["flaky"], None, CLEAR, applier, "w")
    assert run.outcome is Outcome.VERIFIED, run.reason
    assert run.changes[0]["attempts"] == 2
    failed_ops = [
        o for o in sim.fleet.operations.values() if o.cluster == path(P, "flaky") and o.msg.error.code
    ]
    assert len(failed_ops) == 1


def test_stuck_operation_is_reported_in_flight(env) -> None:
    sim, setup = env
    rt, applier, recs = setup(operation_timeout_seconds=1.0)
    run = disable_cluster(recs["stuck"], None, CLEAR, applier, "w")
    assert run.outcome is Outcome.IN_FLIGHT
    assert run.changes[0]["operation"].startswith(f"projects/{P}/locations/us-central1/operations/")
    assert len(mutations(sim, path(P, "stuck"))) == 1, "nothing more is sent while the operation runs"


def test_dry_run_changes_nothing(env) -> None:
    sim, setup = env
    rt, applier, recs = setup()
    run = disable_cluster(recs["tuned"], None, CLEAR, applier, "w", dry_run=True)
    assert run.outcome is Outcome.DRY_RUN and len(run.changes) == 3
    assert mutations(sim) == []


def test_blocked_gate_changes_nothing(env) -> None:
    sim, setup = env
    rt, applier, recs = setup()
    run = disable_cluster(recs["plain"], None, GateDecision(False, "in_use: rose"), applier, "w")
    assert run.outcome is Outcome.BLOCKED and mutations(sim) == []


def test_waits_for_an_operation_already_running(env) -> None:
    sim, setup = env
    rt, applier, recs = setup()
    other = container_v1.UpdateNodePoolRequest(
        name=path(P, "plain") + "/nodePools/default-pool",
        kubelet_config=container_v1.NodeKubeletConfig(cpu_manager_policy="none"),
    )
    sim.fleet.update_node_pool(other)  # someone else's change, still running
    run = disable_cluster(recs["plain"], None, CLEAR, applier, "w")
    assert run.outcome is Outcome.VERIFIED, run.reason
    assert sim.fleet.invariants.conflicts == []
