"""The simulated Kubernetes API servers of every cluster of a fleet, on one HTTPS listener.

Each cluster is served under its own path prefix, `/k8s/PROJECT/LOCATION/CLUSTER`, which becomes the cluster's
`endpoint` (`https://{endpoint}` is the API server, as with GKE). The real clients work unchanged: the `kubernetes`
Python client, and kubectl through `write_kubeconfig`. Served: discovery and /version; Nodes built from the fleet's
current nodes; the node proxy's kubelet /metrics and /configz; Pods (with logs), ConfigMaps, Namespaces,
ServiceAccounts, DaemonSets, Deployments, ClusterRoles and ClusterRoleBindings (list, get, create, delete; see
`gkesim.objects`). Errors are `Status` objects. Faults: `faults.wrong_ca`, `node_read_timeouts`,
`node_read_timeout_rate` and `forbidden_node_proxy`; Autopilot never grants `nodes/proxy`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import select
import socket
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from gkesim.certs import issue_server_cert, make_ca
from gkesim.errors import SimError
from gkesim.fleet import Fleet, SimCluster, SimNode, version_tuple
from gkesim.kubelet import (
    DEFAULT_METRICS_BYTES,
    KUBELET_FIELDS,
    MetricsPayload,
    configz_bytes,
    readwrite_counts,
)
from gkesim.objects import RBAC, RESOURCES, KubeError, KubeStore, get_store, node_ip, node_zone, timestamp

PREFIX = "/k8s/"
CHUNK = 256 * 1024
_JSON = "application/json"
SNI_DOMAIN = "kube.gkesim.internal"  # the serving certificate also covers *.SNI_DOMAIN


def cluster_prefix(cluster: SimCluster) -> str:
    return f"{PREFIX}{cluster.project}/{cluster.location}/{cluster.msg.name}"


def cluster_server_name(cluster_path: str) -> str:
    """A TLS server name that identifies a cluster without a path prefix (kubeconfig `tls-server-name`).

    Some kubectl requests ignore the server URL's path: `kubectl get --raw /api/v1/...` requests `/api/v1/...`
    on the host. Such requests are routed to the cluster named by the connection's SNI.
    """
    return f"c-{hashlib.sha1(cluster_path.encode()).hexdigest()[:16]}.{SNI_DOMAIN}"


class KubeServer:
    """One HTTPS listener serving every cluster's Kubernetes API under its own path prefix."""

    def __init__(
        self,
        fleet: Fleet,
        host: str = "127.0.0.1",
        token: str = "gkesim-token",
        metrics_bytes: int = DEFAULT_METRICS_BYTES,
        hang_seconds: float = 600.0,
        user: str | None = None,
    ) -> None:
        self.fleet = fleet
        self.host = host
        self.token = token
        self.hang_seconds = hang_seconds  # how long a faulty node read hangs (or until stop())
        self.max_watch_seconds = 300.0
        self.watch_poll_seconds = 0.1
        self.user = user
        self._ca = make_ca("gkesim cluster CA")
        self._wrong_ca = make_ca("unrelated CA")
        hosts = tuple(dict.fromkeys((host, "127.0.0.1", "localhost", f"*.{SNI_DOMAIN}")))
        pair = issue_server_cert(self._ca, hosts)
        self.ca_pem: bytes = self._ca.cert_pem
        self.wrong_ca_pem: bytes = self._wrong_ca.cert_pem
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ctx.set_alpn_protocols(["http/1.1"])
        self._ctx.sni_callback = _remember_sni
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert.write_bytes(pair.cert_pem + self.ca_pem)
            key.write_bytes(pair.key_pem)
            self._ctx.load_cert_chain(cert, key)
        self.metrics_bytes = metrics_bytes
        self._payload: MetricsPayload | None = None  # built on the first /metrics read
        self._payload_lock = threading.Lock()
        self.port: int | None = None
        self._by_server_name: dict[str, str] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ----- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> int:
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, 0), _Handler, self)
        self.port = self._httpd.server_address[1]
        ca_b64 = base64.b64encode(self.ca_pem).decode()
        wrong_b64 = base64.b64encode(self.wrong_ca_pem).decode()
        wrong = set(self.fleet.spec.faults.wrong_ca)
        with self.fleet.lock:
            for path, cluster in self.fleet.clusters.items():
                self._by_server_name[cluster_server_name(path)] = path
                cluster.msg.endpoint = f"{self.host}:{self.port}{cluster_prefix(cluster)}"
                cluster.msg.master_auth.cluster_ca_certificate = wrong_b64 if path in wrong else ca_b64
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="gkesim-kube", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> KubeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def payload(self) -> MetricsPayload:
        if self._payload is None:
            with self._payload_lock:
                if self._payload is None:
                    self._payload = MetricsPayload(self.metrics_bytes)
        return self._payload

    # ----- cluster lookup -------------------------------------------------------------------------------------

    def store(self, cluster: SimCluster) -> KubeStore:
        return get_store(self.fleet, cluster, self.ca_pem.decode())

    def user_name(self, cluster: SimCluster) -> str:
        return self.user or f"portcullis@{cluster.project}.iam.gserviceaccount.com"

    def read_timeout(self, cluster: SimCluster, node: SimNode) -> bool:
        faults = self.fleet.spec.faults
        entries = faults.node_read_timeouts
        if cluster.path in entries or f"{cluster.path}/{node.pool}" in entries:
            return True
        return self.fleet.faults.chance(faults.node_read_timeout_rate)


