"""Call-level fault injection shared by the simulator's servers (error rates, latency, per-project quota)."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict, deque

import grpc

from gkesim.errors import SimError
from gkesim.spec import FaultSpec


class FaultInjector:
    """Decides, per call, whether to delay or fail it. Seeded, so a scenario replays the same faults."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = defaultdict(deque)
        self.injected: dict[str, int] = defaultdict(int)  # "METHOD:CODE" -> count
        self._page_failures: dict[tuple[str, str], int] = defaultdict(int)  # (method, token) -> failed so far

    def latency(self, method: str) -> float:
        """Seconds of added latency for this method (the specific entry wins over '*')."""
        ms = self.spec.latency_ms.get(method, self.spec.latency_ms.get("*", 0.0))
        return ms / 1000.0

    def delay(self, method: str) -> None:
        seconds = self.latency(method)
        if seconds > 0:
            time.sleep(seconds)

    def check(self, method: str, project: str | None = None) -> None:
        """Raise the injected error for this call, if any; also enforces the per-project quota."""
        if project and self.spec.quota_per_minute is not None:
            self._check_quota(method, project)
        rates = dict(self.spec.error_rates.get("*", {}))
        rates.update(self.spec.error_rates.get(method, {}))
        if not rates:
            return
        with self._lock:
            roll = self._rng.random()
        for code_name, rate in rates.items():
            if roll < rate:
                with self._lock:
                    self.injected[f"{method}:{code_name}"] += 1
                raise SimError(
                    grpc.StatusCode[code_name], f"injected {code_name} for {method}", retry_delay=None
                )
            roll -= rate

    def later_page(self, method: str, token: str) -> bool:
        """True when this request for a later page (`token` is its page token or `continue`) is to fail now."""
        times = self.spec.later_page_failures.get(method, self.spec.later_page_failures.get("*", 0))
        if not token or times <= 0:
            return False
        with self._lock:
            if self._page_failures[(method, token)] >= times:
                return False
            self._page_failures[(method, token)] += 1
            self.injected[f"{method}:later-page"] += 1
            return True

    def check_page(self, method: str, token: str) -> None:
        """`check`, then the later-page fault for gRPC list methods."""
        self.check(method)
        if self.later_page(method, token):
            raise SimError(grpc.StatusCode.UNAVAILABLE, f"injected UNAVAILABLE for {method} (a later page)")

    def _check_quota(self, method: str, project: str) -> None:
        now = time.monotonic()
        with self._lock:
            window = self._calls[project]
            span = self.spec.quota_window_seconds
            while window and now - window[0] > span:
                window.popleft()
            if len(window) >= self.spec.quota_per_minute:
                self.injected[f"{method}:RESOURCE_EXHAUSTED"] += 1
                retry = max(0.0, span - (now - window[0]))
                raise SimError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"Quota exceeded for quota metric 'Requests' of service 'container.googleapis.com' "
                    f"for consumer 'project:{project}'",
                    retry_delay=retry,
                )
            window.append(now)

    def chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate
