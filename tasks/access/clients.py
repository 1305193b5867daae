"""The only place clients are built: Google's gRPC clients from `api:` config, and one Kubernetes client per cluster.

Pointing Portcullis at the simulator or at Google is configuration, never a code path. TLS to a cluster is always
verified against the cluster's own CA from the GKE API; there is no switch to turn that off.
"""

from __future__ import annotations

import base64
import functools
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import google.auth
import grpc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import container_v1, resourcemanager_v3
from google.cloud.container_v1.services.cluster_manager.transports import ClusterManagerGrpcTransport
from google.cloud.resourcemanager_v3.services.folders.transports import FoldersGrpcTransport
from google.cloud.resourcemanager_v3.services.projects.transports import ProjectsGrpcTransport
from kubernetes import client as k8s
from urllib3.util.ssl_ import create_urllib3_context

from config.schema import Api

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


class TokenSource:
    """Bearer tokens for the clusters' Kubernetes APIs: the configured static token, or ADC's, refreshed early."""

    def __init__(self, static: str | None, credentials: Credentials | None) -> None:
        self._static = static
        self._credentials = credentials
        self._lock = threading.Lock()

    def token(self) -> str | None:
        if self._static:
            return self._static
        if self._credentials is None or isinstance(self._credentials, AnonymousCredentials):
            return None
        with self._lock:
            creds = self._credentials
            expiry = getattr(creds, "expiry", None)
            stale = not creds.token or (expiry is not None and expiry.timestamp() - time.time() < 300)
            if stale:
                import google.auth.transport.requests

                creds.refresh(google.auth.transport.requests.Request())
            return creds.token


@dataclass
class Clients:
    """Every client a run needs, built once and shared by its tasks (the gRPC clients are thread-safe)."""

    api: Api
    container: container_v1.ClusterManagerClient
    projects: resourcemanager_v3.ProjectsClient
    folders: resourcemanager_v3.FoldersClient
    tokens: TokenSource
    kube_pool_size: int = 32
    _channels: list[grpc.Channel] = field(default_factory=list, repr=False)

    def kube(self, endpoint: str, ca_certificate_b64: str) -> k8s.ApiClient:
        """A Kubernetes client for one cluster, verifying its API server against the cluster's own CA."""
        return kube_client(endpoint, ca_certificate_b64, self.tokens, self.kube_pool_size)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


def _credentials(api: Api) -> Credentials:
    if api.anonymous:
        return AnonymousCredentials()
    creds, _ = google.auth.default(scopes=SCOPES)
    return creds


def build_clients(api: Api, kube_pool_size: int = 32) -> Clients:
    creds = _credentials(api)
    channels: list[grpc.Channel] = []

    def channel(endpoint: str) -> grpc.Channel | None:
        if not api.plaintext:
            return None
        ch = grpc.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)  # loopback only (validated in config)
        channels.append(ch)
        return ch

    def make(client_cls: Any, transport_cls: Any, endpoint: str) -> Any:
        ch = channel(endpoint)
        if ch is not None:
            return client_cls(transport=transport_cls(channel=ch))
        return client_cls(credentials=creds, client_options=ClientOptions(api_endpoint=endpoint))

    container = make(container_v1.ClusterManagerClient, ClusterManagerGrpcTransport, api.container_endpoint)
    projects = make(resourcemanager_v3.ProjectsClient, ProjectsGrpcTransport, api.resourcemanager_endpoint)
    folders = make(resourcemanager_v3.FoldersClient, FoldersGrpcTransport, api.resourcemanager_endpoint)
    tokens = TokenSource(api.kubernetes_token, creds)
    return Clients(api, container, projects, folders, tokens, kube_pool_size, channels)


def kube_client(
    endpoint: str, ca_certificate_b64: str, tokens: TokenSource, pool_size: int = 32
) -> k8s.ApiClient:
    if not endpoint:
        raise ValueError("the cluster has no endpoint")
    if not ca_certificate_b64:
        raise ValueError("the cluster has no CA certificate (master_auth.cluster_ca_certificate)")
    ca_pem = base64.b64decode(ca_certificate_b64).decode("ascii")
    cfg = k8s.Configuration(host=f"https://{endpoint}")
    cfg.ssl_ca_cert = None
    cfg.ca_cert_data = ca_pem
    cfg.verify_ssl = True
    cfg.connection_pool_maxsize = pool_size
    token = tokens.token()
    if token is not None:
        cfg.api_key = {"authorization": token}  # seeded first, or the refresh hook never sends a header
        cfg.api_key_prefix = {"authorization": "Bearer"}

        def refresh(conf: k8s.Configuration) -> None:
            conf.api_key["authorization"] = tokens.token()

        cfg.refresh_api_key_hook = refresh
    api = k8s.ApiClient(cfg)
    # One SSLContext per cluster CA, trusting only that CA, instead of urllib3 building one and loading the CA for
    # every new connection (~1.5 ms of CPU each). Verification is the same: certificate and host name.
    pool_kw = api.rest_client.pool_manager.connection_pool_kw
    pool_kw["ssl_context"] = _cluster_ssl_context(ca_pem)
    pool_kw["ca_cert_data"] = None
    return api


@functools.lru_cache(maxsize=4096)
def _cluster_ssl_context(ca_pem: str) -> ssl.SSLContext:
    """urllib3's own TLS context (CERT_REQUIRED) trusting exactly this CA; shared by the cluster's connections."""
    ctx = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    ctx.load_verify_locations(cadata=ca_pem)
    return ctx
