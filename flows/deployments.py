"""The flows behind the deployments in prefect.yaml: what an operator starts from the Prefect UI or a schedule.

Each entry flow runs one of the project's flows inline (`.fn`), so a deployment run is one flow run: its
artifacts, logs and approval forms are all on one page. Parameters are typed with pydantic constraints: the UI
renders a form from them, and the server refuses a run whose parameters break them (enforce_parameter_schema).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from config.schema import CLUSTER_PATH, load_config
from flows.plan import plan_flow
from flows.rollout import rollout_flow
from flows.scan import scan_flow
from flows.verify import verify_flow
from tasks.change.approval import APPROVAL_TIMEOUT_SECONDS, WaveApproval
from tasks.change.waves import default_waves
from tasks.reporting.report import FlowReport, utc_now, write_json

# How often a paused run asks the server whether it was resumed (Prefect's default is 10 s).
APPROVAL_POLL_SECONDS = float(os.environ.get("PORTCULLIS_APPROVAL_POLL_SECONDS", "5"))

# Constraints live in the types (the UI and the server check them); descriptions in each flow's docstring.
ConfigPath = Annotated[str, Field(min_length=1)]
WaveName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]  # as config.schema.Wave.name
ClusterPath = Annotated[str, Field(pattern=CLUSTER_PATH.pattern)]
ReportDir = Annotated[str, Field(min_length=1)]

TASK_RUNNER = ThreadPoolTaskRunner(max_workers=32)  # bounded: Prefect drops events in big unbounded bursts
NOT_DONE = ("failed", "in_flight")


def report_path(report_dir: str, kind: str) -> str:
    """reports/<kind>-<UTC time>-<flow run name>.json: one file per run, sortable by time."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = re.sub(r"[^A-Za-z0-9_-]", "-", flow_run.get_name() or "local")
    return str(Path(report_dir) / f"{kind}-{stamp}-{name}.json")


def wave_names(config_path: str) -> list[str]:
    rollout = load_config(config_path).rollout
    return [w.name for w in (rollout.waves or default_waves(rollout))]


def _final_state(report: FlowReport, what: str) -> FlowReport | State:
    """Failed when a cluster failed or an operation was left running; else the report.

    Errors from the inventory (a project that cannot be read, a location that did not answer) are about clusters
    outside what the run did: they are logged and shown in the inventory artifacts, and do not fail the run.
    """
    summary = report.get("summary", {})
    if summary.get("errors"):
        get_run_logger().warning(
            "%s: %s inventory error(s); see the inventory-summary artifact", what, summary["errors"]
        )
    outcome = summary.get("outcome", {})
    bad = ", ".join(f"{outcome[k]} {k}" for k in NOT_DONE if outcome.get(k))
    if bad:
        return Failed(message=f"{what}: {bad}; see the report and the artifacts")
    return report


def _approval_text(wave: str, planned: dict[str, Any]) -> str:
    clusters = planned["clusters"]
    changes = sum(len(c["changes"]) for c in clusters)
    lines = [
        f"### Start wave `{wave}`?",
        "",
        f"- clusters in the wave: {len(clusters)}",
        f"- changes planned: {changes} (each is one GKE operation; a node pool change recreates its nodes)",
        "",
    ]
    lines += [
        f"- `{c['cluster']}`: {', '.join(ch['level'] for ch in c['changes']) or 'nothing'}"
        for c in clusters[:20]
    ]
    if len(clusters) > 20:
        lines.append(f"- ... and {len(clusters) - 20} more (see the `plan` artifact)")
    lines += [
        "",
        "Each cluster is scanned again right before it is changed; a cluster whose gate fails is left alone.",
    ]
    lines += ["Submit with Approve on to start the wave; switch Approve off to leave every cluster as it is."]
    return "\n".join(lines)


def approve_wave(wave: str, planned: dict[str, Any]) -> WaveApproval:
    """Pause this run until an operator answers the form in the UI (Resume)."""
    from prefect.flow_runs import pause_flow_run

    return pause_flow_run(
        wait_for_input=WaveApproval.with_initial_data(
            description=_approval_text(wave, planned), approve=True
        ),
        timeout=APPROVAL_TIMEOUT_SECONDS,
        poll_interval=APPROVAL_POLL_SECONDS,
        key=f"start-{wave}",
    )


