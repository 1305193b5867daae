"""What the run in this process is doing right now, so that an interrupted run can still say what it left behind.

The CLI turns Ctrl-C (SIGINT) and SIGTERM into one path: `stopping` is set, so no thread sends another GKE
mutation or starts another probe; the probe objects are deleted; and a partial report accounts for every cluster
once: the finished ones with their outcome, those with an operation still running as `in_flight` (GKE has no safe
way to stop a kubelet configuration rollout half way, so it is left to finish), and the rest as not reached.
The next run reads GKE's state again and picks up from there.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

stopping = threading.Event()


class Interrupted(RuntimeError):
    """Raised in a worker thread that reaches a mutation or a probe after the run was interrupted."""


_lock = threading.RLock()
_handler: Callable[[int, Any], None] | None = None
_kind = ""
_clusters: dict[str, str] = {}  # path -> mode, every cluster this run accounts for
_done: dict[str, dict[str, Any]] = {}  # path -> its finished row
_ops: dict[int, dict[str, Any]] = {}  # mutations sent (or being sent) whose operation is not known DONE
_tokens = iter(range(1, 1 << 62))


def set_signal_handler(handler: Callable[[int, Any], None] | None) -> None:
    """The CLI's SIGINT/SIGTERM handler, which `reclaim_sigterm` puts back inside a flow run."""
    global _handler
    _handler = handler


def reclaim_sigterm() -> None:
    """At the start of a flow body: Prefect's engine installs its own SIGTERM handler for the run, which unwinds
    the main thread (and so waits for every worker). When the CLI started the run, take SIGTERM back so it takes
    Ctrl-C's path. A flow run started by a Prefect worker keeps Prefect's handling (cancellation from the UI)."""
    if _handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handler)


def reset() -> None:
    global _kind
    with _lock:
        _kind = ""
        _clusters.clear()
        _done.clear()
        _ops.clear()
    stopping.clear()


def begin(kind: str, clusters: Iterable[tuple[str, str]]) -> None:
    """The run's kind (rollout, scan) and every cluster it accounts for, with its mode."""
    global _kind
    with _lock:
        _kind = kind
        _clusters.update(dict(clusters))


def finished(kind: str, row: dict[str, Any]) -> None:
    """A cluster's final row (it has a "cluster" key), recorded only for a run of this kind."""
    with _lock:
        if kind == _kind:
            _done[row["cluster"]] = row


def check() -> None:
    if stopping.is_set():
        raise Interrupted("the run was interrupted: nothing new is started")


def sending(cluster: str, level: str) -> int:
    """Register a mutation about to be sent; raise Interrupted instead once the run is stopping."""
    with _lock:
        check()
        token = next(_tokens)
        _ops[token] = {"cluster": cluster, "level": level, "operation": None, "sent_at": time.time()}
        return token


def operation_started(token: int, operation: str) -> None:
    with _lock:
        if token in _ops:
            _ops[token]["operation"] = operation


def operation_ended(token: int) -> None:
    with _lock:
        _ops.pop(token, None)


def in_flight() -> list[dict[str, Any]]:
    """Mutations sent whose operation was not seen DONE (operation None: sent, no answer yet)."""
    with _lock:
        return [dict(op) for op in _ops.values()]


def partial_report(signal_name: str, exit_status: int, leftovers: list[str]) -> dict[str, Any]:
    """Every cluster once: finished rows as they were, running operations as in_flight, the rest not reached."""
    ops = in_flight()
    with _lock:
        kind, clusters, done = _kind or "run", dict(_clusters), dict(_done)
    running: dict[str, list[dict[str, Any]]] = {}
    for op in ops:
        running.setdefault(op["cluster"], []).append(op)
    rows = []
    for path in sorted(set(clusters) | set(done) | set(running)):
        project, location, name = path.split("/")[1::2]
        if path in running:
            names = ", ".join(
                op["operation"] or f"{op['level']} (sent, no answer yet)" for op in running[path]
            )
            row = {
                **done.get(path, {}),
                "cluster": path,
                "outcome": "in_flight",
                "reason": f"interrupted ({signal_name}) while operation(s) ran: {names}; left to finish, "
                "rerun to verify",
                "operations": running[path],
            }
        elif path in done:
            row = done[path]
        else:
            row = {
                "cluster": path,
                "mode": clusters.get(path, ""),
                "outcome": "not_scanned" if kind == "scan" else "skipped",
                "reason": f"interrupted ({signal_name}) before this cluster was reached; rerun",
            }
        rows.append({"project": project, "location": location, "name": name, **row})
    counts: dict[str, int] = {}
    for row in rows:
        key = str(row.get("outcome") or row.get("verdict"))
        counts[key] = counts.get(key, 0) + 1
    return {
        "kind": kind,
        "interrupted": True,
        "signal": signal_name,
        "exit_status": exit_status,
        "ok": False,
        "summary": {"clusters": len(rows), "outcome": counts, "in_flight": len(ops)},
        "in_flight": ops,
        "probe_leftovers": leftovers,
        "clusters": rows,
    }
