"""Start and stop every simulator server around one fleet: gRPC (Container + Resource Manager) and Kubernetes HTTPS.

Used the same way by `portcullis sim`, `portcullis demo`, the tests and the benchmarks.
"""

from __future__ import annotations

import sys
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from gkesim.clock import Clock
from gkesim.container import container_handlers
from gkesim.fleet import Fleet
from gkesim.kube import KubeServer
from gkesim.resourcemanager import resourcemanager_handlers
from gkesim.spec import FleetSpec, load_fleet_spec


@dataclass(frozen=True)
class Endpoints:
    grpc: str  # HOST:PORT serving ClusterManager, Projects and Folders
    kube: str  # HOST:PORT of the Kubernetes API server (clusters by path prefix)
    rest: str | None = None  # HOST:PORT of the Container REST API (gcloud), when served

    def portcullis_api_config(self) -> dict[str, Any]:
        return {
            "container_endpoint": self.grpc,
            "resourcemanager_endpoint": self.grpc,
            "plaintext": True,
            "anonymous": True,
            "kubernetes_token": Simulator.TOKEN,
        }


class Simulator:
    """A running simulated fleet. Use as a context manager, or start()/stop()."""

    TOKEN = "gkesim-token"  # the bearer token every simulated cluster accepts

    def __init__(self, fleet: Fleet, host: str = "127.0.0.1", grpc_workers: int = 64) -> None:
        self.fleet = fleet
        self.host = host
        self._grpc_workers = grpc_workers
        self._grpc: grpc.Server | None = None
        self.kube = KubeServer(fleet, host=host, token=self.TOKEN)
        self.rest: Any = None
        self.endpoints: Endpoints | None = None

    @classmethod
    def from_spec(cls, spec: FleetSpec, time_scale: float = 1.0, **kwargs: Any) -> Simulator:
        return cls(Fleet(spec, Clock(time_scale)), **kwargs)

    @classmethod
    def from_file(cls, path: str | Path, time_scale: float = 1.0, **kwargs: Any) -> Simulator:
        return cls.from_spec(load_fleet_spec(path), time_scale, **kwargs)

    def start(self) -> Endpoints:
        server, port = build_server(self.fleet, self.host, 0, self._grpc_workers)
        self._grpc = server
        kube_port = self.kube.start()
        rest = None
        try:
            from gkesim.rest import RestServer  # the gcloud-facing REST front end, when present
        except ImportError:
            RestServer = None  # noqa: N806
        if RestServer is not None:
            self.rest = RestServer(self.fleet, host=self.host)
            rest = f"{self.host}:{self.rest.start()}"
        self.endpoints = Endpoints(grpc=f"{self.host}:{port}", kube=f"{self.host}:{kube_port}", rest=rest)
        return self.endpoints

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None
        self.kube.stop()
        if self.rest is not None:
            self.rest.stop()
            self.rest = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_server(
    fleet: Any, host: str = "127.0.0.1", port: int = 0, workers: int = 64
) -> tuple[grpc.Server, int]:
    """A started gRPC server with the Container and Resource Manager services of this fleet."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gkesim-grpc"),
        options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
    )
    server.add_generic_rpc_handlers(tuple(container_handlers(fleet) + resourcemanager_handlers(fleet)))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


def serve_forever(
    clusters: int, projects: int, seed: int = 0, host: str = "127.0.0.1", port: int = 0, workers: int = 64
) -> None:
    """Generate a fleet and serve it until stdin closes; prints `READY <port> <build seconds>` once listening.

    For benchmarks that need the server in its own process (its own GIL):
    `python -c "from gkesim.server import serve_forever; serve_forever(10000, 500)"`.
    """
    import time

    from gkesim.generate import generate_fleet

    t0 = time.perf_counter()
    fleet = Fleet(generate_fleet(clusters, projects, seed=seed))
    built = time.perf_counter() - t0
    server, bound = build_server(fleet, host, port, workers)
    print(f"READY {bound} {built:.2f}", flush=True)
    try:
        sys.stdin.read()  # the parent closes our stdin (or dies) to stop us
    finally:
        server.stop(grace=None)
