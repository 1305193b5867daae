"""The scan's shared work queue (tasks/access/runtime.py): due tasks first, most urgent first, never more workers than set."""

from __future__ import annotations

import threading
import time

from tasks.access.runtime import WorkQueue


def test_most_urgent_ready_task_runs_first_and_delayed_tasks_wait() -> None:
    q = WorkQueue(1, idle_seconds=0.5)
    order: list[str] = []
    gate = threading.Event()
    finished = threading.Event()
    q.submit(gate.wait)  # holds the only worker while the rest are queued
    q.submit(lambda: order.append("later"), priority=0, delay=0.3)
    q.submit(lambda: order.append("low"), priority=2)
    q.submit(lambda: order.append("high"), priority=1)
    q.submit(lambda: order.append("high-2"), priority=1)
    started = time.monotonic()
    gate.set()
    q.submit(finished.set, priority=0, delay=0.4)
    assert finished.wait(5)
    assert order == ["high", "high-2", "low", "later"]
    assert time.monotonic() - started >= 0.3


def test_workers_are_bounded_and_a_failing_task_does_not_stop_them() -> None:
    q = WorkQueue(3, idle_seconds=0.5)
    running = 0
    peak = 0
    lock = threading.Lock()
    done = threading.Semaphore(0)

    def task() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        done.release()

    def boom() -> None:
        raise RuntimeError("a task reports its own failures")

    q.submit(boom)
    for _ in range(12):
        q.submit(task)
    for _ in range(12):
        assert done.acquire(timeout=5)
    assert peak == 3
