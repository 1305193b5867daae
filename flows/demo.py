"""`portcullis demo`: the simulator in-process, the main job against it, and where to read the results."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from flows.simcmd import fleet_spec, sim_config, write_yaml
from gkesim.server import Simulator
from gkesim.spec import FleetSpec

RunCommand = Callable[[Sequence[str]], int]  # the CLI's own entry point, handed in by flows/cli.py


def run_demo(args: argparse.Namespace, run_command: RunCommand) -> int:
    return demo(fleet_spec(args), args, run_command)


def demo(spec: FleetSpec, args: argparse.Namespace, run_command: RunCommand) -> int:
    """The simulator in this process and `portcullis rollout --yes` against it, through `run_command` so the
    rollout is exactly the command an operator runs (its checks, exit status and interrupt handling)."""
    out_dir = Path("reports/demo")
    with Simulator.from_spec(spec, time_scale=args.time_scale) as sim:
        config_path = write_yaml(out_dir / "config.yaml", sim_config(sim.endpoints, spec))
        report = Path(args.report or out_dir / "rollout.json")
        print(
            f"demo: simulated fleet of {len(sim.fleet.clusters)} clusters; config {config_path}", flush=True
        )
        code = run_command(
            [
                "rollout",
                "--yes",
                "--config",
                str(config_path),
                "--report",
                str(report),
                *sum((["--cluster", c] for c in args.cluster), []),
            ]
        )
        invariants = sim.fleet.invariant_report()
    print(f"demo: report {report}", flush=True)
    print(
        "demo: simulator invariants "
        + json.dumps({k: (len(v) if isinstance(v, list) else v) for k, v in invariants.items()}),
        flush=True,
    )
    return code
