"""`portcullis`: the operator's command line. Each command runs one flow and turns its report into an exit status.

Conventions other tools rely on: every command takes --config, --report (JSON) and a repeatable --cluster filter;
exit 0 when every selected cluster reached the goal, 1 when any did not or a project errored, 2 on bad usage or
bad config (nothing called, nothing changed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from config.schema import CLUSTER_PATH, ConfigError, load_config
from flows.terminal import TerminalProgress, print_findings
from tasks.report import console, counts_table, rows_table, write_csv

EXIT_OK, EXIT_NOT_DONE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _cluster_path(value: str) -> str:
    if not CLUSTER_PATH.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"--cluster must look like projects/P/locations/L/clusters/C, got {value!r}"
        )
    return value


def _common(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    p.add_argument("--config", required=config_required, help="Portcullis configuration file (YAML)")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument(
        "--cluster",
        action="append",
        type=_cluster_path,
        default=[],
        metavar="projects/P/locations/L/clusters/C",
        help="only this cluster (repeatable)",
    )


def _validated(args: argparse.Namespace) -> str:
    """Validate the config before any call is made; raise ConfigError with every problem."""
    load_config(args.config)
    return str(Path(args.config).resolve())


# ----- commands -------------------------------------------------------------------------------------------------


def cmd_inventory(args: argparse.Namespace) -> int:
    from flows.inventory import inventory_flow

    config_path = _validated(args)
    with TerminalProgress():
        report = inventory_flow(config_path, args.cluster or None, args.report)
    out = console()
    out.print(counts_table("Inventory", {k: v for k, v in report["summary"].items() if isinstance(v, dict)}))
    todo = [c for c in report["clusters"] if c["outcome"] != "compliant"]
    if todo:
        out.print(
            rows_table("Clusters that need work", todo, ["path", "mode", "version", "outcome", "reasons"])
        )
    print_findings(out, report["errors"])
    if args.csv:
        cols = [
            "project",
            "location",
            "name",
            "mode",
            "status",
            "version",
            "release_channel",
            "nap",
            "outcome",
            "eligibility",
            "cluster_default",
            "auto_config",
            "levels",
            "blocked_pools",
            "reasons",
        ]
        write_csv(args.csv, report["clusters"], cols)
    if args.report:
        out.print(f"report: {args.report}")
    done = not report["errors"] and all(c["outcome"] == "compliant" for c in report["clusters"])
    return EXIT_OK if done else EXIT_NOT_DONE


def cmd_sim(args: argparse.Namespace) -> int:
    from flows.simcmd import run_sim

    return run_sim(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.simcmd import run_demo

    return run_demo(args)


# ----- parser ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portcullis", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inventory", help="every cluster in scope and its port state at every level")
    _common(p)
    p.add_argument("--csv", help="also write a CSV of the clusters here")
    p.set_defaults(func=cmd_inventory)

    p = sub.add_parser("sim", help="run the GKE fleet simulator in the foreground")
    _common(p, config_required=False)
    p.add_argument("--fleet", help="fleet description YAML (default: config/sim-fleet.yaml)")
    p.add_argument("--clusters", type=int, help="generate a fleet of this many clusters instead")
    p.add_argument("--projects", type=int, default=None, help="... across this many projects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-scale", type=float, default=0.01, help="real seconds per simulated second")
    p.add_argument("--config-out", help="write a Portcullis config pointing at the simulator here")
    p.add_argument("--kubeconfig-out", help="write a kubeconfig with one context per cluster here")
    p.add_argument("--gcloud-env-out", help="write the environment lines that point gcloud at the simulator")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added latency per API call")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("demo", help="start the simulator and run the org-wide job against it")
    _common(p, config_required=False)
    p.add_argument("--fleet", help="fleet description YAML (default: config/sim-fleet.yaml)")
    p.add_argument("--time-scale", type=float, default=0.002)
    p.set_defaults(func=cmd_demo)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad usage exits 2 here
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"portcullis: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"portcullis: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
