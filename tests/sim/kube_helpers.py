"""Helpers for tests that talk to gkesim's Kubernetes API servers with the real `kubernetes` client."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes import client

from gkesim.clock import Clock, ManualClock
from gkesim.fleet import Fleet, SimCluster
from gkesim.kube import KubeServer
from gkesim.spec import FleetSpec

TOKEN = "test-token"
PROJECT = "proj-k8s"
LOCATION = "us-central1"


def cluster_path(name: str, location: str = LOCATION, project: str = PROJECT) -> str:
    return f"projects/{project}/locations/{location}/clusters/{name}"


STD = cluster_path("std")
AUTO = cluster_path("auto", "europe-west1")
EMPTY = cluster_path("empty", "europe-west1")
FORBIDDEN = cluster_path("locked")
HANG = cluster_path("slow")
BADCA = cluster_path("badca")
NEVER = cluster_path("stuck-probe", "europe-west1")

ALL_AGENTS = [
    "datadog",
    "telegraf",
    "metrics-server",
    "heapster",
    "fluent-bit",
    "prometheus",
    "signalfx",
    "curl",
]


def small_spec() -> FleetSpec:
    """One Standard cluster with every agent and every kind of pool, Autopilot clusters, and one per fault."""
    return FleetSpec.model_validate(
        {
            "projects": [
                {
                    "id": PROJECT,
                    "clusters": [
                        {
                            "name": "std",
                            "location": LOCATION,
                            "agents": ALL_AGENTS,
                            "pools": [
                                {"name": "busy", "nodes": 2, "usage": "in_use", "rate_per_minute": 6.0},
                                {"name": "old", "nodes": 1, "usage": "used_before"},
                                {
                                    "name": "clean",
                                    "nodes": 1,
                                    "usage": "clean",
                                    "kubelet": {"cpu_manager_policy": "static", "pod_pids_limit": 4096},
                                },
                                {"name": "closed", "nodes": 1, "port": "disabled"},
                            ],
                        },
                        {
                            "name": "auto",
                            "location": "europe-west1",
                            "mode": "autopilot",
                            "agents": ["datadog"],
                            "pools": [{"name": "default-pool", "nodes": 2, "usage": "in_use"}],
                        },
                        {
                            "name": "empty",
                            "location": "europe-west1",
                            "mode": "autopilot",
                            "workloads": False,
                            "agents": ["metrics-server", "curl"],
                            "pools": [{"name": "default-pool", "nodes": 1}],
                        },
                        {
                            "name": "stuck-probe",
                            "location": "europe-west1",
                            "mode": "autopilot",
                            "pools": [{"name": "default-pool", "nodes": 1}],
                        },
                        {
                            "name": "locked",
                            "pools": [{"name": "default-pool", "nodes": 1, "usage": "in_use"}],
                        },
                        {"name": "slow", "pools": [{"name": "default-pool", "nodes": 1}]},
                        {"name": "badca", "pools": [{"name": "default-pool", "nodes": 1}]},
                    ],
                }
            ],
            "timings": {"probe_pod_start": 10.0, "probe_log_interval": 20.0},
            "faults": {
                "forbidden_node_proxy": [FORBIDDEN],
                "node_read_timeouts": [HANG],
                "wrong_ca": [BADCA],
                "probe_pods_never_start": [NEVER],
            },
        }
    )


def make_fleet(clock: Clock | None = None, spec: FleetSpec | None = None) -> Fleet:
    return Fleet(spec or small_spec(), clock or ManualClock(0.0))


@contextmanager
def running(fleet: Fleet, **kwargs) -> Iterator[KubeServer]:
    kwargs.setdefault("token", TOKEN)
    server = KubeServer(fleet, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def api_client(cluster: SimCluster, token: str = TOKEN) -> client.ApiClient:
    """A client configured exactly as a GKE caller would: endpoint and CA from the cluster; TLS verification on."""
    ca_pem = base64.b64decode(cluster.msg.master_auth.cluster_ca_certificate).decode()
    cfg = client.Configuration(
        host=f"https://{cluster.msg.endpoint}",
        ca_cert_data=ca_pem,
        api_key={"authorization": f"Bearer {token}"},
    )
    cfg.verify_ssl = True
    cfg.retries = 0
    return client.ApiClient(cfg)


def readonly_lines(payload: str) -> list[str]:
    return [
        line
        for line in payload.splitlines()
        if line.startswith("kubelet_http_requests_total{") and 'server_type="readonly"' in line
    ]


def family_value(payload: str, path: str, server_type: str) -> int | None:
    prefix = (
        f'kubelet_http_requests_total{{long_running="false",method="GET",path="{path}",'
        f'server_type="{server_type}"}} '
    )
    for line in payload.splitlines():
        if line.startswith(prefix):
            return int(line[len(prefix) :])
    return None
