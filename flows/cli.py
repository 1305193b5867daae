"""`portcullis`: the operator's command line. Each command runs one flow and turns its report into an exit status.

Conventions other tools rely on: every command takes --config, --report (JSON) and a repeatable --cluster filter;
exit 0 when every selected cluster reached the goal, 1 when any did not or a project errored, 2 on bad usage or
bad config (nothing called, nothing changed), 130 when interrupted by Ctrl-C (SIGINT) and 143 by SIGTERM.

Interrupted (SIGINT and SIGTERM take the same path): nothing new is started, the Autopilot probe objects are
deleted, GKE operations already running are left to finish, and the --report file is written with every cluster
once, those with a running operation as `in_flight`. The next run reads GKE's state and picks up from there.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.schema import CLUSTER_PATH, ConfigError, load_config
from flows.terminal import TerminalProgress, print_findings
from tasks.reporting.report import console, counts_table, rows_table, write_csv

EXIT_OK, EXIT_NOT_DONE, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM  # 130, 143: as a shell reports them
_signals: list[int] = []
_interrupt = threading.Event()

# Without PREFECT_API_URL, Prefect starts a temporary local server; its first start migrates a database and can
# take longer than Prefect's default 20 s on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


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
            rows_table(
                "Clusters that need work",
                todo,
                ["project", "location", "name", "mode", "version", "outcome", "reasons"],
            )
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
    _said_report(out, args)
    done = not report["errors"] and all(c["outcome"] == "compliant" for c in report["clusters"])
    return EXIT_OK if done else EXIT_NOT_DONE


def cmd_scan(args: argparse.Namespace) -> int:
    from flows.scan import scan_flow

    config_path = _validated(args)
    with TerminalProgress():
        report = scan_flow(config_path, args.cluster or None, args.report)
    out = console()
    out.print(counts_table("Scan", {"verdict": report["summary"]["verdict"]}))
    for row in report["clusters"]:
        out.print(
            f"[bold]{row['cluster']}[/bold] ({row['mode']}): {row['verdict']}"
            f" - gate {'passes' if row['gate_passes'] else 'blocked'}: {row['gate_reason']}"
        )
        if row["evidence"]:
            out.print(
                rows_table(
                    "evidence", row["evidence"], ["node", "pool", "path", "count", "increase"], limit=12
                )
            )
        for c in row["culprits"][:10]:
            out.print(f"    culprit {c['kind']} {c['namespace']}/{c['name']} {c['field']}: {c['advice']}")
    print_findings(out, report["errors"])
    _said_report(out, args)
    ok = (
        not report["errors"]
        and not report["not_scanned"]
        and all(r["verdict"] == "clear" for r in report["clusters"])
    )
    return EXIT_OK if ok else EXIT_NOT_DONE


def cmd_plan(args: argparse.Namespace) -> int:
    from flows.plan import plan_flow

    config_path = _validated(args)
    with TerminalProgress():
        report = plan_flow(config_path, args.cluster or None, args.report)
    out = console()
    for wave in report["waves"]:
        rows = [
            {
                "cluster": c["cluster"],
                "changes": [ch["level"] for ch in c["changes"]],
                "left alone": [n["level"] + ": " + n["noop"] for n in c["left_alone"]],
            }
            for c in wave["clusters"]
        ]
        out.print(
            rows_table(
                f"wave {wave['name']} (concurrency {wave['concurrency']}, soak {wave['soak_seconds']}s)",
                rows,
                ["cluster", "changes", "left alone"],
            )
        )
    if report["skipped"]:
        out.print(rows_table("Not in any wave", report["skipped"], ["cluster", "outcome", "reason"]))
    print_findings(out, report["errors"])
    _said_report(out, args)
    return EXIT_OK if not report["errors"] else EXIT_NOT_DONE


def _rollout_summary(out: Any, report: dict[str, Any], args: argparse.Namespace) -> int:
    out.print(
        counts_table(report["kind"].capitalize(), {"outcome": report.get("summary", {}).get("outcome", {})})
    )
    todo = [
        c for c in report["clusters"] if c["outcome"] not in ("verified", "already_compliant", "rolled_back")
    ]
    if todo:
        out.print(
            rows_table("Clusters not at the goal", todo, ["project", "location", "name", "outcome", "reason"])
        )
    print_findings(out, report["errors"])
    _said_report(out, args)
    return EXIT_OK if report["ok"] else EXIT_NOT_DONE


def cmd_rollout(args: argparse.Namespace) -> int:
    from flows.rollout import rollout_flow
    from tasks.change.approval import set_terminal_approver

    config_path = _validated(args)
    if not args.yes and not args.dry_run:
        if not sys.stdin.isatty():
            raise UsageError(
                "approval between waves needs a terminal: pass --yes to approve every wave, "
                "or run the rollout-wave deployment and approve in the Prefect UI"
            )
        set_terminal_approver(_terminal_approval)
    with TerminalProgress():
        report = rollout_flow(
            config_path, args.cluster or None, args.report, args.dry_run, args.yes, args.wave or None
        )
    return _rollout_summary(console(), report, args)


def _terminal_approval(wave: str, rows: Any) -> tuple[bool, str, str]:
    answer = (
        input(f"wave {wave} finished ({len(rows)} clusters). Start the next wave? [y/N] ").strip().lower()
    )
    import getpass

    return answer in ("y", "yes"), getpass.getuser(), "answered on the terminal"


def cmd_verify(args: argparse.Namespace) -> int:
    from flows.verify import verify_flow

    config_path = _validated(args)
    with TerminalProgress():
        report = verify_flow(config_path, args.cluster or None, args.report)
    out = console()
    out.print(counts_table("Verification", {"outcome": report["summary"]["outcome"]}))
    drift = [c for c in report["clusters"] if c["outcome"] != "compliant"]
    if drift:
        out.print(rows_table("Not compliant", drift, ["cluster", "outcome", "not_disabled"]))
    print_findings(out, report["errors"])
    _said_report(out, args)
    return EXIT_OK if report["ok"] else EXIT_NOT_DONE


def cmd_rollback(args: argparse.Namespace) -> int:
    from flows.rollback import rollback_flow

    config_path = _validated(args)
    if not args.cluster:
        raise UsageError("rollback needs at least one --cluster projects/P/locations/L/clusters/C")
    if args.node_pool and len(args.cluster) != 1:
        raise UsageError("--node-pool needs exactly one --cluster")
    report = rollback_flow(config_path, args.cluster, args.node_pool or None, args.report, args.dry_run)
    return _rollout_summary(console(), report, args)


def _said_report(out: Any, args: argparse.Namespace) -> None:
    if args.report:
        out.print(f"report: {args.report}")


def cmd_sim(args: argparse.Namespace) -> int:
    from flows.simcmd import run_sim

    return run_sim(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo

    return run_demo(args, main)


# ----- parser ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portcullis",
        description=__doc__.split("\n")[0],
        epilog="exit status: 0 every selected cluster reached the goal; 1 some did not, or a project errored; "
        "2 bad usage or configuration (nothing called); 130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM "
        "(probe objects deleted, running operations left to finish and listed as in_flight in --report)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inventory", help="every cluster in scope and its port state at every level")
    _common(p)
    p.add_argument("--csv", help="also write a CSV of the clusters here")
    p.set_defaults(func=cmd_inventory)

    p = sub.add_parser("scan", help="who still reads port 10255, and the gate verdict per cluster")
    _common(p)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser(
        "plan", help="which cluster goes in which wave and what would change (changes nothing)"
    )
    _common(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("rollout", help="disable the port wave by wave where the gate is clear, and verify")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="go through everything, change nothing")
    p.add_argument("--yes", action="store_true", help="approve every wave (no pause between waves)")
    p.add_argument("--wave", action="append", default=[], help="run only this wave (repeatable)")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("verify", help="no writes: compliant, drifted or not eligible per cluster")
    _common(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("rollback", help="set the port back to enabled on the named clusters or pools")
    _common(p)
    p.add_argument("--node-pool", action="append", default=[], help="only this node pool (repeatable)")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_rollback)

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


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT and SIGTERM take one path: nothing new starts, and the interrupt thread winds the run down."""
    from tasks.reporting import live

    if not _signals:
        _signals.append(signum)
    live.stopping.set()
    _interrupt.set()


