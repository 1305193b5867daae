"""Paged reads under faults: every page of every list is retried like a single call, within the run's budget.

The simulator fails only the pages after the first (`faults.later_page_failures`): the generated pager fetches
those outside any retry, so without a retry per page a folder's later projects, or a cluster's later pods, are
lost. When a page still cannot be read, the report says what was read before it failed and that the inventory
is incomplete.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tasks.usage import kube
from tests.integration.helpers import inventory, runtime

# 120 projects under the organization (three pages of 50), 60 folders under it (two pages), one project each.
FLEET: dict[str, Any] = {
    "organization": "222222222222",
    "folders": [{"id": str(100 + i)} for i in range(60)],
    "projects": [
        {"id": f"org-proj-{i:03d}", "clusters": [{"name": f"c{i:03d}"}] if i % 10 == 0 else []}
        for i in range(120)
    ]
    + [
        {"id": f"fold-proj-{i:03d}", "parent": f"folders/{100 + i}", "clusters": [{"name": f"f{i:03d}"}]}
        for i in range(60)
    ],
}
FAST = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05}


def faulty(later_pages: dict[str, int]) -> dict[str, Any]:
    return {**FLEET, "faults": {"later_page_failures": later_pages}}


def test_transient_errors_on_later_pages_lose_no_project(make_sim, write_config) -> None:
    clean = inventory(write_config(make_sim(FLEET), "clean.yaml"))
    sim = make_sim(faulty({"ListProjects": 2, "ListFolders": 2}))
    inv = inventory(write_config(sim, limits=FAST))

    injected = sim.fleet.faults.injected
    assert injected["ListProjects:later-page"] == 2 * 2  # pages 2 and 3 of the organization, twice each
    assert injected["ListFolders:later-page"] == 2
    assert not inv.findings and inv.complete
    assert len(inv.records) == len(clean.records) == 12 + 60
    assert [r.path for r in inv.records] == [r.path for r in clean.records]


def test_a_page_that_never_answers_is_reported_with_what_was_read(
    make_sim, write_config, prefect_api, tmp_path
) -> None:
    sim = make_sim(faulty({"ListProjects": 100}))
    config = write_config(sim, limits={**FAST, "max_attempts": 3})
    report = tmp_path / "inv.json"
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "inventory", "--config", str(config), "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["summary"]["complete"] is False
    org = next(e for e in data["errors"] if e["scope"] == "organizations/222222222222")
    assert org["kind"] == "unavailable"
    assert "50 project(s) and 60 folder(s) were read under it before it failed" in org["message"]
    assert "its other projects and their clusters are missing from this report" in org["message"]
    # What was read is still listed: the first page's clusters, and every folder's (their first pages).
    names = {c["name"] for c in data["clusters"]}
    assert {f"c{i:03d}" for i in range(0, 50, 10)} <= names
    assert {f"f{i:03d}" for i in range(60)} <= names
    assert "c050" not in names
    assert "the inventory is incomplete" in proc.stdout


def test_kubernetes_lists_are_paged_and_each_page_retried(make_sim, write_config) -> None:
    fleet = {"projects": [{"id": "p", "clusters": [{"name": "c", "pools": [{"name": "a", "nodes": 3}]}]}]}
    sim = make_sim({**fleet, "faults": {"later_page_failures": {"KubeList": 2}}})
    rt = runtime(write_config(sim, limits=FAST))
    try:
        state = inventory(write_config(sim, "inv.yaml")).records[0].state
        api = rt.clients.kube(state.endpoint, state.ca_certificate)
        whole = kube.list_all(api, "Pod", 10)
        paged = kube.list_all(api, "Pod", 10, page=2, retry=lambda fn: rt.caller.retry(fn, kube.is_transient))
        retries = rt.caller.retries
    finally:
        rt.close()
    assert len(whole) > 4, "enough pods for several pages"
    assert [p["metadata"]["name"] for p in paged] == [p["metadata"]["name"] for p in whole]
    pages_after_first = (len(whole) + 1) // 2 - 1
    assert sim.fleet.faults.injected["KubeList:later-page"] == 2 * pages_after_first
    assert retries == 2 * pages_after_first


def test_kubernetes_list_without_retry_fails_on_a_later_page(make_sim, write_config) -> None:
    fleet = {"projects": [{"id": "p", "clusters": [{"name": "c", "pools": [{"name": "a", "nodes": 3}]}]}]}
    sim = make_sim({**fleet, "faults": {"later_page_failures": {"KubeList": 1}}})
    rt = runtime(write_config(sim))
    try:
        state = inventory(write_config(sim, "inv.yaml")).records[0].state
        api = rt.clients.kube(state.endpoint, state.ca_certificate)
        try:
            kube.list_all(api, "Pod", 10, page=2)
        except kube.ApiException as exc:
            assert exc.status == 503
        else:
            raise AssertionError("a later page's 503 was not raised")
    finally:
        rt.close()
