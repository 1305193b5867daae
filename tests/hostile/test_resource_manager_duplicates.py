"""Issue 8 §3: a Resource Manager that returns the same project twice, across pages and across folders.

A stand-in Projects/Folders gRPC service (real `resourcemanager_v3` messages, real client pagers) answers
ListProjects for the organization in two pages that both hold project B, and lists B again under a folder; the
Container API is gkesim's. The rollout must list, scan and change B's clusters once: every cluster once in the
report and, from the simulator's journal, each level changed exactly once.
"""

from __future__ import annotations

from collections import Counter
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.cloud import resourcemanager_v3 as rm

from tests.chaos.harness import MUTATIONS, portcullis_config

ORG = "777777777777"
A, B, C = "dup-alpha-0001", "dup-bravo-0002", "dup-charlie-0003"
FOLDER = "folders/4242"
FLEET = {
    "organization": ORG,
    "timings": {"update_cluster": 10, "update_node_pool": 10, "per_node": 5},
    "projects": [{"id": p, "clusters": [{"name": "c0"}, {"name": "c1"}]} for p in (A, B, C)],
}


def _project(pid: str, parent: str) -> rm.Project:
    return rm.Project(
        name=f"projects/{abs(hash(pid)) % 10**12}",
        project_id=pid,
        parent=parent,
        state=rm.Project.State.ACTIVE,
    )


class DuplicatingResourceManager:
    def __init__(self) -> None:
        self.pages: Counter[str] = Counter()

    def list_projects(self, raw: bytes, context: Any) -> bytes:
        req = rm.ListProjectsRequest.deserialize(raw)
        self.pages[req.parent] += 1
        if req.parent == f"organizations/{ORG}":
            if not req.page_token:
                resp = rm.ListProjectsResponse(
                    projects=[_project(A, req.parent), _project(B, req.parent)], next_page_token="page-2"
                )
            else:  # the second page repeats B (a listing that moved under us)
                resp = rm.ListProjectsResponse(projects=[_project(B, req.parent), _project(C, req.parent)])
        elif req.parent == FOLDER:
            resp = rm.ListProjectsResponse(projects=[_project(B, FOLDER)])  # and B once more, in a folder
        else:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"denied on {req.parent}")
        return rm.ListProjectsResponse.serialize(resp)

    def list_folders(self, raw: bytes, context: Any) -> bytes:
        req = rm.ListFoldersRequest.deserialize(raw)
        folders = [rm.Folder(name=FOLDER, parent=req.parent)] if req.parent == f"organizations/{ORG}" else []
        return rm.ListFoldersResponse.serialize(rm.ListFoldersResponse(folders=folders))

    def get_project(self, raw: bytes, context: Any) -> bytes:
        req = rm.GetProjectRequest.deserialize(raw)
        return rm.Project.serialize(_project(req.name.removeprefix("projects/"), f"organizations/{ORG}"))

    def serve(self) -> tuple[grpc.Server, str]:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))

        def h(fn: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(fn)

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "google.cloud.resourcemanager.v3.Projects",
                    {"ListProjects": h(self.list_projects), "GetProject": h(self.get_project)},
                ),
                grpc.method_handlers_generic_handler(
                    "google.cloud.resourcemanager.v3.Folders", {"ListFolders": h(self.list_folders)}
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return server, f"127.0.0.1:{port}"


@pytest.fixture
def duplicating(make_sim, tmp_path):
    sim = make_sim(FLEET, time_scale=0.002)
    fake = DuplicatingResourceManager()
    server, endpoint = fake.serve()
    config = portcullis_config(
        sim,
        tmp_path / "c.yaml",
        api={"resourcemanager_endpoint": endpoint},
        scope={"organization": ORG, "projects": [B]},  # B named a fourth time, directly
        rollout={"waves": [{"name": "all", "select": {"all": True}, "concurrency": 6}]},
    )
    yield sim, fake, config
    server.stop(grace=None)


def test_inventory_lists_a_repeated_project_once(duplicating) -> None:
    from tests.integration.helpers import inventory

    sim, fake, config = duplicating
    calls: Counter[tuple[str, str | None]] = Counter()
    check = sim.fleet.faults.check

    def counted(method: str, project: str | None = None) -> None:
        calls[(method, project)] += 1
        check(method, project)

    sim.fleet.faults.check = counted
    inv = inventory(config)
    assert fake.pages[f"organizations/{ORG}"] == 2 and fake.pages[FOLDER] == 1, "every page was read"
    paths = [r.path for r in inv.records]
    assert len(paths) == len(set(paths)) == 6 and not inv.findings
    assert {p: calls[("ListClusters", p)] for p in (A, B, C)} == {A: 1, B: 1, C: 1}, (
        "each project listed once"
    )


def test_rollout_changes_a_repeated_projects_clusters_once(duplicating, prefect_api) -> None:
    from flows.rollout import rollout_flow

    sim, _, config = duplicating
    report = rollout_flow(str(config), auto_approve=True)
    rows = [c["cluster"] for c in report["clusters"]]
    assert len(rows) == len(set(rows)) == 6
    assert {c["outcome"] for c in report["clusters"]} == {"verified"}
    targets = Counter(e.target for e in sim.fleet.journal if e.method in MUTATIONS)
    assert targets and set(targets.values()) == {1}, targets  # each level changed exactly once
    inv = sim.fleet.invariant_report()
    assert inv["duplicates"] == [] and inv["conflicts"] == []
