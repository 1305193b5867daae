"""Finding every project in scope and every cluster in those projects.

A project that cannot be read is an error in the report with what to do about it, never "no clusters";
one bad project never stops the others.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import grpc
from google.api_core import exceptions as gexc
from google.api_core import grpc_helpers
from google.api_core.gapic_v1 import routing_header
from google.cloud import container_v1, resourcemanager_v3
from google.cloud.container_v1.services.cluster_manager.transports.base import (
    DEFAULT_CLIENT_INFO as CONTAINER_CLIENT_INFO,
)

from config.schema import Scope
from tasks.access.clients import Clients
from tasks.access.retry import Caller
from tasks.inventory.state import ClusterState, cluster_state, gc_paused

T = TypeVar("T")


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
    return _read_pages(
        _project(p, chain)
        for p in caller.pages(clients.projects.list_projects, {"parent": parent}, "projects")
        if p.state == resourcemanager_v3.Project.State.ACTIVE
    )


def _list_folders(clients: Clients, caller: Caller, parent: str) -> list[str]:
    return _read_pages(
        f.name for f in caller.pages(clients.folders.list_folders, {"parent": parent}, "folders")
    )


class PartialList(Exception):
    """A paged list that failed part way: the error, and what the pages before it held."""

    def __init__(self, error: gexc.GoogleAPICallError, items: list[Any]) -> None:
        super().__init__(str(error))
        self.error = error
        self.items = items


def _read_pages(items: Iterable[T]) -> list[T]:
    read: list[T] = []
    try:
        read.extend(items)
    except gexc.GoogleAPICallError as exc:
        raise PartialList(exc, read) from exc
    return read


def _partial(future: Future[list[T]]) -> tuple[list[T], PartialList | None]:
    try:
        return future.result(), None
    except PartialList as exc:
        return exc.items, exc


def _node_from(parent: str, projects: Future[list[Project]], folders: Future[list[str]]) -> _Node:
    """A node as read; one that failed part way keeps what it read, and its finding says how much that was."""
    (found, projects_error), (subfolders, folders_error) = _partial(projects), _partial(folders)
    failed = projects_error or folders_error
    if failed is None:
        return _Node(found, subfolders)
    finding = finding_for(parent, failed.error, resource_manager=True)
    read = f"{len(found)} project(s) and {len(subfolders)} folder(s) were read under it before it failed"
    lost = ", ".join(what for what, err in (("projects", projects_error), ("folders", folders_error)) if err)
    message = f"{finding.message} ({read}; its other {lost} and their clusters are missing from this report)"
    return _Node(found, subfolders, replace(finding, message=message))


def _read_tree(
    clients: Clients,
    caller: Caller,
    root: str,
    pool: ThreadPoolExecutor,
    on_node: Callable[[_Node], Any] | None = None,
) -> dict[str, _Node]:
    """Every node under `root` (ListProjects is strongly consistent; search is not), read in parallel on `pool`.

    Both calls for a node are sent at once, and a node's folders are asked for as soon as the node is read, so
    the walk takes about one round trip per level of the tree instead of two per folder. `on_node` gets each node
    once its folders have been asked for (a node that failed part way with what was read of it).
    """
    nodes: dict[str, _Node] = {}
    chains = {root: (root,)}
    asked: dict[str, tuple[Future[list[Project]], Future[list[str]]]] = {}
    pending: dict[Future[Any], str] = {}

    def ask(parent: str) -> None:
        calls = (
            pool.submit(_list_projects, clients, caller, parent, chains[parent]),
            pool.submit(_list_folders, clients, caller, parent),
        )
        asked[parent] = calls
        pending.update((fut, parent) for fut in calls)

    ask(root)
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            parent = pending.pop(fut)
            projects, folders = asked[parent]
            if parent in nodes or not (projects.done() and folders.done()):
                continue
            node = _node_from(parent, projects, folders)
            nodes[parent] = node
            for folder in node.folders:
                if folder not in chains:  # each folder is read once
                    chains[folder] = (folder, *chains[parent])
                    ask(folder)
            if on_node is not None:
                on_node(node)
    return nodes


def _depth_first(root: str, nodes: dict[str, _Node], findings: list[Finding]) -> list[Project]:
    """The projects under `root` in the order a one-at-a-time walk finds them: a node's projects, then each
    folder's in turn. A node that could not be read (or only in part) is a finding; what was read of it is
    listed."""
    out: list[Project] = []
    seen: set[str] = set()

    def visit(parent: str) -> None:
        node = nodes[parent]
        seen.add(parent)
        if node.error:
            findings.append(node.error)
        out.extend(node.projects)
        for folder in node.folders:
            if folder not in seen and folder in nodes:
                visit(folder)

    visit(root)
    return out


def _roots(scope: Scope) -> list[str]:
    return ([f"organizations/{scope.organization}"] if scope.organization else []) + list(scope.folders)


def _wanted(scope: Scope) -> Callable[[Project], bool]:
    """The scope's exclusions and label filter."""
    excluded = set(scope.exclude_projects)
    labels = dict(scope.project_labels)
    return lambda p: p.project_id not in excluded and all(p.labels.get(k) == v for k, v in labels.items())


def _named_projects(
    scope: Scope, clients: Clients, caller: Caller, found: dict[str, Project], findings: list[Finding]
) -> list[Project]:
    """The scope's explicit project ids not found by the walk (GetProject each), added to `found` when ACTIVE."""
    added = []
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
            added.append(found[project_id])
    return added


