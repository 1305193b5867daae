"""The usage scan and its verdicts against the simulator: every scenario yields the right verdict and evidence."""

from __future__ import annotations

import pytest

from tasks.usage import kube
from tasks.usage.scan import Scanner, Verdict, gate_decision
from tests.integration.helpers import by_name, inventory, path, runtime

FAST = {
    "window_seconds": 0.6,
    "request_timeout_seconds": 2,
    "probe_start_timeout_seconds": 5,
    "probe_log_interval_seconds": 1,
}

FLEET = {
    "organization": "222222222222",
    "projects": [
        {
            "id": "scan-proj",
            "clusters": [
                {"name": "clean", "pools": [{"name": "a", "nodes": 2}, {"name": "b", "nodes": 1}]},
                {
                    "name": "busy",
                    "agents": ["datadog"],
                    "pools": [{"name": "a", "usage": "in_use", "rate_per_minute": 600}, {"name": "b"}],
                },
                {"name": "past", "agents": ["fluent-bit"], "pools": [{"name": "a", "usage": "used_before"}]},
                {"name": "ap-clean", "mode": "autopilot"},
                {
                    "name": "ap-busy",
                    "mode": "autopilot",
                    "agents": ["curl"],
                    "pools": [{"name": "default-pool", "usage": "in_use", "rate_per_minute": 600}],
                },
                {"name": "ap-empty", "mode": "autopilot", "workloads": False},
                {"name": "ap-stuck", "mode": "autopilot"},
                {"name": "hangs", "pools": [{"name": "a"}, {"name": "b"}]},
                {"name": "denied"},
                {"name": "bad-ca"},
                {
                    "name": "agents",
                    "agents": ["telegraf", "metrics-server", "heapster", "prometheus", "signalfx"],
                },
            ],
        }
    ],
    "faults": {
        "node_read_timeouts": [path("scan-proj", "hangs") + "/b"],
        "forbidden_node_proxy": [path("scan-proj", "denied")],
        "wrong_ca": [path("scan-proj", "bad-ca")],
        "probe_pods_never_start": [path("scan-proj", "ap-stuck")],
    },
}


def _scan(make_sim, write_config, names=None, **scan):
    sim = make_sim(FLEET, time_scale=0.01)
    cfg = write_config(sim, scan={**FAST, **scan})
    recs = by_name(inventory(cfg))
    targets = [recs[n] for n in (names or recs)]
    rt = runtime(cfg)
    try:
        return sim, rt, Scanner(rt).scan(targets)
    finally:
        rt.close()


def test_verdicts_with_evidence(make_sim, write_config) -> None:
    sim, rt, results = _scan(make_sim, write_config)
    v = {p.rsplit("/", 1)[1]: r for p, r in results.items()}

    assert v["clean"].verdict is Verdict.CLEAR and v["clean"].nodes_scanned == 3 and not v["clean"].evidence
    assert gate_decision(v["clean"], rt.config.gate).passes

    busy = v["busy"]
    assert busy.verdict is Verdict.IN_USE
    rising = [e for e in busy.evidence if e["increase"] > 0]
    assert rising and all(e["pool"] == "a" for e in rising)
    assert {e["path"] for e in rising} == {"metrics", "stats", "pods"}
    assert busy.window_seconds >= 0.6
    decision = gate_decision(busy, rt.config.gate)
    assert not decision.passes and "rose during the window" in decision.reason
    assert any(c["agent"] == "datadog" for c in busy.culprits)

    past = v["past"]
    assert past.verdict is Verdict.USED_BEFORE
    assert all(e["increase"] == 0 and e["count"] > 0 for e in past.evidence)
    assert not gate_decision(past, rt.config.gate).passes
    assert any(c["agent"] == "fluent-bit" for c in past.culprits)

    assert v["ap-clean"].verdict is Verdict.CLEAR and v["ap-clean"].nodes_scanned >= 1
    assert v["ap-busy"].verdict is Verdict.IN_USE
    assert (
        v["ap-empty"].verdict is Verdict.INCONCLUSIVE
        and "empty Autopilot cluster" in v["ap-empty"].reasons[0]
    )
    assert v["ap-stuck"].verdict is Verdict.INCONCLUSIVE and "did not start" in v["ap-stuck"].reasons[0]

    assert v["hangs"].verdict is Verdict.INCONCLUSIVE
    assert any("timed out" in r for r in v["hangs"].reasons)
    assert v["denied"].verdict is Verdict.INCONCLUSIVE
    assert any("container.nodes.proxy" in r for r in v["denied"].reasons)
    assert v["bad-ca"].verdict is Verdict.INCONCLUSIVE
    assert any("TLS verification failed" in r for r in v["bad-ca"].reasons)

    agents = {c["agent"] for c in v["agents"].culprits}
    assert {"telegraf", "metrics-server", "heapster", "prometheus", "splunk-signalfx"} <= agents
    assert all(c["advice"] for c in v["agents"].culprits)


