"""One retry layer for Google API calls: tenacity, transient errors only, within a budget per run.

The generated clients' own retries are switched off at each call (`retry=None`) so a call is retried in exactly
one place. The budget makes an outage fail fast: once spent, the next transient error is raised at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.rpc import error_details_pb2
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from config.schema import Limits
from tasks.access.limits import take_call_slot

T = TypeVar("T")

TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.ResourceExhausted,
    gexc.InternalServerError,
)


class RetryBudgetExhausted(RuntimeError):
    """Raised in place of a transient error once the run's retries are spent."""


class RetryBudget:
    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.total:
                return False
            self.used += 1
            return True


def server_retry_delay(exc: BaseException) -> float | None:
    """The delay a server asked for (google.rpc.RetryInfo), if it gave one."""
    for detail in getattr(exc, "details", None) or []:
        if isinstance(detail, error_details_pb2.RetryInfo):
            return detail.retry_delay.seconds + detail.retry_delay.nanos / 1e9
    return None


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


class Caller:
    """Runs API calls with the run's retry policy; shared by every task of a run."""

    def __init__(
        self, limits: Limits, budget: RetryBudget | None = None, sleep: Callable[[float], None] | None = None
    ):
        self.limits = limits
        self.budget = budget or RetryBudget(limits.retry_budget)
        self._sleep = sleep
        self.retries = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(limits.concurrency)  # API calls in flight, across all tasks

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(
            multiplier=self.limits.backoff_initial_seconds, max=self.limits.backoff_max_seconds
        )(state)
        asked = server_retry_delay(state.outcome.exception()) if state.outcome else None
        return min(max(backoff, asked or 0.0), max(self.limits.backoff_max_seconds, asked or 0.0))

    def _should_retry(self, exc: BaseException, transient: Callable[[BaseException], bool]) -> bool:
        if not transient(exc):
            return False
        if not self.budget.take():
            return False
        with self._lock:
            self.retries += 1
        return True

    def _retrying(self, transient: Callable[[BaseException], bool]) -> Retrying:
        extra = {"sleep": self._sleep} if self._sleep else {}
        return Retrying(
            retry=retry_if_exception(lambda exc: self._should_retry(exc, transient)),
            stop=stop_after_attempt(self.limits.max_attempts),
            wait=self._wait,
            reraise=True,
            **extra,
        )

    def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call `fn(*args, retry=None, timeout=..., **kwargs)` and retry transient failures."""
        kwargs.setdefault("retry", None)
        kwargs.setdefault("timeout", self.limits.call_timeout_seconds)
        return self._retrying(is_transient)(self._bounded, fn, *args, **kwargs)

    def retry(self, fn: Callable[[], T], transient: Callable[[BaseException], bool]) -> T:
        """`fn()` with the same policy and budget, for another protocol's calls (`transient` says which of its
        errors are worth another try); not bounded by the Google API call slots."""
        return self._retrying(transient)(fn)

    def pages(self, fn: Callable[..., Any], request: dict[str, Any], field: str) -> Iterator[Any]:
        """Every item of a paged list method, each page fetched as one call with the retry policy.

        The generated pager would fetch the pages after the first outside any retry (`retry=None` is passed on
        to every page), so one transient error on page 2 would lose the rest of the list: each page is asked for
        here instead, with the previous page's token, and only the pager's first page is read.
        """
        token = ""
        while True:
            page = self.call(fn, request={**request, "page_token": token} if token else request)
            yield from getattr(page, field)  # the pager answers its first page's fields
            token = page.next_page_token
            if not token:
                return

    def once(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """One attempt, no retry: for mutations, whose retry must first re-read what the attempt did."""
        kwargs.setdefault("retry", None)
        kwargs.setdefault("timeout", self.limits.call_timeout_seconds)
        return self._bounded(fn, *args, **kwargs)

    def _bounded(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        take_call_slot(self.limits.prefect_rate_limit)  # shared by every worker; None: returns at once
        with self._slots:
            return fn(*args, **kwargs)
