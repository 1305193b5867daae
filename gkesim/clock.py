"""Simulated time: GKE operations take minutes; tests and demos cannot wait that long.

Everything in the simulator is expressed in simulated seconds. `Clock` maps real elapsed time onto them through
a time scale (real = simulated x scale); `ManualClock` lets a test move time by hand instead of sleeping.
"""

from __future__ import annotations

import threading
import time


class Clock:
    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self.time_scale = time_scale
        self._t0 = time.monotonic()

    def now(self) -> float:
        """Simulated seconds since the simulator started."""
        return (time.monotonic() - self._t0) / self.time_scale

    def real(self, sim_seconds: float) -> float:
        return sim_seconds * self.time_scale


class ManualClock(Clock):
    def __init__(self, start: float = 0.0) -> None:
        super().__init__(1.0)
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, sim_seconds: float) -> None:
        with self._lock:
            self._now += sim_seconds
