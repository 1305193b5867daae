"""The terminal side of long work: a rich progress bar fed by tasks.reporting.progress, and findings printed plainly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tasks.reporting import progress


class TerminalProgress:
    """A progress bar per phase on stderr, for as long as the `with` block runs."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def start(self, phase: str, total: int) -> None:
        self._tasks[phase] = self._bar.add_task(phase, total=total)

    def advance(self, phase: str, done: int, total: int) -> None:
        if phase in self._tasks:
            self._bar.update(self._tasks[phase], completed=done, total=total)

    def finish(self, phase: str) -> None:
        if phase in self._tasks:
            task = self._tasks.pop(phase)
            self._bar.update(task, completed=self._bar.tasks[task].total)

    def __enter__(self) -> TerminalProgress:
        self._bar.start()
        progress.subscribe(self)
        return self

    def __exit__(self, *exc: object) -> None:
        progress.unsubscribe(self)
        self._bar.stop()


def print_findings(out: Console, findings: Sequence[Mapping[str, Any]]) -> None:
    if not findings:
        return
    out.print(
        f"[bold]{len(findings)} error(s) in scope: the inventory is incomplete, clusters under these may be "
        "missing from this report[/bold]"
    )
    for f in findings:
        out.print(f"  - {f['kind']} {f['scope']}: {f['message']}\n      what to do: {f['action']}")
