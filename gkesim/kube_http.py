"""The HTTP side of the Kubernetes API servers: the TLS listener, routing, watches and the node proxy."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from gkesim.errors import SimError
from gkesim.fleet import SimCluster, SimNode
from gkesim.kube_discovery import _discovery, openapi_v2
from gkesim.kube_tables import _table
from gkesim.kubeapi import RESOURCES, KubeError
from gkesim.kubelet import (
    KUBELET_FIELDS,
    MetricsPayload,
    configz_bytes,
    readwrite_counts,
)
from gkesim.kubenodes import node_ip, node_zone
from gkesim.kubestore import KubeStore

if TYPE_CHECKING:
    from gkesim.kube import KubeServer

CHUNK = 256 * 1024
_JSON = "application/json"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr: tuple[str, int], handler: type, kube: KubeServer) -> None:
        self.kube = kube
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, not in the accept loop.
        request.settimeout(30)
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.kube._ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):  # e.g. a client that rejects our CA (faults.wrong_ca)
            return
        with self._conns_lock:
            self._conns.add(tls)
            self.kube.connections_accepted += 1
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            with self._conns_lock:
                self._conns.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:  # broken connections are normal here
        pass


_PATH_RE = re.compile(r"^/k8s/([^/]+)/([^/]+)/([^/]+)(/.*)?$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gkesim-kube"
    sys_version = ""
    timeout = 300  # idle keep-alive connections end after this
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    # ----- plumbing -------------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, code: int, body: bytes, content_type: str = _JSON) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self._write_with_headers(body)

    def _write_with_headers(self, first: bytes | memoryview) -> None:
        """End the headers and send them with the first body bytes in one write (one TLS record, one segment)."""
        self._headers_buffer.append(b"\r\n")
        self.wfile.write(b"".join(self._headers_buffer) + bytes(first))
        self._headers_buffer = []

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj, separators=(",", ":")).encode())

    def _error(self, err: KubeError) -> None:
        self._json(err.code, err.status())

    def _dispatch(self, method: str) -> None:
        kube = self.server.kube
        try:
            body = self._body()
            if self.headers.get("Authorization") != f"Bearer {kube.token}":
                raise KubeError(401, "Unauthorized")
            url = urlsplit(self.path)
            m = _PATH_RE.match(url.path)
            if m:
                project, location, name, rest = (unquote(g) if g else g for g in m.groups())
                cluster_path = f"projects/{project}/locations/{location}/clusters/{name}"
            else:  # no prefix: the cluster the TLS server name designates, if any
                sni = getattr(self.request, "gkesim_server_name", None)
                cluster_path = kube._by_server_name.get(sni or "")
                if cluster_path is None:
                    raise KubeError(404, "the server could not find the requested resource", "NotFound")
                rest = url.path
            try:
                cluster = kube.fleet.cluster(cluster_path)
            except SimError as e:
                raise KubeError(e.http_status, e.message) from e
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            self._route(method, cluster, (rest or "/").rstrip("/") or "/", query, body)
        except KubeError as err:
            self._error(err)
        except (ssl.SSLError, ConnectionError, TimeoutError, BrokenPipeError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - answer like an API server, keep serving
            self._error(KubeError(500, f"gkesim internal error: {type(exc).__name__}: {exc}"))

    # ----- routing --------------------------------------------------------------------------------------------

    def _route(self, method: str, cluster: SimCluster, rest: str, query: dict[str, str], body: bytes) -> None:
        segs = [unquote(s) for s in rest.strip("/").split("/") if s]
        if method == "GET":
            openapi = openapi_v2(cluster, segs, self.headers.get("Accept", ""))
            if openapi is not None:
                return self._send(200, *openapi)
            doc = _discovery(cluster, segs, self.server.kube)
            if doc is not None:
                return self._json(200, doc)
        if not segs or segs[0] not in ("api", "apis"):
            raise KubeError(404, "the server could not find the requested resource", "NotFound")
        if segs[0] == "api":
            if len(segs) < 3 or segs[1] != "v1":
                raise KubeError(404, "the server could not find the requested resource", "NotFound")
            api_version, rest_segs = "v1", segs[2:]
        else:
            if len(segs) < 4:
                raise KubeError(404, "the server could not find the requested resource", "NotFound")
            api_version, rest_segs = f"{segs[1]}/{segs[2]}", segs[3:]
        namespace = None
        if rest_segs[0] == "namespaces" and len(rest_segs) >= 3:
            namespace, rest_segs = rest_segs[1], rest_segs[2:]
        resource = rest_segs[0]
        obj_name = rest_segs[1] if len(rest_segs) > 1 else None
        sub = rest_segs[2:]
        res = RESOURCES.get(resource)
        if res is None or res.api_version != api_version or (namespace is not None and not res.namespaced):
            raise KubeError(404, "the server could not find the requested resource", "NotFound")
        kube = self.server.kube
        if resource == "nodes" and obj_name and sub and sub[0] == "proxy":
            return self._node_proxy(cluster, obj_name.split(":")[0], "/".join(sub[1:]), method)
        store = kube.store(cluster)
        if resource == "pods" and obj_name and sub == ["log"] and method == "GET":
            with kube.fleet.lock:
                text = store.logs(
                    namespace or "default",
                    obj_name,
                    query.get("container") or None,
                    _int(query.get("tailLines")),
                    _float(query.get("sinceSeconds")),
                    query.get("timestamps", "").lower() in ("true", "1"),
                    _int(query.get("limitBytes")),
                )
            return self._send(200, text.encode(), "text/plain")
        if sub:
            raise KubeError(404, "the server could not find the requested resource", "NotFound")
        dry_run = "dryRun" in query
        if method == "GET" and obj_name is None:
            if query.get("watch", "").lower() in ("true", "1"):
                return self._watch(store, resource, namespace, query)
            token = query.get("continue", "")
            if kube.fleet.faults.later_page("KubeList", token):
                raise KubeError(503, f"injected: the list of {resource} is unavailable (a later page)")
            with kube.fleet.lock:
                items = store.list(
                    resource, namespace, query.get("labelSelector"), query.get("fieldSelector")
                )
                rv = store.resource_version()
            items, more = _page(items, _int(query.get("limit")), token, resource)
            return self._objects(res, items, rv, list_mode=True, more=more)
        if method == "GET":
            with kube.fleet.lock:
                obj = store.get(resource, namespace, obj_name)
                rv = store.resource_version()
            return self._objects(res, [obj], rv, list_mode=False)
        if method == "POST" and obj_name is None:
            data = _decode(body, self.headers.get("Content-Type", _JSON))
            with kube.fleet.lock:
                created = store.create(resource, namespace, data, dry_run=dry_run)
            return self._json(201, created)
        if method == "DELETE" and obj_name is not None:
            if body:
                with contextlib.suppress(ValueError, yaml.YAMLError):
                    opts = _decode(body, self.headers.get("Content-Type", _JSON))
                    dry_run = dry_run or bool(isinstance(opts, dict) and opts.get("dryRun"))
            with kube.fleet.lock:
                gone = store.delete(resource, namespace, obj_name, dry_run=dry_run)
            return self._json(200, gone)
        raise KubeError(
            405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
        )

    def _objects(
        self,
        res: Any,
        items: list[dict[str, Any]],
        rv: str,
        list_mode: bool,
        more: dict[str, Any] | None = None,
    ) -> None:
        accept = self.headers.get("Accept", "")
        if "as=Table" in accept:
            return self._json(200, _table(self.server.kube.fleet, res, items, rv))
        if list_mode:
            return self._json(
                200,
                {
                    "kind": f"{res.kind}List",
                    "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": rv, **(more or {})},
                    "items": items,
                },
            )
        return self._json(200, items[0])

    def _watch(self, store: KubeStore, resource: str, namespace: str | None, query: dict[str, str]) -> None:
        """A watch, by polling the store: ADDED / MODIFIED / DELETED events as the derived state changes.

        Without a resourceVersion (or with "0") the current objects come first as ADDED, as the API server does.
        Ends after `timeoutSeconds` (at most `KubeServer.max_watch_seconds`) or when the server stops.
        """
        kube = self.server.kube
        labels, fields = query.get("labelSelector"), query.get("fieldSelector")

        def snapshot() -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
            with kube.fleet.lock:
                items = store.list(resource, namespace, labels, fields)
            out = {}
            for body in items:
                meta = body["metadata"]
                canon = json.dumps({**body, "metadata": {**meta, "resourceVersion": ""}}, sort_keys=True)
                out[(meta.get("namespace", ""), meta["name"])] = (canon, body)
            return out

        timeout = min(float(query.get("timeoutSeconds") or kube.max_watch_seconds), kube.max_watch_seconds)
        prev = snapshot()
        self.send_response(200)
        self.send_header("Content-Type", _JSON)
        self.send_header("Transfer-Encoding", "chunked")
        self._write_with_headers(b"")
        self.close_connection = False

        as_table = "as=Table" in self.headers.get("Accept", "")
        res = RESOURCES[resource]

        def emit(kind: str, body: dict[str, Any]) -> None:
            obj = (
                _table(kube.fleet, res, [body], body["metadata"].get("resourceVersion", ""))
                if as_table
                else body
            )
            data = json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        if query.get("resourceVersion") in (None, "", "0"):
            for _, body in prev.values():
                emit("ADDED", body)
        deadline = time.monotonic() + timeout
        while not kube._stopping.wait(kube.watch_poll_seconds) and time.monotonic() < deadline:
            cur = snapshot()
            for key, (canon, body) in cur.items():
                if key not in prev:
                    emit("ADDED", body)
                elif prev[key][0] != canon:
                    emit("MODIFIED", body)
            for key, (_, body) in prev.items():
                if key not in cur:
                    emit("DELETED", body)
            prev = cur
        if kube._stopping.is_set():
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    # ----- the node proxy -------------------------------------------------------------------------------------

    def _node_proxy(self, cluster: SimCluster, node_name: str, path: str, method: str) -> None:
        kube = self.server.kube
        fleet = kube.fleet
        if cluster.autopilot or cluster.path in fleet.spec.faults.forbidden_node_proxy:
            verb = {"GET": "get", "POST": "create", "DELETE": "delete", "PUT": "update", "PATCH": "patch"}[
                method
            ]
            raise KubeError(
                403,
                f'nodes "{node_name}" is forbidden: User "{kube.user_name(cluster)}" cannot {verb} resource '
                f'"nodes/proxy" in API group "" at the cluster scope',
                "Forbidden",
                {"name": node_name, "kind": "nodes"},
            )
        with fleet.lock:
            node = next((n for n in cluster.all_nodes() if n.name == node_name), None)
            if node is None:
                raise RESOURCES["nodes"].not_found(node_name)
            hang = kube.read_timeout(cluster, node)
        if hang:  # the kubelet does not answer: hold the request open
            if not self._hang(kube.hang_seconds):
                self.close_connection = True
                return
            raise KubeError(
                503,
                f"error trying to reach service: dial tcp {node_ip(cluster, node)}:10250: i/o timeout",
                "ServiceUnavailable",
            )
        if method != "GET":
            raise KubeError(
                405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
            )
        if path == "metrics":
            payload = kube.payload  # (built outside the fleet lock)
            with fleet.lock:
                node.readwrite_reads += 1  # the kubelet counts this request before it answers
                now = fleet.now()
                gzip = kube.compress_metrics and _accepts_gzip(self.headers.get("Accept-Encoding", ""))
                parts = (payload.gzip_parts if gzip else payload.parts)(
                    node.name,
                    readwrite_counts(now - node.booted_at, node.readwrite_reads),
                    node.readonly_counts(now),
                )
            return self._stream(parts, MetricsPayload.CONTENT_TYPE, "gzip" if gzip else None)
        if path == "configz":
            with fleet.lock:
                overrides = _kubelet_overrides(cluster, node)
                zone_id = f"gce://{cluster.project}/{node_zone(cluster, node)}/{node.name}"
                body = configz_bytes(node.name, zone_id, node.port_open, overrides)
            return self._send(200, body)
        if path == "healthz":
            return self._send(200, b"ok", "text/plain; charset=utf-8")
        self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _hang(self, seconds: float) -> bool:
        """Wait `seconds`; False as soon as the server stops or the client gives up (closes its connection)."""
        deadline = time.monotonic() + seconds
        kube = self.server.kube
        while not kube._stopping.wait(min(0.25, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return True
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable:  # EOF (or a request it should not send before our answer): the client is gone
                return False
        return False

    def _stream(self, parts: list[bytes], content_type: str, encoding: str | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(sum(len(p) for p in parts)))
        self._write_with_headers(b"")
        write = self.wfile.write
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), CHUNK):
                write(view[start : start + CHUNK])


# ----- helpers --------------------------------------------------------------------------------------------------


def _accepts_gzip(accept_encoding: str) -> bool:
    """Does an Accept-Encoding header take gzip (listed without q=0)?"""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().lower().replace(" ", "")
            try:
                return not q.startswith("q=") or float(q[2:]) > 0
            except ValueError:  # a weight that does not parse: the coding is taken as listed
                return True
    return False


def _page(
    items: list[dict[str, Any]], limit: int | None, token: str, resource: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`limit` items after the one `token` (a `continue` value) names, and the list metadata that continues them.

    Items are in (namespace, name) order; a token carries the resource and the last key it returned, so a page
    goes on after that key even when objects came or went in between (the API server reads its snapshot; the
    difference does not matter to a reader of the whole list). A token of another resource is a 400.
    """
    start = 0
    if token:
        try:
            kind, namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, TypeError) as exc:
            raise KubeError(400, f"continue key is not valid: {exc}") from exc
        if kind != resource:
            raise KubeError(400, "continue key is not valid: it belongs to another list")
        key = (namespace, name)
        start = next(
            (
                i
                for i, b in enumerate(items)
                if (b["metadata"].get("namespace", ""), b["metadata"]["name"]) > key
            ),
            len(items),
        )
    if not limit or limit <= 0 or start + limit >= len(items):
        return items[start:], {}
    chunk = items[start : start + limit]
    last = chunk[-1]["metadata"]
    nxt = json.dumps([resource, last.get("namespace", ""), last["name"]]).encode()
    return chunk, {
        "continue": base64.urlsafe_b64encode(nxt).decode(),
        "remainingItemCount": len(items) - start - limit,
    }


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError as e:
        raise KubeError(400, f"invalid integer: {value!r}") from e


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError as e:
        raise KubeError(400, f"invalid number: {value!r}") from e


def _decode(body: bytes, content_type: str) -> Any:
    if "protobuf" in content_type:
        raise KubeError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json, application/yaml",
            "UnsupportedMediaType",
        )
    try:
        if "yaml" in content_type:
            return yaml.safe_load(body.decode() or "{}")
        return json.loads(body.decode() or "{}")
    except (ValueError, yaml.YAMLError) as e:
        raise KubeError(400, f"the body of the request could not be decoded: {e}") from e


def _kubelet_overrides(cluster: SimCluster, node: SimNode) -> dict[str, Any]:
    """The node's NodeKubeletConfig fields that are set (snake_case), as the kubelet on it would run them."""
    if cluster.autopilot:
        if "node_kubelet_config" not in cluster.msg.node_pool_auto_config:
            return {}
        cfg = cluster.msg.node_pool_auto_config.node_kubelet_config
    else:
        pool = next((p for p in cluster.msg.node_pools if p.name == node.pool), None)
        if pool is None or "kubelet_config" not in pool.config:
            return {}
        cfg = pool.config.kubelet_config
    return {key: getattr(cfg, key) for key in KUBELET_FIELDS if key in cfg}
