"""Finding every project in scope and every cluster in those projects.

A project that cannot be read is an error in the report with what to do about it, never "no clusters";
one bad project never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import container_v1, resourcemanager_v3

from config.schema import Scope
from tasks.clients import Clients
from tasks.retry import Caller
from tasks.state import ClusterState, cluster_state


@dataclass(frozen=True)
class Project:
    project_id: str
    number: str
    parent: str
    labels: dict[str, str] = field(default_factory=dict)
    ancestors: tuple[str, ...] = ()  # folders and organization above it, nearest first


@dataclass(frozen=True)
class Finding:
    """A problem with part of the scope: who, what happened, and what the operator should do."""

    scope: str  # "projects/P", "folders/N", "organizations/N" or a cluster path
    kind: str  # permission_denied, api_disabled, missing_zones, not_found, unavailable, error
    message: str
    action: str

    def to_json(self) -> dict[str, str]:
        return {"scope": self.scope, "kind": self.kind, "message": self.message, "action": self.action}


ACTIONS = {
    "permission_denied": "grant the caller roles/container.clusterViewer (container.clusters.list) on the project, "
    "or list it under scope.exclude_projects",
    "api_disabled": "the Kubernetes Engine API is disabled in this project: enable container.googleapis.com if it "
    "should have clusters, or list it under scope.exclude_projects",
    "missing_zones": "these locations did not answer, so their clusters are unknown: rerun later",
    "resourcemanager_denied": "grant roles/browser (resourcemanager.folders.list, resourcemanager.projects.list/get) "
    "on this node of the hierarchy",
    "not_found": "check the name in scope",
    "unavailable": "the API did not answer after retries: rerun later",
    "error": "see the message",
}


def finding_for(scope: str, exc: BaseException, resource_manager: bool = False) -> Finding:
    """Turn an API error into a finding with the action that fixes it."""
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, gexc.PermissionDenied):
        if "has not been used" in message or "is disabled" in message or "SERVICE_DISABLED" in message:
            kind = "api_disabled"
        else:
            kind = "resourcemanager_denied" if resource_manager else "permission_denied"
    elif isinstance(exc, gexc.NotFound):
        kind = "not_found"
    elif isinstance(exc, gexc.ServiceUnavailable | gexc.DeadlineExceeded | gexc.ResourceExhausted):
        kind = "unavailable"
    else:
        kind = "error"
    return Finding(scope, kind, f"{type(exc).__name__}: {message}", ACTIONS[kind])


def _project(msg: resourcemanager_v3.Project, above: tuple[str, ...] = ()) -> Project:
    ancestors = above or (msg.parent,)
    return Project(
        msg.project_id, msg.name.removeprefix("projects/"), msg.parent, dict(msg.labels), ancestors
    )


@dataclass
class _Node:
    """One node of the hierarchy as read: its active projects and its folders, or the error reading it gave."""

    projects: list[Project] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    error: Finding | None = None


def _list_projects(clients: Clients, caller: Caller, parent: str, chain: tuple[str, ...]) -> list[Project]:
    pager = caller.call(clients.projects.list_projects, request={"parent": parent})
    return [_project(p, chain) for p in pager if p.state == resourcemanager_v3.Project.State.ACTIVE]


def _list_folders(clients: Clients, caller: Caller, parent: str) -> list[str]:
    return [f.name for f in caller.call(clients.folders.list_folders, request={"parent": parent})]


def _walk(
    clients: Clients, caller: Caller, root: str, findings: list[Finding], concurrency: int
) -> list[Project]:
    """Projects under `root`, recursing into folders, in depth-first order (a parent's projects, then each folder's).

    ListProjects and ListFolders (strongly consistent; search is not) are read one level of the tree at a time:
    both calls for every parent of a level at once, `concurrency` at a time (the caller's bound holds too), so
    the walk takes about one round trip per level instead of two per folder. The answer is then put together
    depth first, as a one-at-a-time walk gives it; a parent whose ListProjects or ListFolders fails is a
    finding, and nothing under it is listed.
    """
    nodes: dict[str, _Node] = {}
    chains = {root: (root,)}
    level = [root]
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="walk") as pool:
        while level:
            asked = [
                (
                    parent,
                    pool.submit(_list_projects, clients, caller, parent, chains[parent]),
                    pool.submit(_list_folders, clients, caller, parent),
                )
                for parent in level
            ]
            level = []
            for parent, projects, folders in asked:
                try:
                    node = _Node(projects.result(), folders.result())
                except gexc.GoogleAPICallError as exc:
                    node = _Node(error=finding_for(parent, exc, resource_manager=True))
                nodes[parent] = node
                for folder in node.folders:
                    if folder not in chains:  # each folder is read once
                        chains[folder] = (folder, *chains[parent])
                        level.append(folder)
    out: list[Project] = []
    done: set[str] = set()

    def visit(parent: str) -> None:
        node = nodes[parent]
        done.add(parent)
        if node.error:
            findings.append(node.error)
            return
        out.extend(node.projects)
        for folder in node.folders:
            if folder not in done and folder in nodes:
                visit(folder)

    visit(root)
    return out


def discover_projects(scope: Scope, clients: Clients, caller: Caller) -> tuple[list[Project], list[Finding]]:
    findings: list[Finding] = []
    found: dict[str, Project] = {}  # keyed by id: the same project reached twice is listed once
    roots = ([f"organizations/{scope.organization}"] if scope.organization else []) + list(scope.folders)
    for root in roots:
        for project in _walk(clients, caller, root, findings, caller.limits.concurrency):
            found.setdefault(project.project_id, project)
    for project_id in scope.projects:
        if project_id in found:
            continue
        try:
            msg = caller.call(clients.projects.get_project, name=f"projects/{project_id}")
        except gexc.GoogleAPICallError as exc:
            findings.append(finding_for(f"projects/{project_id}", exc, resource_manager=True))
            continue
        if msg.state == resourcemanager_v3.Project.State.ACTIVE:
            found[project_id] = _project(msg)
    selected = [
        p
        for p in found.values()
        if p.project_id not in scope.exclude_projects
        and all(p.labels.get(k) == v for k, v in scope.project_labels.items())
    ]
    return sorted(selected, key=lambda p: p.project_id), findings


@dataclass
class ProjectClusters:
    project: Project
    clusters: list[ClusterState]
    findings: list[Finding]


def list_project_clusters(project: Project, clients: Clients, caller: Caller) -> ProjectClusters:
    scope = f"projects/{project.project_id}"
    try:
        resp: container_v1.ListClustersResponse = caller.call(
            clients.container.list_clusters, parent=f"{scope}/locations/-"
        )
    except gexc.GoogleAPICallError as exc:
        return ProjectClusters(project, [], [finding_for(scope, exc)])
    raw = container_v1.ListClustersResponse.pb(resp)  # read raw: proto-plus would wrap every cluster again
    findings = []
    if raw.missing_zones:
        zones = ", ".join(raw.missing_zones)
        findings.append(
            Finding(scope, "missing_zones", f"locations did not answer: {zones}", ACTIONS["missing_zones"])
        )
    return ProjectClusters(project, [cluster_state(project.project_id, c) for c in raw.clusters], findings)


def list_clusters(
    projects: list[Project],
    clients: Clients,
    caller: Caller,
    concurrency: int,
    on_done: Callable[[ProjectClusters], Any] | None = None,
) -> list[ProjectClusters]:
    """Every project's clusters, `concurrency` projects at a time, in project order."""
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="list-clusters") as pool:
        futures = [pool.submit(list_project_clusters, p, clients, caller) for p in projects]
        results = []
        for fut in futures:
            result = fut.result()
            if on_done:
                on_done(result)
            results.append(result)
    return results


def matches_filter(path: str, wanted: Iterable[str] | None) -> bool:
    wanted = list(wanted or [])
    return not wanted or path in wanted
