"""google.cloud.resourcemanager.v3 Projects and Folders over gRPC, backed by a `Fleet`.

- `ListProjects` / `ListFolders`: direct children of `parent`, paged, `DELETE_REQUESTED` hidden unless
  `show_deleted`. An unknown or invisible parent answers PERMISSION_DENIED, as Google does.
- `SearchProjects`: every project the caller can see, filtered by a query, paged. Terms are
  `key:value` (or `key=value`), case-insensitive, `*` a wildcard; keys: `id`/`projectId`, `name`/`displayName`,
  `parent`, `parent.type`, `parent.id`, `state`/`lifecycleState`, `labels`, `labels.KEY`.
  Terms on different keys must all match; several terms on the same key match if any does. (The v3 reference
  says terms match "any of the fields"; real behaviour is unverified here, and `parent.type:folder
  parent.id:N` is only useful as a conjunction, so that is what is simulated.) With no `state` term both states
  are returned.
- `GetProject` takes `projects/NUMBER` or `projects/ID`; `GetFolder` `folders/N`. Unknown: PERMISSION_DENIED.

Page tokens are opaque and bound to the request they continue; a token from another request is INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import shlex
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.cloud import resourcemanager_v3 as rm
from google.protobuf import timestamp_pb2

from gkesim.errors import SimError
from gkesim.fleet import Fleet, SimFolder, SimProject
from gkesim.grpcutil import invalid, unary

PROJECTS_SERVICE = "google.cloud.resourcemanager.v3.Projects"
FOLDERS_SERVICE = "google.cloud.resourcemanager.v3.Folders"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_CREATED = timestamp_pb2.Timestamp(seconds=1_700_000_000)


def _denied(name: str) -> SimError:
    return SimError(
        grpc.StatusCode.PERMISSION_DENIED,
        f"Permission denied on resource '{name}' (or it may not exist).",
    )


def project_message(p: SimProject) -> Any:
    pb = rm.Project.pb()(
        name=f"projects/{p.number}",
        parent=p.parent,
        project_id=p.project_id,
        state=rm.Project.State[p.state].value,
        display_name=p.display_name,
        etag=f'W/"{p.number:x}"',
        labels=p.labels,
    )
    pb.create_time.CopyFrom(_CREATED)
    pb.update_time.CopyFrom(_CREATED)
    return pb


def folder_message(f: SimFolder) -> Any:
    pb = rm.Folder.pb()(
        name=f.name,
        parent=f.parent,
        display_name=f.display_name,
        state=rm.Folder.State.ACTIVE.value,
        etag=f'W/"{f.name.removeprefix("folders/")}"',
    )
    pb.create_time.CopyFrom(_CREATED)
    pb.update_time.CopyFrom(_CREATED)
    return pb


# ----- paging ---------------------------------------------------------------------------------------------


def _token_key(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def page(items: Sequence[Any], page_size: int, page_token: str, key: str) -> tuple[Sequence[Any], str]:
    """The slice of `items` this request asks for, and the token of the next page ("" at the end)."""
    if page_size < 0:
        raise invalid(f"page_size must not be negative, got {page_size}.")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    offset = 0
    if page_token:
        try:
            raw = base64.urlsafe_b64decode(page_token.encode()).decode()
            token_key, _, start = raw.partition(":")
            offset = int(start)
        except (ValueError, UnicodeDecodeError) as exc:
            raise invalid(f"Invalid page token {page_token!r}.") from exc
        if token_key != key or offset < 0:
            raise invalid(f"Invalid page token {page_token!r}: it belongs to a different request.")
    chunk = items[offset : offset + size]
    nxt = offset + size
    token = base64.urlsafe_b64encode(f"{key}:{nxt}".encode()).decode() if nxt < len(items) else ""
    return chunk, token


# ----- search query ---------------------------------------------------------------------------------------

_KEYS = {
    "id": "id",
    "projectid": "id",
    "name": "name",
    "displayname": "name",
    "parent": "parent",
    "parent.type": "parent.type",
    "parent.id": "parent.id",
    "state": "state",
    "lifecyclestate": "state",
    "labels": "labels",
}


def parse_query(query: str) -> dict[str, list[str]]:
    """`key:value` terms grouped by canonical key (labels.KEY keeps its key); values lower-cased."""
    try:
        words = shlex.split(query)
    except ValueError as exc:
        raise invalid(f"Invalid query {query!r}: {exc}.") from exc
    terms: dict[str, list[str]] = {}
    for word in words:
        sep = min((i for i in (word.find(":"), word.find("=")) if i > 0), default=-1)
        if sep < 0:
            raise invalid(f"Invalid query term {word!r}: expected key:value.")
        key, value = word[:sep].lower(), word[sep + 1 :].lower()
        if key.startswith("labels."):
            canonical = key
        elif key in _KEYS:
            canonical = _KEYS[key]
        else:
            raise invalid(f"Invalid query term {word!r}: unknown field {key!r}.")
        terms.setdefault(canonical, []).append(value)
    return terms


def _match(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern)


def _field_values(p: SimProject, key: str) -> list[str]:
    ptype, _, pid = p.parent.partition("/")
    if key == "id":
        return [p.project_id]
    if key == "name":
        return [p.display_name]
    if key == "parent":
        return [p.parent]
    if key == "parent.type":
        return [ptype.removesuffix("s")]  # "folders/1" -> "folder"
    if key == "parent.id":
        return [pid]
    if key == "state":
        return [p.state]
    if key == "labels":  # a label name or value
        return [*p.labels.keys(), *p.labels.values()]
    label = key.removeprefix("labels.")
    return [p.labels[label]] if label in p.labels else []


def project_matches(p: SimProject, terms: dict[str, list[str]]) -> bool:
    for key, patterns in terms.items():
        values = _field_values(p, key)
        if not any(_match(pat, v) for pat in patterns for v in values):
            return False
    return True


# ----- handlers ---------------------------------------------------------------------------------------------


def resourcemanager_handlers(fleet: Fleet) -> list[grpc.GenericRpcHandler]:
    faults = fleet.faults

    def before(method: str, page_token: str = "") -> None:
        faults.delay(method)  # never under the fleet lock
        faults.check_page(method, page_token)  # no project: the per-project quota is the Container API's

    def check_parent(parent: str) -> None:
        if not parent:
            raise invalid("parent must be set: folders/N or organizations/N.")
        if parent != fleet.organization and parent not in fleet.folders:
            raise _denied(parent)

    def find_project(name: str) -> SimProject:
        if not name.startswith("projects/"):
            raise invalid(f"Invalid name {name!r}: expected projects/NUMBER or projects/ID.")
        ref = name.removeprefix("projects/")
        proj = fleet.projects.get(ref)
        if proj is None and ref.isdigit():
            proj = next((p for p in fleet.projects.values() if p.number == int(ref)), None)
        if proj is None:
            raise _denied(name)
        return proj

    def get_project(request: rm.GetProjectRequest) -> bytes:
        before("GetProject")
        with fleet.lock:
            return project_message(find_project(request.name)).SerializeToString()

    def list_projects(request: rm.ListProjectsRequest) -> bytes:
        before("ListProjects", request.page_token)
        with fleet.lock:
            check_parent(request.parent)
            items = [
                p
                for p in fleet.projects.values()
                if p.parent == request.parent and (request.show_deleted or p.state == "ACTIVE")
            ]
            key = _token_key("ListProjects", request.parent, request.show_deleted)
            chunk, token = page(items, request.page_size, request.page_token, key)
            response = rm.ListProjectsResponse.pb()(next_page_token=token)
            response.projects.extend(project_message(p) for p in chunk)
        return response.SerializeToString()

    def search_projects(request: rm.SearchProjectsRequest) -> bytes:
        before("SearchProjects", request.page_token)
        terms = parse_query(request.query)
        with fleet.lock:
            items = [p for p in fleet.projects.values() if project_matches(p, terms)]
            key = _token_key("SearchProjects", request.query)
            chunk, token = page(items, request.page_size, request.page_token, key)
            response = rm.SearchProjectsResponse.pb()(next_page_token=token)
            response.projects.extend(project_message(p) for p in chunk)
        return response.SerializeToString()

    def get_folder(request: rm.GetFolderRequest) -> bytes:
        before("GetFolder")
        if not request.name.startswith("folders/"):
            raise invalid(f"Invalid name {request.name!r}: expected folders/N.")
        with fleet.lock:
            folder = fleet.folders.get(request.name)
            if folder is None:
                raise _denied(request.name)
            return folder_message(folder).SerializeToString()

    def list_folders(request: rm.ListFoldersRequest) -> bytes:
        before("ListFolders", request.page_token)
        with fleet.lock:
            check_parent(request.parent)
            items = [f for f in fleet.folders.values() if f.parent == request.parent]
            key = _token_key("ListFolders", request.parent, request.show_deleted)
            chunk, token = page(items, request.page_size, request.page_token, key)
            response = rm.ListFoldersResponse.pb()(next_page_token=token)
            response.folders.extend(folder_message(f) for f in chunk)
        return response.SerializeToString()

    def handlers(
        service: str, methods: dict[str, tuple[Any, Callable[[Any], bytes]]]
    ) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            service, {name: unary(name, cls.deserialize, fn) for name, (cls, fn) in methods.items()}
        )

    return [
        handlers(
            PROJECTS_SERVICE,
            {
                "GetProject": (rm.GetProjectRequest, get_project),
                "ListProjects": (rm.ListProjectsRequest, list_projects),
                "SearchProjects": (rm.SearchProjectsRequest, search_projects),
            },
        ),
        handlers(
            FOLDERS_SERVICE,
            {
                "GetFolder": (rm.GetFolderRequest, get_folder),
                "ListFolders": (rm.ListFoldersRequest, list_folders),
            },
        ),
    ]
