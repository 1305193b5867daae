"""A gRPC server made only of the Container and Resource Manager handlers, and the real clients pointed at it.

Independent of gkesim.server (which also starts the Kubernetes server). Time is a ManualClock: tests advance it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.cloud import container_v1, resourcemanager_v3
from google.cloud.container_v1.services.cluster_manager.transports import ClusterManagerGrpcTransport
from google.cloud.resourcemanager_v3.services.folders.transports import FoldersGrpcTransport
from google.cloud.resourcemanager_v3.services.projects.transports import ProjectsGrpcTransport

from gkesim.clock import ManualClock
from gkesim.container import container_handlers
from gkesim.fleet import Fleet
from gkesim.resourcemanager import resourcemanager_handlers
from gkesim.spec import FleetSpec


@dataclass
class GrpcSim:
    fleet: Fleet
    clock: ManualClock
    address: str
    channel: grpc.Channel
    container: container_v1.ClusterManagerClient
    projects: resourcemanager_v3.ProjectsClient
    folders: resourcemanager_v3.FoldersClient

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


@contextmanager
def grpc_sim(spec: FleetSpec | dict[str, Any], workers: int = 8) -> Iterator[GrpcSim]:
    if isinstance(spec, dict):
        spec = FleetSpec.model_validate(spec)
    clock = ManualClock()
    fleet = Fleet(spec, clock)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers(tuple(container_handlers(fleet) + resourcemanager_handlers(fleet)))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(address)
    try:
        yield GrpcSim(
            fleet=fleet,
            clock=clock,
            address=address,
            channel=channel,
            container=container_v1.ClusterManagerClient(
                transport=ClusterManagerGrpcTransport(channel=channel)
            ),
            projects=resourcemanager_v3.ProjectsClient(transport=ProjectsGrpcTransport(channel=channel)),
            folders=resourcemanager_v3.FoldersClient(transport=FoldersGrpcTransport(channel=channel)),
        )
    finally:
        channel.close()
        server.stop(grace=None)
