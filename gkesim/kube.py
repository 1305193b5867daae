"""The simulated Kubernetes API servers of every cluster of a fleet, on one HTTPS listener.

Each cluster is served under its own path prefix, `/k8s/PROJECT/LOCATION/CLUSTER`, which becomes the cluster's
`endpoint` (`https://{endpoint}` is the API server, as with GKE). The real clients work unchanged: the `kubernetes`
Python client, and kubectl through `write_kubeconfig`. Served: discovery and /version; Nodes built from the fleet's
current nodes; the node proxy's kubelet /metrics and /configz; Pods (with logs), ConfigMaps, Namespaces,
ServiceAccounts, DaemonSets, Deployments, ClusterRoles and ClusterRoleBindings (list, get, create, delete; see
`gkesim.kubestore`). Errors are `Status` objects. Faults: `faults.wrong_ca`, `node_read_timeouts`,
`node_read_timeout_rate` and `forbidden_node_proxy`; Autopilot never grants `nodes/proxy`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml

from gkesim.certs import issue_server_cert, make_ca
from gkesim.fleet import Fleet, SimCluster, SimNode
from gkesim.kube_http import _Handler, _HTTPServer
from gkesim.kubeapi import RBAC, timestamp
from gkesim.kubelet import DEFAULT_METRICS_BYTES, MetricsPayload
from gkesim.kubestore import KubeStore, get_store

PREFIX = "/k8s/"
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
        self.compress_metrics = True  # False: answer /metrics uncompressed even when asked for gzip
        self.connections_accepted = 0  # TLS connections set up by clients, over the server's life
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
