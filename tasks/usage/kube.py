"""Reads from a cluster's Kubernetes API: nodes by pool, a node's /metrics and /configz, pods and ConfigMaps.

Responses are taken raw (`_preload_content=False`): metrics are streamed through the line filter instead of
buffered, and object lists are read as the API's own JSON, which is what the culprit finder matches on.
Every failure is turned into words a platform engineer can act on (which permission, which endpoint).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tasks.usage.metrics import GzipError, NodeReading, gunzip, read_node_metrics

T = TypeVar("T")
POOL_LABEL = "cloud.google.com/gke-nodepool"
CHUNK = 256 * 1024
DRAIN_LIMIT = 8 * 1024 * 1024
"""Past the family, up to this much of a response is read and dropped so its connection can serve the next read
(a new TLS connection costs about what 1 MB of reading does); a longer rest closes the connection instead."""


@dataclass(frozen=True)
class Node:
    name: str
    pool: str


class KubeReadError(Exception):
    """A read that failed, with the reason in words (never containing the bearer token)."""


def explain(exc: BaseException, what: str) -> str:
    """Why a Kubernetes read failed, naming the permission, certificate or endpoint problem."""
    if isinstance(exc, ApiException):
        if exc.status == 403:
            return (
                f"{what}: forbidden (403); the caller needs IAM container.nodes.proxy "
                "(Kubernetes RBAC get on nodes/proxy) to read a node through the API server"
            )
        if exc.status == 401:
            return f"{what}: unauthorized (401); the token was refused"
        return f"{what}: HTTP {exc.status} {exc.reason}"
    text = str(exc)
    if isinstance(exc, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text:
        return f"{what}: TLS verification failed: the API server's certificate does not match the cluster CA"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError) or "timed out" in text.lower():
        return f"{what}: timed out"
    if isinstance(exc, urllib3.exceptions.MaxRetryError | urllib3.exceptions.NewConnectionError):
        return f"{what}: endpoint unreachable"
    return f"{what}: {type(exc).__name__}"


def _timeout(seconds: float) -> tuple[float, float]:
    return (min(10.0, seconds), seconds)


def list_nodes(api: k8s.ApiClient, timeout: float) -> list[Node]:
    resp = k8s.CoreV1Api(api).list_node(_preload_content=False, _request_timeout=_timeout(timeout))
    items = json.loads(resp.data).get("items", [])
    return [Node(i["metadata"]["name"], i["metadata"].get("labels", {}).get(POOL_LABEL, "")) for i in items]


def _finish(resp: urllib3.HTTPResponse) -> None:
    """Give the connection back for the next read: drain what is left of the body unread (raw, never inflated)."""
    try:
        left = resp.length_remaining  # None for a chunked body
        drained = 0
        if left is None or left <= DRAIN_LIMIT:
            for part in resp.stream(CHUNK, decode_content=False):
                drained += len(part)
                if drained > DRAIN_LIMIT:
                    break
    except (urllib3.exceptions.HTTPError, OSError):
        pass  # the connection is dropped below: the reading is already complete
    finally:
        resp.release_conn()  # urllib3 discards a connection whose body was not read to the end


def read_metrics(api: k8s.ApiClient, node: str, timeout: float, max_bytes: int) -> NodeReading:
    """One node's kubelet_http_requests_total through the API server proxy (port 10250 on the node).

    Asks for gzip, as Prometheus does: the kubelet compresses /metrics ~13x when asked and the API server's proxy
    passes the encoding through, so a 2 MB payload is ~130 KB on the wire. Decompression is lazy and stops after
    the family's block (~9% in), so a reading inflates ~200 KB. A server that ignores the ask answers plain text,
    which is read the same way.
    """
    try:
        resp = k8s.CoreV1Api(api).connect_get_node_proxy_with_path(
            node,
            "metrics",
            _preload_content=False,
            _request_timeout=_timeout(timeout),
            _headers={"Accept-Encoding": "gzip"},
        )
        try:
            body: Iterator[bytes] = resp.stream(CHUNK, decode_content=False)
            if resp.headers.get("Content-Encoding", "").strip().lower() == "gzip":
                body = gunzip(body, CHUNK)
            return read_node_metrics(body, max_bytes, stop_after_family=True)
        finally:
            _finish(resp)
    except GzipError as exc:
        return NodeReading(error=f"node {node} /metrics: {exc}")
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        return NodeReading(error=explain(exc, f"node {node} /metrics"))


def read_configz(api: k8s.ApiClient, node: str, timeout: float) -> dict[str, Any]:
    resp = k8s.CoreV1Api(api).connect_get_node_proxy_with_path(
        node, "configz", _preload_content=False, _request_timeout=_timeout(timeout)
    )
    return json.loads(resp.data)


def readonly_port(configz: dict[str, Any]) -> int:
    """The running kubelet's read-only port; 0 or absent means closed."""
    return int((configz.get("kubeletconfig") or {}).get("readOnlyPort") or 0)


TRANSIENT_STATUS = {429, 500, 502, 503, 504}


def is_transient(exc: BaseException) -> bool:
    """A Kubernetes answer worth asking again: throttled, a server error, or a connection cut mid-answer."""
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUS
    return isinstance(exc, urllib3.exceptions.ProtocolError)


def _direct(fn: Callable[[], T]) -> T:
    return fn()


def list_all(
    api: k8s.ApiClient,
    kind: str,
    timeout: float,
    page: int = 500,
    retry: Callable[[Callable[[], Any]], Any] = _direct,
) -> list[dict[str, Any]]:
    """Every Pod or ConfigMap in every namespace, as the API's JSON, paged; each page one call through `retry`.

    A `continue` token the API server no longer honours (410 Gone: its snapshot was compacted away) starts the
    list again from the first page, once, as the API documents; a second expiry is raised.
    """
    core = k8s.CoreV1Api(api)
    fn = {"Pod": core.list_pod_for_all_namespaces, "ConfigMap": core.list_config_map_for_all_namespaces}[kind]
    items: list[dict[str, Any]] = []
    token = None
    restarted = False
    while True:
        kwargs: dict[str, Any] = {
            "limit": page,
            "_preload_content": False,
            "_request_timeout": _timeout(timeout),
        }
        if token:
            kwargs["_continue"] = token
        try:
            body = json.loads(retry(lambda kwargs=kwargs: fn(**kwargs).data))
        except ApiException as exc:
            if exc.status != 410 or not token or restarted:
                raise
            items, token, restarted = [], None, True
            continue
        for item in body.get("items", []):
            item.setdefault("kind", kind)
            items.append(item)
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return items
