"""Progress of long work, told to whoever listens: the terminal's progress bar, a Prefect progress artifact.

Tasks only say "N more done"; they neither know nor care what draws it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Listener(Protocol):
    def start(self, phase: str, total: int) -> None: ...
    def advance(self, phase: str, done: int, total: int) -> None: ...
    def finish(self, phase: str) -> None: ...


_listeners: list[Listener] = []
_lock = threading.Lock()


def subscribe(listener: Listener) -> None:
    with _lock:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


class Phase:
    def __init__(self, name: str, total: int) -> None:
        self.name = name
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            done = self.done
        for listener in list(_listeners):
            listener.advance(self.name, done, self.total)


@contextmanager
def phase(name: str, total: int) -> Iterator[Phase]:
    for listener in list(_listeners):
        listener.start(name, total)
    p = Phase(name, total)
    try:
        yield p
    finally:
        for listener in list(_listeners):
            listener.finish(name)
