"""Approval between waves: a Prefect form in deployment runs, a terminal prompt for the CLI, or --yes.

Who approved and what they said go into the report, whichever way the answer came.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prefect.input import RunInput

from tasks.reporting.report import utc_now

APPROVAL_TIMEOUT_SECONDS = 7 * 24 * 3600  # a paused rollout waits a week for its operator, then fails


class WaveApproval(RunInput):
    """Shown in the Prefect UI's Resume form after each wave's soak."""

    approve: bool = True
    approver: str = ""
    comment: str = ""


TerminalApprover = Callable[[str, Sequence[Mapping[str, Any]]], tuple[bool, str, str]]
_terminal: TerminalApprover | None = None


def set_terminal_approver(fn: TerminalApprover | None) -> None:
    """The CLI registers a prompt here when it runs on a terminal without --yes."""
    global _terminal
    _terminal = fn


def _in_deployment() -> bool:
    from prefect.runtime import deployment

    return bool(deployment.id)


def _summary(wave: str, rows: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    lines = [f"### Wave `{wave}` finished", ""] + [f"- {k}: {v}" for k, v in sorted(counts.items())]
    return "\n".join(lines + ["", "Approve to start the next wave, or untick to halt the rollout."])


def ask_approval(wave: str, rows: Sequence[Mapping[str, Any]], auto_approve: bool) -> dict[str, Any]:
    asked_at = utc_now()
    if auto_approve:
        return {"approved": True, "by": "auto_approve", "via": "parameter", "at": asked_at}
    if _in_deployment():
        from prefect.flow_runs import pause_flow_run

        answer: WaveApproval = pause_flow_run(
            wait_for_input=WaveApproval.with_initial_data(description=_summary(wave, rows), approve=True),
            timeout=APPROVAL_TIMEOUT_SECONDS,
            key=f"approve-{wave}",
        )
        return {
            "approved": answer.approve,
            "by": answer.approver or "unnamed operator",
            "comment": answer.comment,
            "via": "prefect-ui",
            "at": utc_now(),
        }
    if _terminal is not None:
        approved, who, comment = _terminal(wave, rows)
        return {"approved": approved, "by": who, "comment": comment, "via": "terminal", "at": asked_at}
    return {
        "approved": False,
        "by": "",
        "comment": "no way to ask: not a deployment run, no terminal, no --yes",
        "via": "none",
        "at": asked_at,
    }
