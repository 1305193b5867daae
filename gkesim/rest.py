"""google.container.v1 over REST (JSON over HTTP/1.1), backed by the same `Fleet` as the gRPC service.

This is the front end gcloud talks to: point it here with `CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER=http://HOST:PORT/`
(see `write_gcloud_env`). Bodies are the client package's own proto-plus messages rendered with
`to_json` / parsed with `from_json`, so the JSON is Google's: camelCase names, enum names, int64 as strings, unset
fields absent.

Served (plain HTTP on loopback; any bearer token is accepted, a request without one gets 401):

    GET  /v1/projects/P/locations/L/clusters                      clusters.list (L "-" is every location)
    GET  /v1/projects/P/locations/L/clusters/C                    clusters.get
    PUT  /v1/projects/P/locations/L/clusters/C                    clusters.update      {"update": {...}}
    GET  /v1/projects/P/locations/L/clusters/C/nodePools          nodePools.list
    GET  /v1/projects/P/locations/L/clusters/C/nodePools/N        nodePools.get
    PUT  /v1/projects/P/locations/L/clusters/C/nodePools/N        nodePools.update     {"kubeletConfig": {...}}
    GET  /v1/projects/P/locations/L/operations[/OP]               operations.list / operations.get

and the same under `/v1/projects/P/zones/Z/...` (the form gcloud prints in self links), where node pools are
updated with `POST .../nodePools/N/update`. Errors are Google's JSON error body
`{"error": {"code": 404, "message": "...", "status": "NOT_FOUND", "details": [...]}}` with the HTTP status of
`gkesim.errors.HTTP_STATUS`. Every call first sleeps any injected latency, then applies injected errors and the
per-project quota (`fleet.faults`), exactly as the gRPC front end does, under the same method names.
"""

from __future__ import annotations

import collections
import json
import re
import shlex
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import grpc
from google.cloud import container_v1
from google.protobuf import json_format

from gkesim.errors import SimError
from gkesim.fleet import Fleet
from gkesim.grpcutil import error_details

API_PREFIX = "/v1/"
TOKEN = "gkesim-token"  # what write_gcloud_env puts in the access-token file; any token is accepted

_SEG = r"([^/]+)"
# projects/P/(locations|zones)/L/rest...
_ROOT_RE = re.compile(rf"^projects/{_SEG}/(locations|zones)/{_SEG}(?:/(.*))?$")


def _to_json(cls: Any, msg: Any) -> bytes:
    return cls.to_json(
        msg,
        use_integers_for_enums=False,
        always_print_fields_with_no_presence=False,
        preserving_proto_field_name=False,
        indent=2,
    ).encode()