def _remember_sni(sock: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
    with contextlib.suppress(AttributeError):
        sock.gkesim_server_name = server_name


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
            with kube.fleet.lock:
                items = store.list(
                    resource, namespace, query.get("labelSelector"), query.get("fieldSelector")
                )
                rv = store.resource_version()
            return self._objects(res, items, rv, list_mode=True)
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

    def _objects(self, res: Any, items: list[dict[str, Any]], rv: str, list_mode: bool) -> None:
        accept = self.headers.get("Accept", "")
        if "as=Table" in accept:
            return self._json(200, _table(self.server.kube.fleet, res, items, rv))
        if list_mode:
            return self._json(
                200,
                {
                    "kind": f"{res.kind}List",
                    "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": rv},
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
                parts = payload.parts(
                    node.name,
                    readwrite_counts(now - node.booted_at, node.readwrite_reads),
                    node.readonly_counts(now),
                )
            return self._stream(parts, MetricsPayload.CONTENT_TYPE)
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

    def _stream(self, parts: list[bytes], content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(len(p) for p in parts)))
        self._write_with_headers(b"")
        write = self.wfile.write
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), CHUNK):
                write(view[start : start + CHUNK])


# ----- helpers --------------------------------------------------------------------------------------------------


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


def _discovery(cluster: SimCluster, segs: list[str], kube: KubeServer) -> dict[str, Any] | None:
    path = "/".join(segs)
    if path == "version":
        version = cluster.msg.current_master_version
        parsed = version_tuple(version) or (1, 30, 0, 0)
        return {
            "major": str(parsed[0]),
            "minor": str(parsed[1]),
            "gitVersion": f"v{version}",
            "gitCommit": "3d0e8f1b4ac2f2a9b3e6c7d5e4f3a2b1c0d9e8f7",
            "gitTreeState": "clean",
            "buildDate": "2024-10-01T09:21:43Z",
            "goVersion": "go1.22.6 X:boringcrypto",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    if path == "api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{kube.host}:{kube.port}"}
            ],
        }
    groups = sorted({r.group for r in RESOURCES.values() if r.group})
    if path == "apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in groups]}
    if len(segs) == 2 and segs[0] == "apis" and segs[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(segs[1])}
    if path == "api/v1":
        return _resource_list("", "v1")
    if path == "openapi/v3":
        return {
            "paths": {
                gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_OPENAPI_HASH}"}
                for gv in ["api/v1", *(f"apis/{g}/v1" for g in groups)]
            }
        }
    if segs[:2] == ["openapi", "v3"] and len(segs) >= 4:
        gv = "/".join(segs[2:])
        if gv == "api/v1" or (len(segs) == 5 and segs[2] == "apis" and segs[3] in groups and segs[4] == "v1"):
            return _openapi_v3(gv)
    if len(segs) == 3 and segs[0] == "apis" and segs[1] in groups and segs[2] == "v1":
        return _resource_list(segs[1], "v1")
    return None


