"""Inventory against the simulator: every port state, every gate reason, every scope error, through real clients."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tasks.inventory.discovery import discover_clusters, discover_projects, list_clusters
from tasks.inventory.records import Inventory, InventoryOutcome
from tasks.inventory.state import PortState
from tests.integration.helpers import by_name, inventory, path, runtime

FLEET = {
    "organization": "111111111111",
    "folders": [{"id": "10"}, {"id": "11", "parent": "folders/10"}, {"id": "12"}],
    "projects": [
        {
            "id": "alpha-prod",
            "parent": "folders/11",
            "labels": {"env": "prod"},
            "clusters": [
                {"name": "fresh"},
                {
                    "name": "done",
                    "default_port": "disabled",
                    "pools": [{"name": "p1", "port": "disabled", "kubelet": {"pod_pids_limit": 4096}}],
                },
                {
                    "name": "mixed",
                    "default_port": "enabled",
                    "pools": [
                        {"name": "a", "port": "disabled"},
                        {"name": "b", "port": "enabled"},
                        {"name": "c"},
                    ],
                },
                {"name": "old-cp", "version": "1.25.16-gke.1000"},
                {
                    "name": "old-pool",
                    "pools": [{"name": "new"}, {"name": "legacy", "version": "1.26.3-gke.1507"}],
                },
                {"name": "odd", "version": "1.x.3"},
                {"name": "busy", "status": "RECONCILING"},
                {"name": "ap", "mode": "autopilot"},
                {"name": "ap-done", "mode": "autopilot", "autoconfig_port": "disabled"},
                {
                    "name": "nap",
                    "nap": True,
                    "autoconfig_port": "enabled",
                    "default_port": "disabled",
                    "pools": [{"name": "p", "port": "disabled"}],
                },
            ],
        },
        {"id": "beta-dev", "parent": "folders/12", "labels": {"env": "dev"}, "clusters": [{"name": "dev1"}]},
        {"id": "gamma-denied", "parent": "folders/10", "clusters": [{"name": "hidden"}]},
        {"id": "delta-noapi", "parent": "folders/10"},
        {"id": "eps-zones", "clusters": [{"name": "z1"}, {"name": "z2", "location": "asia-east1-a"}]},
        {"id": "zeta-gone", "state": "DELETE_REQUESTED", "clusters": [{"name": "ghost"}]},
    ],
    "faults": {
        "permission_denied_projects": ["gamma-denied"],
        "api_disabled_projects": ["delta-noapi"],
        "missing_zones": {"eps-zones": ["asia-east1-a"]},
    },
}


def test_every_state_and_gate_reason(make_sim, write_config) -> None:
    sim = make_sim(FLEET)
    inv = inventory(write_config(sim))
    rec = by_name(inv)
    assert "ghost" not in rec, "DELETE_REQUESTED projects are not in scope"
    assert "z2" not in rec and "z1" in rec

    assert rec["fresh"].outcome is InventoryOutcome.NEEDS_DISABLE
    assert rec["fresh"].state.default_port is PortState.UNSET
    assert rec["done"].outcome is InventoryOutcome.COMPLIANT
    assert rec["done"].state.pools[0].kubelet == {
        "pod_pids_limit": "4096",
        "insecure_kubelet_readonly_port_enabled": False,
    }

    levels = dict(rec["mixed"].state.levels())
    assert levels == {
        "cluster_default": PortState.ENABLED,
        "node_pool/a": PortState.DISABLED,
        "node_pool/b": PortState.ENABLED,
        "node_pool/c": PortState.UNSET,
    }

    assert rec["old-cp"].outcome is InventoryOutcome.NOT_ELIGIBLE
    assert "upgrade the control plane to 1.26.4-gke.500" in rec["old-cp"].gate.reasons[0]
    assert rec["old-pool"].outcome is InventoryOutcome.PARTLY_ELIGIBLE
    assert rec["old-pool"].gate.blocked_pools == ("legacy",)
    assert (
        "node pool legacy: it runs 1.26.3-gke.1507, older than 1.26.4-gke.500"
        in rec["old-pool"].gate.reasons[0]
    )
    assert rec["odd"].outcome is InventoryOutcome.NOT_ELIGIBLE
    assert "could not be read" in rec["odd"].gate.reasons[0]
    assert rec["busy"].outcome is InventoryOutcome.SKIPPED
    assert "RECONCILING" in rec["busy"].gate.reasons[0]

    assert dict(rec["ap"].state.levels()) == {"auto_config": PortState.UNSET}
    assert rec["ap-done"].outcome is InventoryOutcome.COMPLIANT
    assert dict(rec["nap"].state.levels())["auto_config"] is PortState.ENABLED
    assert rec["nap"].outcome is InventoryOutcome.NEEDS_DISABLE
    assert rec["nap"].state.deprecated["autoscaling.autoprovisioning_node_pool_defaults"] == "enabled"

    kinds = {(f.scope, f.kind) for f in inv.findings}
    assert kinds == {
        ("projects/gamma-denied", "permission_denied"),
        ("projects/delta-noapi", "api_disabled"),
        ("projects/eps-zones", "missing_zones"),
    }
    zones = next(f for f in inv.findings if f.kind == "missing_zones")
    assert "asia-east1-a" in zones.message and "rerun later" in zones.action


def test_scope_filters(make_sim, write_config) -> None:
    sim = make_sim(FLEET)
    inv = inventory(write_config(sim, scope={"organization": None, "folders": ["folders/11"]}))
    assert {r.state.project for r in inv.records} == {"alpha-prod"}, "folders are walked recursively"
    inv = inventory(write_config(sim, scope={"project_labels": {"env": "dev"}}))
    assert [r.state.name for r in inv.records] == ["dev1"]
    inv = inventory(
        write_config(sim, scope={"exclude_projects": ["alpha-prod", "gamma-denied", "delta-noapi"]})
    )
    assert {r.state.project for r in inv.records} == {"beta-dev", "eps-zones"}
    assert [f.kind for f in inv.findings] == ["missing_zones"]
    inv = inventory(write_config(sim, scope={"organization": None, "projects": ["beta-dev", "nope-missing"]}))
    assert [r.state.name for r in inv.records] == ["dev1"]
    assert [(f.scope, f.kind) for f in inv.findings] == [("projects/nope-missing", "resourcemanager_denied")]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_pipelined_discovery_gives_the_two_step_answer(make_sim, write_config, concurrency: int) -> None:
    """discover_clusters (what the flow runs) answers as discover_projects then list_clusters, scope by scope."""
    sim = make_sim(FLEET)
    scopes = [
        {},  # the organization
        {"organization": None, "folders": ["folders/11", "folders/999"]},  # a folder that cannot be read
        {
            "folders": ["folders/10"],
            "projects": ["beta-dev", "nope-missing", "eps-zones"],
        },  # overlaps, named ids
        {"project_labels": {"env": "dev"}},
        {"exclude_projects": ["alpha-prod", "delta-noapi"]},
        {"organization": None, "projects": ["beta-dev", "nope-missing"]},  # named projects only
    ]
    for i, scope in enumerate(scopes):
        config = write_config(sim, f"c{i}.yaml", scope=scope, limits={"concurrency": concurrency})
        rt = runtime(config)
        try:
            projects, findings = discover_projects(rt.config.scope, rt.clients, rt.caller)
            want = list_clusters(projects, rt.clients, rt.caller, concurrency)
            found: list[int] = []
            done: list[object] = []
            got, got_findings = discover_clusters(
                rt.config.scope,
                rt.clients,
                rt.caller,
                concurrency,
                on_projects=found.append,
                on_done=done.append,
            )
        finally:
            rt.close()
        assert got_findings == findings, scope
        assert [pc.project for pc in got] == projects, scope
        assert got == want, scope
        assert found == [len(got)] and done == got, scope
        assert Inventory.assemble(got, got_findings).to_json() == Inventory.assemble(want, findings).to_json()
        if i == 1:
            assert [(f.scope, f.kind) for f in got_findings] == [("folders/999", "resourcemanager_denied")]
            assert {pc.project.project_id for pc in got} == {"alpha-prod"}
        if (
            i == 2
        ):  # a project under two roots, or also named, is listed once, as the first root's walk found it
            assert [pc.project.project_id for pc in got] == [
                "alpha-prod",
                "beta-dev",
                "delta-noapi",
                "eps-zones",
                "gamma-denied",
            ]
            assert got[0].project.ancestors == ("folders/11", "folders/10", "organizations/111111111111")
            assert [(f.scope, f.kind) for f in got_findings] == [
                ("projects/nope-missing", "resourcemanager_denied")
            ]


def test_list_clusters_errors_and_retries_as_the_generated_client(make_sim, write_config) -> None:
    """ListClusters goes straight to the channel: same answer, same errors (details too), retried the same way."""
    from google.api_core import exceptions as gexc
    from google.cloud import container_v1

    from tasks.access.retry import server_retry_delay
    from tasks.inventory.discovery import _raw_list_clusters

    sim = make_sim(FLEET)
    rt = runtime(write_config(sim))
    try:
        raw = _raw_list_clusters(rt.clients.container)
        for parent in ("projects/alpha-prod/locations/-", "projects/eps-zones/locations/-"):
            generated = rt.clients.container.list_clusters(parent=parent, retry=None)
            assert raw(parent, timeout=10) == container_v1.ListClustersResponse.pb(generated)
        for project, error in (
            ("gamma-denied", gexc.PermissionDenied),
            ("delta-noapi", gexc.PermissionDenied),
        ):
            with pytest.raises(error) as got:
                raw(f"projects/{project}/locations/-", timeout=10)
            with pytest.raises(error) as want:
                rt.clients.container.list_clusters(parent=f"projects/{project}/locations/-", retry=None)
            assert got.value.message == want.value.message and got.value.reason == want.value.reason
    finally:
        rt.close()

    quota = make_sim({**FLEET, "faults": {"quota_per_minute": 1}})
    rt = runtime(write_config(quota))
    try:
        raw = _raw_list_clusters(rt.clients.container)
        raw("projects/alpha-prod/locations/-", timeout=10)
        with pytest.raises(gexc.ResourceExhausted) as exhausted:
            raw("projects/alpha-prod/locations/-", timeout=10)
        assert 50 < server_retry_delay(exhausted.value) <= 60, "the server's RetryInfo is kept"
    finally:
        rt.close()

    flaky = make_sim(
        {
            **FLEET,
            "faults": {**FLEET["faults"], "seed": 3, "error_rates": {"ListClusters": {"UNAVAILABLE": 0.4}}},
        }
    )
    limits = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05, "max_attempts": 10}
    rt = runtime(write_config(flaky, "flaky.yaml", limits=limits))
    try:
        listed, findings = discover_clusters(rt.config.scope, rt.clients, rt.caller, 4)
        retries = rt.caller.retries
    finally:
        rt.close()
    assert flaky.fleet.faults.injected["ListClusters:UNAVAILABLE"] > 0
    assert retries == flaky.fleet.faults.injected["ListClusters:UNAVAILABLE"]
    assert sorted(c.name for pc in listed for c in pc.clusters) == sorted(
        r.state.name for r in inventory(write_config(sim)).records
    )
    assert sorted(f.kind for pc in listed for f in pc.findings) == [
        "api_disabled",
        "missing_zones",
        "permission_denied",
    ]
    assert findings == []


def test_cluster_filter_reports_unknown_paths(make_sim, write_config) -> None:
    sim = make_sim(FLEET)
    wanted = [path("alpha-prod", "fresh"), path("alpha-prod", "nope")]
    inv = inventory(write_config(sim), only=wanted)
    assert [r.path for r in inv.records] == [wanted[0]]
    assert any(f.scope == wanted[1] and f.kind == "not_found" for f in inv.findings)


def test_cli_inventory_report_and_exit_status(make_sim, write_config, prefect_api, tmp_path) -> None:
    sim = make_sim(FLEET)
    report = tmp_path / "inv.json"
    csv = tmp_path / "inv.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "inventory",
            "--config",
            str(write_config(sim)),
            "--report",
            str(report),
            "--csv",
            str(csv),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    data = json.loads(report.read_text())
    names = {c["name"]: c for c in data["clusters"]}
    assert names["done"]["outcome"] == "compliant" and names["fresh"]["outcome"] == "needs_disable"
    assert {e["kind"] for e in data["errors"]} == {"permission_denied", "api_disabled", "missing_zones"}
    assert data["summary"]["outcome"]["compliant"] == 2
    assert csv.read_text().splitlines()[0].startswith("project,location,name,mode")
    assert "gamma-denied" in proc.stdout and "what to do" in proc.stdout

    compliant = write_config(sim, name="ok.yaml", scope={"organization": None, "projects": ["alpha-prod"]})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "inventory",
            "--config",
            str(compliant),
            "--cluster",
            path("alpha-prod", "done"),
            "--cluster",
            path("alpha-prod", "ap-done"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_cli_bad_config_exits_2_before_any_call(make_sim, tmp_path) -> None:
    sim = make_sim(FLEET)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"scope: {{organization: '1'}}\napi: {{container_endpoint: '{sim.endpoints.grpc}', "
        "plaintext: true, anonymus: true}\n"
    )
    journal_before = len(sim.fleet.journal)
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "inventory", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "api.anonymus: unknown key" in proc.stderr
    assert len(sim.fleet.journal) == journal_before
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "inventory", "--config", str(bad), "--cluster", "web"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        proc.returncode == 2 and "--cluster must look like projects/P/locations/L/clusters/C" in proc.stderr
    )
