"""`portcullis sim` and `portcullis demo`: the simulator as a foreground service, and the whole job against it."""

from __future__ import annotations

import argparse
import gc
import json
import signal
import threading
from pathlib import Path
from typing import Any

import yaml

from gkesim.server import Endpoints, Simulator
from gkesim.spec import FleetSpec, load_fleet_spec

DEFAULT_FLEET = Path(__file__).resolve().parent.parent / "config" / "sim-fleet.yaml"


def sim_config(endpoints: Endpoints, spec: FleetSpec, window_seconds: float = 2.0) -> dict[str, Any]:
    """A Portcullis configuration that points at a running simulator."""
    return {
        "scope": {"organization": spec.organization},
        "api": endpoints.portcullis_api_config(),
        "scan": {
            "window_seconds": window_seconds,
            "request_timeout_seconds": 10,
            "probe_start_timeout_seconds": 30,
            "probe_log_interval_seconds": 1,
        },
        "rollout": {
            "operation_poll_seconds": 0.2,
            "operation_timeout_seconds": 120,
            "default_soak_seconds": 0,
        },
    }


def write_yaml(path: str | Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    tmp.replace(path)  # appears whole, and only once the servers listen
    return path


def fleet_spec(args: argparse.Namespace) -> FleetSpec:
    if getattr(args, "clusters", None):
        from gkesim.generate import generate_fleet

        projects = args.projects or max(1, args.clusters // 20)
        spec = generate_fleet(args.clusters, projects, seed=args.seed)
    else:
        spec = load_fleet_spec(args.fleet or DEFAULT_FLEET)
    if getattr(args, "latency_ms", 0):
        spec.faults.latency_ms["*"] = args.latency_ms
    return spec


def run_sim(args: argparse.Namespace) -> int:
    spec = fleet_spec(args)
    sim = Simulator.from_spec(spec, time_scale=args.time_scale)
    endpoints = sim.start()
    # The fleet lives as long as this process: keep it out of the cyclic collector's full passes, which otherwise
    # stop every request for 0.1-0.3 s (1,000 clusters) each time the heap has grown by a quarter.
    gc.freeze()
    try:
        print(f"gkesim: {len(sim.fleet.clusters)} clusters in {len(sim.fleet.projects)} projects", flush=True)
        print(f"  gRPC (Container, Resource Manager): {endpoints.grpc}", flush=True)
        print(f"  Kubernetes API (HTTPS, per cluster path): https://{endpoints.kube}/k8s/P/L/C", flush=True)
        if endpoints.rest:
            print(f"  Container REST (gcloud): http://{endpoints.rest}/", flush=True)
        if args.kubeconfig_out:
            from gkesim.kube import write_kubeconfig

            write_kubeconfig(sim.fleet, args.kubeconfig_out, sim.host, sim.kube.port, Simulator.TOKEN)
            print(f"  kubeconfig: {args.kubeconfig_out}", flush=True)
        if args.gcloud_env_out:
            from gkesim.rest import write_gcloud_env

            write_gcloud_env(args.gcloud_env_out, endpoints)
            print(f"  gcloud environment: {args.gcloud_env_out}", flush=True)
        if args.config_out:
            write_yaml(args.config_out, sim_config(endpoints, spec))
            print(f"  Portcullis config: {args.config_out}", flush=True)
        print("ready (Ctrl-C to stop)", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    finally:
        sim.stop()
        print(json.dumps({"invariants": sim.fleet.invariant_report()}, indent=2, default=str), flush=True)
    return 0