_OPENAPI_HASH = "5E2F1A9C0D7B3E4F6A8B9C0D1E2F3A4B5C6D7E8F9A0B1C2D3E4F5A6B7C8D9E0F"


def _openapi_v3(gv: str) -> dict[str, Any]:
    """A minimal OpenAPI v3 document for one group/version.

    kubectl (create/apply) reads it only to learn whether the server validates fields itself: it looks for the
    `fieldValidation` query parameter on each kind's PATCH operation. When found, kubectl sends
    `fieldValidation=Strict` instead of validating client-side against the full schema (which it would have to
    download). gkesim accepts the parameter and validates what it simulates.
    """
    group, _, version = gv.removeprefix("apis/").rpartition("/") if gv.startswith("apis/") else ("", "", "v1")
    paths: dict[str, Any] = {}
    for res in RESOURCES.values():
        if res.group != group or res.version != version:
            continue
        base = f"/{gv}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"/{gv}/{res.plural}"
        gvk = {"group": group, "version": version, "kind": res.kind}
        params = [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        ]
        ok = {"200": {"description": "OK"}}
        paths[base] = {
            "post": {
                "operationId": f"create{res.kind}",
                "parameters": params,
                "responses": ok,
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": gvk,
            }
        }
        paths[base + "/{name}"] = {
            "get": {
                "operationId": f"read{res.kind}",
                "responses": ok,
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": gvk,
            },
            "patch": {
                "operationId": f"patch{res.kind}",
                "parameters": params,
                "responses": ok,
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            },
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def _group(name: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def _resource_list(group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for res in RESOURCES.values():
        if res.group != group:
            continue
        entry: dict[str, Any] = {
            "name": res.plural,
            "singularName": res.singular,
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": list(res.verbs),
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.categories:
            entry["categories"] = list(res.categories)
        resources.append(entry)
        if res.plural == "nodes":
            resources.append(
                {
                    "name": "nodes/proxy",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "NodeProxyOptions",
                    "verbs": ["get"],
                }
            )
        if res.plural == "pods":
            resources.append(
                {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]}
            )
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def _age(fleet: Fleet, created: str | None) -> str:
    if not created:
        return "<unknown>"
    import datetime as dt

    then = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    seconds = int(fleet.EPOCH + fleet.now() - then)
    if seconds < 0:
        return "<invalid>"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "d" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _columns(resource: str) -> list[tuple]:
    """(name, type[, priority]) per column; priority 1 columns show with `-o wide`."""
    return {
        "nodes": [
            ("Name", "string"),
            ("Status", "string"),
            ("Roles", "string"),
            ("Age", "string"),
            ("Version", "string"),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        "pods": [
            ("Name", "string"),
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
            ("Age", "string"),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "namespaces": [("Name", "string"), ("Status", "string"), ("Age", "string")],
        "configmaps": [("Name", "string"), ("Data", "string"), ("Age", "string")],
        "serviceaccounts": [("Name", "string"), ("Secrets", "string"), ("Age", "string")],
        "daemonsets": [
            ("Name", "string"),
            ("Desired", "integer"),
            ("Current", "integer"),
            ("Ready", "integer"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
            ("Node Selector", "string"),
            ("Age", "string"),
        ],
        "deployments": [
            ("Name", "string"),
            ("Ready", "string"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
            ("Age", "string"),
        ],
        "clusterroles": [("Name", "string"), ("Created At", "date")],
        "clusterrolebindings": [("Name", "string"), ("Role", "string"), ("Age", "string")],
    }[resource]


def _cells(fleet: Fleet, resource: str, obj: dict[str, Any]) -> list[Any]:
    meta, status, spec = obj["metadata"], obj.get("status") or {}, obj.get("spec") or {}
    age = _age(fleet, meta.get("creationTimestamp"))
    if resource == "nodes":
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        addresses = {a["type"]: a["address"] for a in status.get("addresses", [])}
        info = status.get("nodeInfo", {})
        return [
            meta["name"],
            "Ready" if ready else "NotReady",
            "<none>",
            age,
            info.get("kubeletVersion", ""),
            addresses.get("InternalIP", "<none>"),
            addresses.get("ExternalIP", "<none>"),
            info.get("osImage", ""),
            info.get("kernelVersion", ""),
            info.get("containerRuntimeVersion", ""),
        ]
    if resource == "pods":
        cs = status.get("containerStatuses") or []
        ready = sum(1 for c in cs if c.get("ready"))
        reason = status.get("phase", "Pending")
        for c in cs:
            waiting = (c.get("state") or {}).get("waiting")
            if waiting:
                reason = waiting.get("reason", reason)
        if reason == "Succeeded":
            reason = "Completed"
        return [
            meta["name"],
            f"{ready}/{len(spec.get('containers') or [])}",
            reason,
            "0",
            age,
            status.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>",
            "<none>",
            "<none>",
        ]
    if resource == "namespaces":
        return [meta["name"], status.get("phase", "Active"), age]
    if resource == "configmaps":
        return [meta["name"], len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), age]
    if resource == "serviceaccounts":
        return [meta["name"], len(obj.get("secrets") or []), age]
    if resource == "daemonsets":
        sel = (
            ",".join(
                f"{k}={v}"
                for k, v in ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector", {}).items()
            )
            or "<none>"
        )
        return [
            meta["name"],
            status.get("desiredNumberScheduled", 0),
            status.get("currentNumberScheduled", 0),
            status.get("numberReady", 0),
            status.get("updatedNumberScheduled", 0),
            status.get("numberAvailable", 0),
            sel,
            age,
        ]
    if resource == "deployments":
        return [
            meta["name"],
            f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0),
            age,
        ]
    if resource == "clusterroles":
        return [meta["name"], meta.get("creationTimestamp")]
    if resource == "clusterrolebindings":
        ref = obj.get("roleRef") or {}
        return [meta["name"], f"{ref.get('kind')}/{ref.get('name')}", age]
    return [meta["name"], age]


def _table(fleet: Fleet, res: Any, items: list[dict[str, Any]], rv: str) -> dict[str, Any]:
    columns = [
        {
            "name": c[0],
            "type": c[1],
            "format": "name" if c[0] == "Name" else "",
            "description": c[0],
            "priority": c[2] if len(c) > 2 else 0,
        }
        for c in _columns(res.plural)
    ]
    rows = [
        {
            "cells": _cells(fleet, res.plural, obj),
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            },
        }
        for obj in items
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": columns,
        "rows": rows,
    }


def write_kubeconfig(fleet: Fleet, path: str | Path, host: str, port: int, token: str) -> Path:
    """A kubeconfig with one context per cluster, named by the cluster's path (`projects/P/locations/L/clusters/C`).

    `tls-server-name` lets requests that drop the server URL's path (`kubectl get --raw /api/...`) still reach
    the right cluster (see `cluster_server_name`). Each cluster's CA is what GKE reports for it (`master_auth.cluster_ca_certificate`), as `gcloud container
    clusters get-credentials` would write it; start the KubeServer first.
    """
    clusters, contexts = [], []
    with fleet.lock:
        for cpath, cluster in fleet.clusters.items():
            ca = cluster.msg.master_auth.cluster_ca_certificate
            if not ca:
                raise ValueError(f"{cpath} has no CA yet: start the KubeServer before writing a kubeconfig")
            clusters.append(
                {
                    "name": cpath,
                    "cluster": {
                        "server": f"https://{host}:{port}{cluster_prefix(cluster)}",
                        "certificate-authority-data": ca,
                        "tls-server-name": cluster_server_name(cpath),
                    },
                }
            )
            contexts.append({"name": cpath, "context": {"cluster": cpath, "user": "gkesim"}})
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": clusters,
        "contexts": contexts,
        "current-context": contexts[0]["name"] if contexts else "",
        "users": [{"name": "gkesim", "user": {"token": token}}],
    }
    out = Path(path)
    out.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    out.chmod(0o600)
    return out


__all__ = ["KubeServer", "write_kubeconfig", "cluster_prefix", "RBAC", "timestamp"]
