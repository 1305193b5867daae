"""What every task of one run shares: the validated config, the clients, and the retry policy with its budget.

Built once per process and config, so Prefect tasks running in threads reuse gRPC channels instead of
opening their own, and one retry budget covers the whole run.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from config.schema import Config, load_config
from tasks.access.clients import Clients, build_clients
from tasks.access.retry import Caller

log = logging.getLogger(__name__)


class WorkQueue:
    """A fixed number of worker threads that run each task once it is due, the most urgent (lowest priority) first.

    Shared by every scan of a run, so node reads across all batches are bounded together and one batch's
    background work (culprit searches) never runs ahead of another batch's node reads. Threads start on demand
    and end after `idle_seconds` without work. A task's exception is logged, never raised: tasks report their own.
    """

    def __init__(self, workers: int, idle_seconds: float = 5.0) -> None:
        self.workers = workers
        self.idle_seconds = idle_seconds
        self._cond = threading.Condition()
        self._ready: list[tuple[int, int, Callable[[], None]]] = []  # (priority, seq, task)
        self._later: list[tuple[float, int, int, Callable[[], None]]] = []  # (due, seq, priority, task)
        self._seq = itertools.count()
        self._threads = 0
        self._idle = 0

    def submit(self, task: Callable[[], None], priority: int = 0, delay: float = 0.0) -> None:
        with self._cond:
            seq = next(self._seq)
            if delay > 0:
                heapq.heappush(self._later, (time.monotonic() + delay, seq, priority, task))
            else:
                heapq.heappush(self._ready, (priority, seq, task))
            if self._threads < self.workers and (self._threads == 0 or len(self._ready) > self._idle):
                self._threads += 1
                threading.Thread(target=self._work, name="scan-worker", daemon=True).start()
            else:
                self._cond.notify()

    def _next(self) -> Callable[[], None] | None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    _, seq, priority, task = heapq.heappop(self._later)
                    heapq.heappush(self._ready, (priority, seq, task))
                if self._ready:
                    return heapq.heappop(self._ready)[2]
                timeout = self._later[0][0] - now if self._later else self.idle_seconds
                self._idle += 1
                woken = self._cond.wait(timeout)
                self._idle -= 1
                if not woken and not self._ready and not self._later:
                    self._threads -= 1
                    return None

    def _work(self) -> None:
        while (task := self._next()) is not None:
            try:
                task()
            except Exception:  # noqa: BLE001 - a task reports its own failures; the worker keeps serving
                log.exception("scan task failed")


@dataclass
class Runtime:
    config: Config
    clients: Clients
    caller: Caller
    node_reads: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(32))
    scan_work: WorkQueue = field(default_factory=lambda: WorkQueue(32))
    """The scan's node reads and culprit searches, for every batch of this run (`scan.concurrency` workers)."""

    @classmethod
    def build(cls, config: Config) -> Runtime:
        clients = build_clients(config.api, kube_pool_size=config.scan.concurrency)
        return cls(
            config,
            clients,
            Caller(config.limits),
            threading.BoundedSemaphore(config.scan.concurrency),
            WorkQueue(config.scan.concurrency),
        )

    def close(self) -> None:
        self.clients.close()


_cache: dict[tuple[str, float], Runtime] = {}
_lock = threading.Lock()


def runtime_for(config_path: str) -> Runtime:
    """The runtime for a config file in this process (rebuilt when the file changes)."""
    path = Path(config_path).resolve()
    key = (str(path), path.stat().st_mtime)
    with _lock:
        if key not in _cache:
            _cache[key] = Runtime.build(load_config(path))
        return _cache[key]