class RestError(Exception):
    """An error detected by the REST layer itself (bad path, bad body), before the fleet is asked."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.sim = SimError(code, message)


class RestServer:
    """The Container API v1 over REST for one fleet, on a ThreadingHTTPServer bound to `host`."""

    def __init__(self, fleet: Fleet, host: str = "127.0.0.1") -> None:
        self.fleet = fleet
        self.host = host
        self.port: int | None = None
        self.calls: collections.Counter[str] = collections.Counter()  # method name -> calls answered
        self._calls_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> int:
        self._httpd = _HTTPServer((self.host, 0), _Handler, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="gkesim-rest", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> RestServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, method: str) -> None:
        with self._calls_lock:
            self.calls[method] += 1

    # ----- the API ----------------------------------------------------------------------------------------------

    def handle(self, verb: str, path: str, body: bytes) -> tuple[int, bytes]:
        """Answer one request: (HTTP status, JSON body). `path` is the URL path without the query."""
        try:
            method, run = self._route(verb, path, body)
        except RestError as err:
            return _error_body(err.sim)
        self.count(method)
        faults = self.fleet.faults
        try:
            faults.delay(method)
            return 200, run()
        except SimError as err:
            return _error_body(err)

    def _route(self, verb: str, path: str, body: bytes) -> tuple[str, Any]:
        if not path.startswith(API_PREFIX):
            raise RestError(
                grpc.StatusCode.NOT_FOUND, f"The requested URL {path} was not found on this server."
            )
        rest = unquote(path[len(API_PREFIX) :]).rstrip("/")
        m = _ROOT_RE.match(rest)
        if not m:
            raise RestError(
                grpc.StatusCode.NOT_FOUND, f"The requested URL {path} was not found on this server."
            )
        project, kind, location, tail = m.groups()
        zones = kind == "zones"
        parts = tail.split("/") if tail else []
        base = f"projects/{project}/locations/{location}"
        fleet, faults, c = self.fleet, self.fleet.faults, container_v1

        def custom(name: str) -> RestError:
            return RestError(grpc.StatusCode.UNIMPLEMENTED, f"gkesim does not simulate {name}.")

        if parts and ":" in parts[-1]:
            raise custom(f"the custom method :{parts[-1].split(':', 1)[1]}")

        # .../clusters
        if parts == ["clusters"]:
            if verb != "GET":
                raise custom(f"{verb} {path} (clusters.create)")

            def list_clusters() -> bytes:
                faults.check("ListClusters", project)
                clusters, missing = fleet.list_clusters(project, location)
                return _to_json(
                    c.ListClustersResponse, c.ListClustersResponse(clusters=clusters, missing_zones=missing)
                )

            return "ListClusters", list_clusters

        # .../operations[/OP]
        if parts == ["operations"]:
            if verb != "GET":
                raise custom(f"{verb} {path}")

            def list_operations() -> bytes:
                faults.check("ListOperations", project)
                ops = fleet.list_operations(project, location)
                return _to_json(c.ListOperationsResponse, c.ListOperationsResponse(operations=ops))

            return "ListOperations", list_operations
        if len(parts) == 2 and parts[0] == "operations":
            if verb != "GET":
                raise custom(f"{verb} {path}")
            name = f"{base}/operations/{parts[1]}"

            def get_operation() -> bytes:
                faults.check("GetOperation", project)
                return _to_json(c.Operation, fleet.get_operation(name))

            return "GetOperation", get_operation

        if not parts or parts[0] != "clusters" or len(parts) < 2:
            raise RestError(
                grpc.StatusCode.NOT_FOUND, f"The requested URL {path} was not found on this server."
            )
        cluster_path = f"{base}/clusters/{parts[1]}"

        # .../clusters/C
        if len(parts) == 2:
            if verb == "GET":

                def get_cluster() -> bytes:
                    faults.check("GetCluster", project)
                    with fleet.lock:
                        return _to_json(c.Cluster, fleet.cluster(cluster_path).msg)

                return "GetCluster", get_cluster
            if verb == "PUT":
                request = _parse(c.UpdateClusterRequest, body)
                if "update" not in request:
                    raise RestError(grpc.StatusCode.INVALID_ARGUMENT, "Cluster.update must be set.")

                def update_cluster() -> bytes:
                    faults.check("UpdateCluster", project)
                    return _to_json(c.Operation, fleet.update_cluster(cluster_path, request.update))

                return "UpdateCluster", update_cluster
            raise custom(f"{verb} {path}")

        # .../clusters/C/nodePools
        if parts[2] != "nodePools":
            raise RestError(
                grpc.StatusCode.NOT_FOUND, f"The requested URL {path} was not found on this server."
            )
        if len(parts) == 3:
            if verb != "GET":
                raise custom(f"{verb} {path} (nodePools.create)")

            def list_node_pools() -> bytes:
                faults.check("ListNodePools", project)
                with fleet.lock:
                    pools = list(fleet.cluster(cluster_path).msg.node_pools)
                    return _to_json(c.ListNodePoolsResponse, c.ListNodePoolsResponse(node_pools=pools))

            return "ListNodePools", list_node_pools

        pool_path = f"{cluster_path}/nodePools/{parts[3]}"
        pool_name = parts[3]
        updating = (len(parts) == 4 and verb == "PUT") or (
            zones and len(parts) == 5 and parts[4] == "update" and verb == "POST"
        )
        if len(parts) == 4 and verb == "GET":

            def get_node_pool() -> bytes:
                faults.check("GetNodePool", project)
                with fleet.lock:
                    return _to_json(c.NodePool, fleet.cluster(cluster_path).pool(pool_name))

            return "GetNodePool", get_node_pool
        if updating:
            request = _parse(c.UpdateNodePoolRequest, body)
            # The URL names the pool; the deprecated body fields (and a body `name`) must not redirect the call.
            for field in ("project_id", "zone", "cluster_id", "node_pool_id"):
                if field in request:
                    delattr(request, field)
            request.name = pool_path

            def update_node_pool() -> bytes:
                faults.check("UpdateNodePool", project)
                return _to_json(c.Operation, fleet.update_node_pool(request))

            return "UpdateNodePool", update_node_pool
        if len(parts) in (4, 5):
            raise custom(f"{verb} {path}")
        raise RestError(grpc.StatusCode.NOT_FOUND, f"The requested URL {path} was not found on this server.")


def _parse(cls: Any, body: bytes) -> Any:
    """A request message from a JSON body, rejecting what Google's front end rejects (bad JSON, unknown names)."""
    try:
        return cls.from_json(body.decode("utf-8") or "{}")
    except (json_format.ParseError, UnicodeDecodeError, ValueError) as e:
        raise RestError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid JSON payload received. {e}") from e