def test_probe_leaves_nothing_behind(make_sim, write_config) -> None:
    sim, _, results = _scan(make_sim, write_config, names=["ap-clean", "ap-busy", "ap-stuck"])
    created = [e for e in sim.fleet.journal if e.method == "k8s.create"]
    deleted = {e.target for e in sim.fleet.journal if e.method == "k8s.delete"}
    assert created, "the probe created its objects"
    kinds = {e.target.split("/")[6] for e in created}
    assert {"Namespace", "ClusterRole", "ClusterRoleBinding"} <= kinds
    cluster_scoped = [
        e.target
        for e in created
        if e.target.split("/")[6] in ("Namespace", "ClusterRole", "ClusterRoleBinding")
    ]
    assert set(cluster_scoped) <= deleted
    for path_, result in results.items():
        assert not result.leftovers, path_
        store = sim.fleet.clusters[path_].kube
        # A namespace being finalized (Terminating) has been deleted: Kubernetes removes it and its contents shortly.
        terminating = {
            o["metadata"]["name"]
            for o in store.all_objects("namespaces")
            if o["metadata"].get("deletionTimestamp")
        }
        for resource in (
            "namespaces",
            "clusterroles",
            "clusterrolebindings",
            "serviceaccounts",
            "daemonsets",
            "pods",
        ):
            left = [
                o
                for o in store.all_objects(resource)
                if "portcullis-probe" in o["metadata"]["name"]
                and not o["metadata"].get("deletionTimestamp")
                and o["metadata"].get("namespace") not in terminating
            ]
            assert not left, (path_, resource)


def test_gate_overrides_and_used_before(make_sim, write_config) -> None:
    sim, _, results = _scan(make_sim, write_config, names=["past", "busy"])
    from config.schema import Gate, Override

    past = results[path("scan-proj", "past")]
    assert gate_decision(past, Gate(allow_used_before=True)).passes
    busy = results[path("scan-proj", "busy")]
    assert not gate_decision(busy, Gate(allow_used_before=True)).passes
    override = Gate(overrides=[Override(cluster=busy.cluster, reason="datadog switched to 10250 in PR 42")])
    decision = gate_decision(busy, override)
    assert decision.passes and decision.override == "datadog switched to 10250 in PR 42"


EARLY_FLEET = {
    "organization": "333333333333",
    "projects": [
        {
            "id": "early-proj",
            "clusters": [
                *({"name": f"s{i}", "pools": [{"name": "a", "nodes": 1}]} for i in range(6)),
                {"name": "slow", "pools": [{"name": "a", "nodes": 1}]},
                {"name": "ap", "mode": "autopilot"},
            ],
        }
    ],
    "faults": {"node_read_timeouts": [path("early-proj", "slow")]},
}


def test_each_cluster_is_reported_as_soon_as_its_readings_are_in(make_sim, write_config) -> None:
    """on_done gets a Standard cluster's final verdict while other clusters still wait for their second reading."""
    sim = make_sim(EARLY_FLEET, time_scale=0.01)
    cfg = write_config(sim, scan={**FAST, "concurrency": 2, "request_timeout_seconds": 3})
    targets = list(by_name(inventory(cfg)).values())
    nodes = {
        p: list(sim.fleet.clusters[p].all_nodes()) for p in (r.path for r in targets) if not p.endswith("/ap")
    }

    def reads_so_far() -> dict[str, int]:
        with sim.fleet.lock:
            return {p: min(n.readwrite_reads for n in ns) for p, ns in nodes.items()}

    reported: list[tuple[str, dict[str, int], object]] = []

    def on_done(result) -> None:  # noqa: ANN001
        reported.append((result.cluster, reads_so_far(), result))

    rt = runtime(cfg)
    try:
        results = Scanner(rt).scan(targets, on_done=on_done)
    finally:
        rt.close()

    # The return value is unchanged: every cluster once, and the very objects on_done was given.
    assert sorted(results) == sorted(r.path for r in targets)
    assert sorted(c for c, _, _ in reported) == sorted(results)
    assert all(results[c] is r for c, _, r in reported)

    standard = [(c, reads, r) for c, reads, r in reported if r.mode == "standard"]
    order = [c.rsplit("/", 1)[1] for c, _, _ in standard]
    first_path, reads_then, first = standard[0]
    assert first.verdict is Verdict.CLEAR and first.nodes_scanned == 1 and first.window_seconds >= 0.6
    # Reported with both readings taken on its node, while other clusters had had only their first.
    assert reads_then[first_path] >= 2
    clean = {path("early-proj", f"s{i}") for i in range(6)}
    waiting = [p for p, n in reads_then.items() if n < 2 and p in clean and p != first_path]
    assert waiting, reads_then
    # A hanging node holds back only its own cluster: every clean cluster is reported before it.
    assert order.index("slow") > max(order.index(f"s{i}") for i in range(6))
    slow = results[path("early-proj", "slow")]
    assert slow.verdict is Verdict.INCONCLUSIVE and any("timed out" in r for r in slow.reasons)
    assert results[path("early-proj", "ap")].verdict is Verdict.CLEAR


@pytest.mark.parametrize("compressed", [True, False])
def test_node_reads_share_one_connection_compressed_or_not(make_sim, write_config, compressed) -> None:
    """read_metrics stops after the family but leaves each connection ready for the next read (gzip or plain)."""
    sim = make_sim(FLEET, time_scale=0.01)
    sim.kube.compress_metrics = compressed
    cfg = write_config(sim, scan=FAST)
    rec = by_name(inventory(cfg, only=[path("scan-proj", "busy")]))["busy"]
    rt = runtime(cfg)
    try:
        api = rt.clients.kube(rec.state.endpoint, rec.state.ca_certificate)
        nodes = kube.list_nodes(api, 5)
        before = sim.kube.connections_accepted
        first, second = ([kube.read_metrics(api, n.name, 5, 64 * 1024 * 1024) for n in nodes] for _ in "12")
        connections = sim.kube.connections_accepted - before
    finally:
        rt.close()
    assert all(r.conclusive for r in first + second), first + second
    for node, a, b in zip(nodes, first, second, strict=True):
        if node.pool == "a":  # in use: the read-only counters rise between the readings
            assert 0 < a.readonly_total < b.readonly_total
        else:
            assert a.readonly_total == b.readonly_total == 0
    assert {n.pool for n in nodes} == {"a", "b"}
    assert connections == 0, "every read on the connection that listed the nodes"