def discover_projects(scope: Scope, clients: Clients, caller: Caller) -> tuple[list[Project], list[Finding]]:
    """Every ACTIVE project in scope, by id, deduplicated and filtered; the scope's problems as findings."""
    findings: list[Finding] = []
    found: dict[str, Project] = {}  # keyed by id: the same project reached twice is listed once
    concurrency = max(1, caller.limits.concurrency)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="walk") as pool:
        for root in _roots(scope):
            for project in _depth_first(root, _read_tree(clients, caller, root, pool), findings):
                found.setdefault(project.project_id, project)
    _named_projects(scope, clients, caller, found, findings)
    wanted = _wanted(scope)
    return sorted((p for p in found.values() if wanted(p)), key=lambda p: p.project_id), findings


@dataclass
class ProjectClusters:
    project: Project
    clusters: list[ClusterState]
    findings: list[Finding]


_LIST_CLUSTERS = "/google.container.v1.ClusterManager/ListClusters"
_raw_list_clusters_stubs: weakref.WeakKeyDictionary[Any, Callable[..., Any]] = weakref.WeakKeyDictionary()


def _raw_list_clusters(client: container_v1.ClusterManagerClient) -> Callable[..., Any]:
    """ListClusters on the client's own gRPC channel, answering the raw protobuf `ListClustersResponse`.

    What the generated method sends (the request, the routing and client headers, the timeout) and how it fails
    (`grpc_helpers.wrap_errors`, the same `GoogleAPICallError`s), without its per-call wrapping layers and the
    proto-plus request and response: ~0.2 ms of CPU less per call. A client without a gRPC channel (another
    transport) gets the generated method, read raw.
    """
    transport = client.transport
    stub = _raw_list_clusters_stubs.get(transport)
    if stub is not None:
        return stub
    channel = getattr(transport, "grpc_channel", None)
    if not isinstance(channel, grpc.Channel):

        def generated(parent: str, **kwargs: Any) -> Any:
            return container_v1.ListClustersResponse.pb(client.list_clusters(parent=parent, **kwargs))

        stub = generated
    else:
        request_type = container_v1.ListClustersRequest.pb()
        call = grpc_helpers.wrap_errors(
            channel.unary_unary(
                _LIST_CLUSTERS,
                request_serializer=request_type.SerializeToString,
                response_deserializer=container_v1.ListClustersResponse.pb().FromString,
            )
        )
        client_header = CONTAINER_CLIENT_INFO.to_grpc_metadata()

        def raw(parent: str, retry: object = None, timeout: float | None = None) -> Any:
            metadata = (client_header, routing_header.to_grpc_metadata((("parent", parent),)))
            return call(request_type(parent=parent), timeout=timeout, metadata=metadata)

        stub = raw
    _raw_list_clusters_stubs[transport] = stub
    return stub


def list_project_clusters(project: Project, clients: Clients, caller: Caller) -> ProjectClusters:
    scope = f"projects/{project.project_id}"
    try:
        raw = caller.call(_raw_list_clusters(clients.container), f"{scope}/locations/-")
    except gexc.GoogleAPICallError as exc:
        return ProjectClusters(project, [], [finding_for(scope, exc)])
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
    with (
        gc_paused(),
        ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="list-clusters") as pool,
    ):
        futures = [pool.submit(list_project_clusters, p, clients, caller) for p in projects]
        results = []
        for fut in futures:
            result = fut.result()
            if on_done:
                on_done(result)
            results.append(result)
    return results


def discover_clusters(
    scope: Scope,
    clients: Clients,
    caller: Caller,
    concurrency: int,
    on_projects: Callable[[int], Any] | None = None,
    on_done: Callable[[ProjectClusters], Any] | None = None,
) -> tuple[list[ProjectClusters], list[Finding]]:
    """`discover_projects` then `list_clusters`, as one pipeline: the same calls and the same answer (projects in
    id order, findings in the same order), but each project's clusters are asked for as soon as the node of the
    tree holding it has been read, while the rest of the tree is still being walked.

    The walk's calls go first (a pool of their own), so the tree is read at the same pace; every call still
    takes one of the caller's `limits.concurrency` slots. Once the walk is done, `on_projects(n)` gets the number
    of projects in scope, then `on_done(pc)` each project's clusters in project order, in the calling thread (as
    `list_clusters` calls it).
    """
    wanted = _wanted(scope)
    listing: dict[str, Future[ProjectClusters]] = {}
    findings: list[Finding] = []
    found: dict[str, Project] = {}
    workers = max(1, concurrency)
    with (
        gc_paused(),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="walk") as walk_pool,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="list-clusters") as list_pool,
    ):

        def start(projects: Iterable[Project]) -> None:
            for project in projects:
                if project.project_id not in listing and wanted(project):
                    listing[project.project_id] = list_pool.submit(
                        list_project_clusters, project, clients, caller
                    )

        for root in _roots(scope):
            nodes = _read_tree(clients, caller, root, walk_pool, lambda node: start(node.projects))
            for project in _depth_first(root, nodes, findings):
                found.setdefault(project.project_id, project)
        start(_named_projects(scope, clients, caller, found, findings))
        selected = sorted((p for p in found.values() if wanted(p)), key=lambda p: p.project_id)
        if on_projects is not None:
            on_projects(len(selected))
        listed = []
        for project in selected:
            # the project as the depth-first walk found it first (a project under two roots is listed once)
            result = replace(listing[project.project_id].result(), project=project)
            if on_done is not None:
                on_done(result)
            listed.append(result)
    return listed, findings
