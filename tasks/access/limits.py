"""Limits shared by every worker: Prefect global concurrency and rate limits, kept on the Prefect server.

The in-process bounds (tasks/change/apply.py `OperationSlots`, tasks/access/retry.py `Caller`) hold within one flow run. When
several workers run waves at once, GKE's quotas are per project and per organization, not per run, so two
optional server-side limits bound the fleet as a whole:

- `rollout.prefect_mutation_limit`: GKE operations in flight across every run (a global concurrency limit with
  `rollout.prefect_mutations_in_flight` slots, held from sending an update until its operation is DONE);
- `limits.prefect_rate_limit`: Google API calls per second across every run (a rate limit that refills
  `limits.prefect_calls_per_second` slots a second).

Unset (the default) costs nothing: the helpers return at once, with no Prefect client and no server round trip.
Set, a missing limit is an error, never a silent "no limit": `make deploy` creates both from the config
(`python -m tasks.access.limits --config FILE`).
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from config.schema import Config, ConfigError, load_config

# A slot's lease is renewed every third of this while its operation runs; a dead worker's slot frees after it.
LEASE_SECONDS = 60.0
POLL_MIN_SECONDS = 0.05  # first wait for a busy limit; grows by half each time
POLL_MAX_SECONDS = 0.5
_asking = threading.Semaphore(4)  # at most 4 threads per process ask the server; the others wait here

log = logging.getLogger(__name__)


class LimitMissing(RuntimeError):
    """The config names a Prefect limit that the Prefect server does not have (or cannot be reached)."""


@dataclass(frozen=True)
class LimitSpec:
    name: str
    limit: int
    slot_decay_per_second: float  # 0: a concurrency limit; > 0: a rate limit
    key: str  # the config key that names it

    def describe(self) -> str:
        if self.slot_decay_per_second:
            return f"{self.name}: rate limit, {self.slot_decay_per_second:g} per second ({self.key})"
        return f"{self.name}: {self.limit} at once ({self.key})"


def wanted_limits(config: Config) -> list[LimitSpec]:
    """The Prefect limits a config asks for."""
    specs = []
    if config.rollout.prefect_mutation_limit:
        specs.append(
            LimitSpec(
                config.rollout.prefect_mutation_limit,
                config.rollout.prefect_mutations_in_flight,
                0.0,
                "rollout.prefect_mutation_limit",
            )
        )
    if config.limits.prefect_rate_limit:
        rate = config.limits.prefect_calls_per_second
        specs.append(
            LimitSpec(
                config.limits.prefect_rate_limit, max(1, math.ceil(rate)), rate, "limits.prefect_rate_limit"
            )
        )
    return specs


def _missing(name: str, key: str, exc: Exception) -> LimitMissing:
    from prefect.settings import PREFECT_API_URL

    where = PREFECT_API_URL.value() or "the temporary Prefect server (PREFECT_API_URL is not set)"
    return LimitMissing(
        f"the Prefect limit {name!r} named by {key} could not be used on {where}: {exc}. "
        f"Create it with `python -m tasks.access.limits --config CONFIG` (make deploy does), or unset {key}."
    )


@contextmanager
def mutation_slot(name: str | None) -> Iterator[None]:
    """Hold one slot of the fleet-wide mutation limit `name` for the duration; nothing at all when None.

    Not `prefect.concurrency.sync.concurrency`: that one sleeps out the server's Retry-After (up to 30 s) on a busy
    limit while every other caller in the process queues behind it, so a busy limit hands slots over slowly
    (docs/BENCHMARKS.md: 1.5 slots/s against 6.7/s here, 8 slots, 32 threads). Here up to four threads per process
    ask at once, each again within POLL_MAX_SECONDS, and the rest wait locally. The slot is held under a lease
    renewed in the background, so a worker that dies frees its slots within LEASE_SECONDS.
    """
    if not name:
        yield
        return
    try:
        client = _client()
        lease_id = _acquire(client, name)
    except LimitMissing:
        raise
    except Exception as exc:  # the server cannot be reached, or refuses
        raise _missing(name, "rollout.prefect_mutation_limit", exc) from exc
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(client, lease_id, stop), name=f"lease-{name}", daemon=True
    )
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        client.release_concurrency_slots_with_lease(lease_id)


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _client() -> Any:
    """One Prefect client per API URL for the process (httpx clients are thread-safe; making one costs ~50 ms)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value() or ""
    with _clients_lock:
        if url not in _clients:
            client = get_client(sync_client=True)
            client.__enter__()  # open for the life of the process
            _clients[url] = client
        return _clients[url]


def _acquire(client: Any, name: str) -> UUID:
    import httpx

    delay = POLL_MIN_SECONDS
    with _asking:
        while True:
            try:
                response = client.increment_concurrency_slots_with_lease(
                    names=[name], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS
                )
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 423:  # 423 Locked: every slot is taken
                    raise
                time.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 1.5, POLL_MAX_SECONDS)
                continue
            body = response.json()
            if not body.get("limits"):
                raise _missing(name, "rollout.prefect_mutation_limit", RuntimeError("no such limit"))
            return UUID(body["lease_id"])


def _renew(client: Any, lease_id: UUID, stop: threading.Event) -> None:
    while not stop.wait(LEASE_SECONDS / 3):
        try:
            client.renew_concurrency_lease(lease_id=lease_id, lease_duration=LEASE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - the operation is under way; the next renewal may succeed
            log.warning("could not renew the lease %s of a GKE mutation slot: %s", lease_id, exc)


def take_call_slot(name: str | None) -> None:
    """Wait for one slot of the fleet-wide rate limit `name`; return at once when None."""
    if not name:
        return
    from prefect.concurrency.sync import rate_limit

    try:
        rate_limit(name, occupy=1, strict=True)
    except Exception as exc:
        raise _missing(name, "limits.prefect_rate_limit", exc) from exc


def ensure_limits(config: Config) -> list[LimitSpec]:
    """Create the config's limits on the Prefect server, or set existing ones to the config's numbers."""
    from prefect.client.orchestration import get_client

    specs = wanted_limits(config)
    if specs:
        with get_client(sync_client=True) as client:
            for spec in specs:
                client.upsert_global_concurrency_limit_by_name(
                    spec.name, spec.limit, spec.slot_decay_per_second or None
                )
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.access.limits",
        description="Create or update the Prefect global concurrency and rate limits a Portcullis config names.",
    )
    parser.add_argument("--config", required=True, help="Portcullis configuration file (YAML)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    specs = ensure_limits(config)
    for spec in specs:
        print(f"limit {spec.describe()}")
    if not specs:
        print("no Prefect limits configured (rollout.prefect_mutation_limit, limits.prefect_rate_limit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