def _interrupted(args: argparse.Namespace) -> None:
    """Delete the probe objects, write the partial report atomically, and exit 130 (SIGINT) or 143 (SIGTERM).

    Runs in its own thread, so it never waits for the main thread to unwind (which would wait for every worker
    still polling an operation); worker threads see `live.stopping` and send nothing new meanwhile.
    """
    from tasks.reporting import live
    from tasks.reporting.report import write_json
    from tasks.usage.probe import cleanup_all

    live.stopping.set()
    signum = _signals[0] if _signals else signal.SIGINT
    name, code = signal.Signals(signum).name, 128 + signum
    print(
        f"portcullis: interrupted ({name}): deleting probe objects; operations already running are left to finish",
        file=sys.stderr,
    )
    leftovers = cleanup_all()
    report = live.partial_report(name, code, leftovers)
    if getattr(args, "report", None):
        write_json(args.report, report)
    for op in report["in_flight"]:
        what = op["operation"] or "sent, no answer yet"
        print(f"  in flight: {op['cluster']} {op['level']}: {what}", file=sys.stderr)
    for left in leftovers:
        print(f"  NOT deleted: {left}", file=sys.stderr)
    if getattr(args, "report", None):
        print(f"  partial report: {args.report}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()  # Prefect's own clean-up (a temporary API server), without joining worker threads
    os._exit(code)  # worker threads may still be polling operations: do not wait for them


def _watch(args: argparse.Namespace, event: threading.Event) -> None:
    event.wait()
    if _signals:
        _interrupted(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad usage exits 2 here
    global _interrupt
    previous = {}
    if threading.current_thread() is threading.main_thread() and args.command != "sim":
        from tasks.reporting import live

        _interrupt = threading.Event()
        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        live.set_signal_handler(_on_signal)  # flows take SIGTERM back from Prefect's engine
        watcher = threading.Thread(
            target=_watch, args=(args, _interrupt), name="portcullis-interrupt", daemon=True
        )
        watcher.start()
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"portcullis: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"portcullis: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if not previous:
            raise
        _on_signal(signal.SIGINT, None)  # a KeyboardInterrupt raised some other way
        threading.Event().wait()  # the interrupt thread exits the process
        raise
    finally:
        from tasks.reporting import live

        live.set_signal_handler(None)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if previous and not _signals:
            _interrupt.set()  # no signal came: let the interrupt thread end


if __name__ == "__main__":
    sys.exit(main())