def _error_body(err: SimError) -> tuple[int, bytes]:
    status = err.http_status
    error: dict[str, Any] = {"code": status, "message": err.message, "status": err.code.name}
    details = [json_format.MessageToDict(d) for d in error_details(err)]
    if details:
        error["details"] = details
    return status, json.dumps({"error": error}, indent=2).encode()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], handler: type, rest: RestServer) -> None:
        self.rest = rest
        super().__init__(addr, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client hanging up is normal here
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ESF"  # what Google's front end calls itself
    sys_version = ""
    timeout = 120  # idle keep-alive connections end after this
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, verb: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            status, payload = _error_body(
                SimError(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "Request is missing required authentication credential. Expected OAuth 2 access token, "
                    "login cookie or other valid authentication credential.",
                )
            )
        else:
            status, payload = self.server.rest.handle(verb, urlsplit(self.path).path, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Vary", "Origin, X-Origin, Referer")
        self.end_headers()
        self.wfile.write(payload)


# ----- pointing gcloud at the simulator ---------------------------------------------------------------------------


def gcloud_env(
    rest_endpoint: str, state_dir: str | Path, project: str | None = None, token: str = TOKEN
) -> dict[str, str]:
    """The environment that makes gcloud talk to the REST front end at HOST:PORT, with a private config dir.

    Creates `state_dir/config` (CLOUDSDK_CONFIG: gcloud writes there, never in ~/.config/gcloud) and
    `state_dir/access-token` (any token works). Without `project`, set one per command (`--project`,
    CLOUDSDK_CORE_PROJECT) or once with `gcloud config set project P` (kept in the private config dir).
    """
    state = Path(state_dir).resolve()
    (state / "config").mkdir(parents=True, exist_ok=True)
    token_file = state / "access-token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    env = {
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER": f"http://{rest_endpoint}/",
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": str(token_file),
        "CLOUDSDK_CONFIG": str(state / "config"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        "CLOUDSDK_SURVEY_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "0",  # never probe the GCE metadata server for credentials
    }
    if project:
        env["CLOUDSDK_CORE_PROJECT"] = project
    return env


def write_gcloud_env(path: str | Path, endpoints: Any, project: str | None = None) -> Path:
    """Write `export NAME=VALUE` lines (for `. PATH`) that point gcloud at the simulator's REST front end.

    `endpoints` is `gkesim.server.Endpoints` (its `rest` must be set) or a plain "HOST:PORT". gcloud's private
    state (config dir, access-token file) goes in `PATH.d/` next to the file.
    """
    rest = endpoints if isinstance(endpoints, str) else getattr(endpoints, "rest", None)
    if not rest:
        raise ValueError("the simulator serves no Container REST endpoint (gkesim.rest not started)")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = gcloud_env(rest, out.parent / (out.name + ".d"), project)
    lines = [
        "# gcloud -> gkesim (Container API over REST). Load with: . " + shlex.quote(str(out.resolve())),
        "# CLOUDSDK_CORE_PROJECT is left to you: --project P, or gcloud config set project P.",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out)
    return out


def read_gcloud_env(path: str | Path) -> dict[str, str]:
    """The variables a file written by `write_gcloud_env` sets (for subprocess environments)."""
    env: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line.removeprefix("export "))
        if words and "=" in words[0]:
            key, _, value = words[0].partition("=")
            env[key] = value
    return env


__all__ = ["RestServer", "gcloud_env", "write_gcloud_env", "read_gcloud_env", "TOKEN"]
