"""What a flow run shows in the Prefect UI: table and markdown artifacts, and a live progress artifact."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from tasks.reporting import progress

MAX_TABLE_ROWS = 2000  # the UI struggles past this; the JSON report has everything


def _key(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:100]


def table(key: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
    clipped = [{k: _flat(v) for k, v in row.items()} for row in rows[:MAX_TABLE_ROWS]]
    if len(rows) > MAX_TABLE_ROWS:
        description += f" (first {MAX_TABLE_ROWS} of {len(rows)}; the JSON report has all)"
    create_table_artifact(key=_key(key), table=clipped, description=description)


def markdown(key: str, text: str, description: str = "") -> None:
    create_markdown_artifact(key=_key(key), markdown=text, description=description)


def summary_markdown(title: str, counts: Mapping[str, Mapping[str, int]], extra: str = "") -> str:
    lines = [f"# {title}", ""]
    for group, values in counts.items():
        lines += [f"## {group}", "", "| value | clusters |", "|---|---:|"]
        lines += [f"| {k} | {n} |" for k, n in sorted(values.items())]
        lines.append("")
    if extra:
        lines.append(extra)
    return "\n".join(lines)


def _flat(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={v}" for k, v in value.items())
    return value


class PrefectProgress:
    """A progress listener that keeps one Prefect progress artifact per phase, updated at most every second."""

    def __init__(self, min_interval: float = 1.0) -> None:
        self._ids: dict[str, Any] = {}
        self._last: dict[str, float] = {}
        self._min_interval = min_interval

    def start(self, phase: str, total: int) -> None:
        self._ids[phase] = create_progress_artifact(
            progress=0.0, key=_key(f"progress-{phase}"), description=phase
        )
        self._last[phase] = 0.0

    def advance(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase in self._ids and (now - self._last[phase] >= self._min_interval or done >= total):
            self._last[phase] = now
            update_progress_artifact(self._ids[phase], progress=100.0 * done / max(total, 1))

    def finish(self, phase: str) -> None:
        if phase in self._ids:
            update_progress_artifact(self._ids.pop(phase), progress=100.0)


class prefect_progress:  # noqa: N801 - used as a context manager like contextlib helpers
    """Show progress as Prefect artifacts for the duration of a flow body."""

    def __enter__(self) -> PrefectProgress:
        self.listener = PrefectProgress()
        progress.subscribe(self.listener)
        return self.listener

    def __exit__(self, *exc: object) -> None:
        progress.unsubscribe(self.listener)