@flow(name="rollout-wave", task_runner=TASK_RUNNER, log_prints=True)
def rollout_wave(
    config_path: ConfigPath,
    wave: WaveName,
    clusters: list[ClusterPath] = [],  # noqa: B006 - Prefect copies parameters; the UI needs a list default
    dry_run: bool = True,
    auto_approve: bool = False,
    report_dir: ReportDir = "reports",
) -> FlowReport | State:
    """Run one wave of the rollout: show its plan, wait for approval, then scan, gate, disable and verify.

    Args:
        config_path: Portcullis configuration (YAML) on the worker's machine, relative to the project folder.
        wave: Name of a wave in the config's rollout.waves (without waves: canary, five-percent, quarter, rest).
        clusters: Only these clusters (projects/P/locations/L/clusters/C); empty: every cluster the wave selects.
        dry_run: Plan and report only; change nothing.
        auto_approve: Start the wave without pausing for an operator's approval.
        report_dir: Folder for the run's JSON report (one file per run).
    """
    log = get_run_logger()
    names = wave_names(config_path)
    if wave not in names:
        raise ValueError(
            f"wave {wave!r} is not configured in {config_path}; its waves are: {', '.join(names)}"
        )
    approval: dict[str, Any] | None = None
    if not dry_run and not auto_approve:
        plan = plan_flow.fn(config_path, clusters or None, None)
        planned = next(w for w in plan["waves"] if w["name"] == wave)
        if not planned["clusters"]:
            log.info("wave %s selects no cluster that still needs the change: nothing to approve", wave)
        else:
            answer = approve_wave(wave, planned)
            approval = {
                "approved": answer.approve,
                "by": answer.approver or "unnamed operator",
                "comment": answer.comment,
                "via": "prefect-ui",
                "at": utc_now(),
            }
            if not answer.approve:
                path = write_json(
                    report_path(report_dir, f"wave-{wave}"),
                    {"kind": "rollout-wave", "wave": wave, "approval": approval, "clusters": []},
                )
                return Cancelled(
                    message=f"wave {wave} was not approved by {approval['by']} "
                    f"({answer.comment or 'no comment'}); nothing changed. Report: {path}"
                )
    report = rollout_flow.fn(
        config_path, clusters or None, None, dry_run=dry_run, auto_approve=auto_approve, waves=[wave]
    )
    if approval:
        report["approval"] = approval
    path = write_json(report_path(report_dir, f"wave-{wave}"), report)
    log.info("wave %s: %s; report %s", wave, report["summary"]["outcome"], path)
    return _final_state(report, f"wave {wave}")


@flow(name="org-rollout", task_runner=TASK_RUNNER, log_prints=True)
def org_rollout(
    config_path: ConfigPath,
    dry_run: bool = False,
    auto_approve: bool = False,
    report_dir: ReportDir = "reports",
) -> FlowReport | State:
    """Every wave in order, pausing for approval in the UI after each wave's soak (unless auto-approved).

    Args:
        config_path: Portcullis configuration (YAML) on the worker's machine, relative to the project folder.
        dry_run: Plan and report only; change nothing.
        auto_approve: Go on to the next wave without pausing for an operator's approval.
        report_dir: Folder for the run's JSON report (one file per run).
    """
    report = rollout_flow.fn(config_path, None, None, dry_run=dry_run, auto_approve=auto_approve, waves=None)
    path = write_json(report_path(report_dir, "rollout"), report)
    get_run_logger().info("rollout: %s; report %s", report["summary"]["outcome"], path)
    return _final_state(report, "rollout")


@flow(name="verify-fleet", task_runner=TASK_RUNNER, log_prints=True)
def verify_fleet(config_path: ConfigPath, report_dir: ReportDir = "reports") -> FlowReport:
    """Read every cluster's port setting at every level; change nothing. Drift shows in the artifacts.

    Args:
        config_path: Portcullis configuration (YAML) on the worker's machine, relative to the project folder.
        report_dir: Folder for the run's JSON report (one file per run).
    """
    report = verify_flow.fn(config_path, None, None)
    path = write_json(report_path(report_dir, "verify"), report)
    get_run_logger().info("verify: %s; report %s", report["summary"]["outcome"], path)
    return report


@flow(name="scan-fleet", task_runner=TASK_RUNNER, log_prints=True)
def scan_fleet(
    config_path: ConfigPath,
    clusters: list[ClusterPath] = [],  # noqa: B006
    report_dir: ReportDir = "reports",
) -> FlowReport:
    """Who still reads port 10255, per cluster, with evidence and culprits; change nothing.

    Args:
        config_path: Portcullis configuration (YAML) on the worker's machine, relative to the project folder.
        clusters: Only these clusters (projects/P/locations/L/clusters/C); empty: every cluster in scope.
        report_dir: Folder for the run's JSON report (one file per run).
    """
    report = scan_flow.fn(config_path, clusters or None, None)
    path = write_json(report_path(report_dir, "scan"), report)
    get_run_logger().info("scan: %s; report %s", report["summary"]["verdict"], path)
    return report
