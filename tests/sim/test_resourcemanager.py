"""The simulated Resource Manager v3 (Projects, Folders), driven through the real google-cloud-resource-manager clients."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import resourcemanager_v3 as rm

from tests.sim.grpc_helpers import GrpcSim, grpc_sim

ORG = "organizations/123456789012"


def fleet_spec(**faults: Any) -> dict[str, Any]:
    team = [
        {
            "id": f"team-{i}",
            "number": 1000 + i,
            "parent": "folders/20",
            "labels": {"env": "prod" if i % 2 == 0 else "dev"},
            "state": "DELETE_REQUESTED" if i == 3 else "ACTIVE",
        }
        for i in range(7)
    ]
    return {
        "folders": [
            {"id": "10", "display_name": "payments"},
            {"id": "11", "display_name": "retail"},
            {"id": "20", "display_name": "payments-core", "parent": "folders/10"},
            {"id": "21", "display_name": "payments-edge", "parent": "folders/10"},
        ],
        "projects": [
            *team,
            {"id": "howl-unit", "number": 2000, "parent": "folders/10", "display_name": "Howl", "labels": {"env": "staging", "color": "red"}},
            {"id": "org-root", "number": 3000, "display_name": "Root project"},
            {"id": "edge-1", "number": 4000, "parent": "folders/21", "labels": {"env": "prod"}},
        ],
        "faults": faults,
    }  # fmt: skip


@pytest.fixture
def sim() -> GrpcSim:
    with grpc_sim(fleet_spec()) as s:
        yield s


def ids(projects: Any) -> list[str]:
    return [p.project_id for p in projects]


def test_get_project_by_number_and_by_id(sim: GrpcSim) -> None:
    by_number = sim.projects.get_project(name="projects/2000")
    assert by_number.project_id == "howl-unit" and by_number.name == "projects/2000"
    assert by_number.parent == "folders/10" and by_number.display_name == "Howl"
    assert by_number.state == rm.Project.State.ACTIVE and dict(by_number.labels) == {
        "env": "staging",
        "color": "red",
    }
    assert sim.projects.get_project(name="projects/howl-unit") == by_number
    assert sim.projects.get_project(name="projects/team-3").state == rm.Project.State.DELETE_REQUESTED
    assert sim.projects.get_project(name="projects/org-root").parent == ORG


def test_unknown_project_or_folder_is_permission_denied(sim: GrpcSim) -> None:
    with pytest.raises(exceptions.PermissionDenied):
        sim.projects.get_project(name="projects/nosuch")
    with pytest.raises(exceptions.PermissionDenied):
        sim.projects.get_project(name="projects/999999")
    with pytest.raises(exceptions.PermissionDenied):
        sim.folders.get_folder(name="folders/99")
    with pytest.raises(exceptions.PermissionDenied):
        list(sim.projects.list_projects(parent="folders/99"))
    with pytest.raises(exceptions.InvalidArgument):
        sim.projects.get_project(name="howl-unit")


def test_list_projects_direct_children_paged_hiding_deleted(sim: GrpcSim) -> None:
    pager = sim.projects.list_projects(request=rm.ListProjectsRequest(parent="folders/20", page_size=4))
    pages = list(pager.pages)
    assert [len(p.projects) for p in pages] == [4, 2]
    assert pages[0].next_page_token and not pages[1].next_page_token
    assert ids(p for page in pages for p in page.projects) == [
        "team-0",
        "team-1",
        "team-2",
        "team-4",
        "team-5",
        "team-6",
    ]

    with_deleted = sim.projects.list_projects(
        request=rm.ListProjectsRequest(parent="folders/20", show_deleted=True)
    )
    assert len(ids(with_deleted)) == 7 and "team-3" in ids(with_deleted)
    # direct children only: folders/10 holds howl-unit itself, not the team projects below folders/20
    assert ids(sim.projects.list_projects(parent="folders/10")) == ["howl-unit"]
    assert ids(sim.projects.list_projects(parent=ORG)) == ["org-root"]
    assert ids(sim.projects.list_projects(parent="folders/11")) == []


def test_default_page_size_pages_large_lists() -> None:
    many = {
        "projects": [{"id": f"p-{i:03d}", "parent": "folders/1"} for i in range(120)],
        "folders": [{"id": "1"}],
    }
    with grpc_sim(many) as sim:
        pages = list(sim.projects.list_projects(parent="folders/1").pages)
        assert [len(p.projects) for p in pages] == [50, 50, 20]
        assert ids(p for page in pages for p in page.projects) == [f"p-{i:03d}" for i in range(120)]
        assert len(list(sim.projects.search_projects(query=""))) == 120


def test_page_token_belongs_to_its_request(sim: GrpcSim) -> None:
    first = next(
        iter(
            sim.projects.list_projects(request=rm.ListProjectsRequest(parent="folders/20", page_size=2)).pages
        )
    )
    token = first.next_page_token
    with pytest.raises(exceptions.InvalidArgument):
        list(
            sim.projects.list_projects(request=rm.ListProjectsRequest(parent="folders/10", page_token=token))
        )
    with pytest.raises(exceptions.InvalidArgument):
        list(
            sim.projects.list_projects(
                request=rm.ListProjectsRequest(parent="folders/20", page_token="garbage!")
            )
        )
    with pytest.raises(exceptions.InvalidArgument):
        list(sim.projects.list_projects(request=rm.ListProjectsRequest(parent="")))


def test_list_folders_and_walk_the_tree(sim: GrpcSim) -> None:
    top = list(sim.folders.list_folders(parent=ORG))
    assert [(f.name, f.display_name) for f in top] == [("folders/10", "payments"), ("folders/11", "retail")]
    assert all(f.parent == ORG and f.state == rm.Folder.State.ACTIVE for f in top)
    pages = list(
        sim.folders.list_folders(request=rm.ListFoldersRequest(parent="folders/10", page_size=1)).pages
    )
    assert [[f.name for f in p.folders] for p in pages] == [["folders/20"], ["folders/21"]]
    assert sim.folders.get_folder(name="folders/21").parent == "folders/10"

    # a full walk with list_folders + list_projects finds every active project
    found, stack = [], [ORG]
    while stack:
        parent = stack.pop()
        found += ids(sim.projects.list_projects(parent=parent))
        stack += [f.name for f in sim.folders.list_folders(parent=parent)]
    assert sorted(found) == sorted(p.project_id for p in sim.fleet.projects.values() if p.state == "ACTIVE")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("parent:folders/21", ["edge-1"]),
        ("parent.type:folder parent.id:10", ["howl-unit"]),
        ("parent.type:organization", ["org-root"]),
        ("id:edge-1", ["edge-1"]),
        ("projectId:EDGE-1", ["edge-1"]),
        ("labels.env:staging", ["howl-unit"]),
        ("labels.color:*", ["howl-unit"]),
        ("labels:red", ["howl-unit"]),
        ("name:how*", ["howl-unit"]),
        ("NAME:HOWL", ["howl-unit"]),
        ("state:DELETE_REQUESTED", ["team-3"]),
        ("parent:folders/20 labels.env:prod state:ACTIVE", ["team-0", "team-2", "team-4", "team-6"]),
        ("id:edge-1 id:org-root", ["org-root", "edge-1"]),  # several values of one field: any
        ('name:"Root project"', ["org-root"]),
    ],
)
def test_search_projects_queries(sim: GrpcSim, query: str, expected: list[str]) -> None:
    assert ids(sim.projects.search_projects(query=query)) == expected


def test_search_projects_everything_paged_and_state_filter(sim: GrpcSim) -> None:
    everything = ids(sim.projects.search_projects(query=""))
    assert len(everything) == 10 and "team-3" in everything  # no state term: both states
    active = ids(sim.projects.search_projects(query="state:ACTIVE"))
    assert len(active) == 9 and "team-3" not in active
    pages = list(
        sim.projects.search_projects(
            request=rm.SearchProjectsRequest(query="state:active", page_size=4)
        ).pages
    )
    assert [len(p.projects) for p in pages] == [4, 4, 1]
    assert ids(p for page in pages for p in page.projects) == active


def test_search_projects_rejects_bad_queries(sim: GrpcSim) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        list(sim.projects.search_projects(query="color:red"))
    with pytest.raises(exceptions.InvalidArgument):
        list(sim.projects.search_projects(query="justaword"))


def test_injected_faults_apply_to_resource_manager() -> None:
    with grpc_sim(fleet_spec(error_rates={"SearchProjects": {"UNAVAILABLE": 1.0}})) as sim:
        with pytest.raises(exceptions.ServiceUnavailable):
            list(sim.projects.search_projects(query="", retry=None))
        assert ids(sim.projects.list_projects(parent="folders/21")) == ["edge-1"]
        assert sim.fleet.faults.injected["SearchProjects:UNAVAILABLE"] == 1
    with (
        grpc_sim(fleet_spec(error_rates={"*": {"PERMISSION_DENIED": 1.0}})) as sim,
        pytest.raises(exceptions.PermissionDenied),
    ):
        sim.folders.get_folder(name="folders/10")
