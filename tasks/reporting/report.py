"""Reports, written for people and for programs: a JSON file, an optional CSV, and a terminal summary.

JSON is written atomically (temp file, then rename) so a rollout killed mid-write never leaves half a report.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections import Counter, UserDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def utc_now() -> str:
    """The time for a report: UTC to the second, RFC 3339 with a Z (one format in every report)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class FlowReport(UserDict[str, Any]):
    """A report as a flow's return value: a mapping like the dict it holds, which Prefect keeps as one value.
    Prefect walks a returned dict or list node by node looking for futures and states when the flow ends (~0.5 s
    for a 1,000-cluster rollout report, ~3 s for a 10,000-cluster inventory); it does not look inside a UserDict."""


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(dict(data), fh, indent=2, sort_keys=False, default=str)  # a FlowReport is not a dict
        fh.write("\n")
    os.replace(tmp, path)
    return path


def count_by(values: Iterable[Any]) -> dict[str, int]:
    """How many times each value (an outcome, a verdict) occurs: the summaries' and artifacts' counts."""
    return dict(Counter(str(v) for v in values))


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
    return path


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)


def counts_table(title: str, counts: Mapping[str, Mapping[str, int]]) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("value")
    table.add_column("clusters", justify="right")
    for group, values in counts.items():
        for key, n in sorted(values.items()):
            table.add_row(group, key, str(n))
    return table


def rows_table(title: str, rows: Iterable[Mapping[str, Any]], columns: list[str], limit: int = 60) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    for col in columns:
        table.add_column(col)
    rows = list(rows)
    for row in rows[:limit]:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    if len(rows) > limit:
        table.caption = f"{len(rows) - limit} more in the JSON report"
    return table


def console(stderr: bool = False) -> Console:
    """A console for summaries; when output is not a terminal (CI logs, pipes) it is wide enough for paths."""
    import sys

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 160)
