"""Why ops/scale-server.env sets prefect-redis's publisher batch size and interval.

The server keeps one prefect-redis `Publisher` per events websocket (one per flow-run process) for the
connection's whole life. With its defaults (a batch of 5, flushed every 10 s by a background task), the background
flush awaits Redis (the duplicate check) and then clears the batch, dropping any event the websocket appended in
between: it never reaches the `events` stream, so its task run stays Running in the UI for good (seen in the scale
test: 1 of 473 task runs). With a batch of 1 every event is published by the call that received it, and with a
day-long interval the background flush never races it. These tests run the real Publisher against the local Redis,
with its duplicate check made slower so the race needs no luck to show.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.deploy.stack import REPO

pytestmark = pytest.mark.scale

EVENTS = 300
ROUND_TRIP = 0.005  # seconds added to the publisher's duplicate check (a Redis call)
STREAM = "publisher-race"
CHECKED = threading.Event()  # a flush has decided what it publishes


def scale_env() -> dict[str, str]:
    lines = (REPO / "ops" / "scale-server.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture
def messaging(redis_db: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """prefect-redis pointed at the test's Redis database, its duplicate check (a Redis call) ROUND_TRIP slower."""
    from prefect_redis.messaging import Cache

    monkeypatch.setenv("PREFECT_REDIS_MESSAGING_HOST", "127.0.0.1")
    monkeypatch.setenv("PREFECT_REDIS_MESSAGING_PORT", "6379")
    monkeypatch.setenv("PREFECT_REDIS_MESSAGING_DB", str(redis_db.connection_pool.connection_kwargs["db"]))
    real_check = Cache.without_duplicates

    async def slow_check(self: Cache, *args: Any, **kwargs: Any) -> Any:
        checked = await real_check(self, *args, **kwargs)  # what the flush will publish is decided here
        CHECKED.set()
        await asyncio.sleep(ROUND_TRIP)  # an event appended now is cleared with the batch, unpublished
        return checked

    monkeypatch.setattr(Cache, "without_duplicates", slow_check)
    CHECKED.clear()
    return redis_db


def publish(batch_size: int, publish_every: float, steps: Callable[[Any], Awaitable[None]]) -> None:
    """Run `steps(publisher)` inside one long-lived publisher, as the server's events websocket does."""
    from prefect_redis import client
    from prefect_redis.messaging import Cache, Publisher

    async def run() -> None:
        await client.clear_cached_clients()
        publisher = Publisher(
            STREAM,
            Cache(),
            deduplicate_by="id",  # as the server's event publisher
            batch_size=batch_size,
            publish_every=timedelta(seconds=publish_every),
        )
        async with publisher:
            await steps(publisher)
        await client.clear_cached_clients()

    asyncio.run(run())


def test_the_default_publisher_drops_an_event_added_while_its_background_flush_awaits_redis(
    messaging: Any,
) -> None:
    async def steps(publisher: Any) -> None:
        for i in range(2):
            await publisher.publish_data(b"{}", {"id": f"event-{i}"})
        # What the background task runs every publish_every (10 s by default), here at a known moment.
        flush = asyncio.create_task(publisher._publish_current_batch())
        while not CHECKED.is_set():  # until the flush has taken its batch and awaits Redis again
            await asyncio.sleep(0.0001)
        await publisher.publish_data(b"{}", {"id": "event-late"})  # the websocket's next event
        await flush

    publish(batch_size=5, publish_every=86400, steps=steps)
    assert messaging.xlen(STREAM) == 2, "the late event was cleared with the batch it never joined"


def test_the_scale_configuration_publishes_every_event(messaging: Any) -> None:
    env = scale_env()
    batch = int(env["PREFECT_REDIS_MESSAGING_PUBLISHER_BATCH_SIZE"])
    every = float(env["PREFECT_REDIS_MESSAGING_PUBLISHER_PUBLISH_EVERY"])
    assert batch == 1 and every >= 3600

    async def steps(publisher: Any) -> None:
        for i in range(EVENTS):
            await publisher.publish_data(b"{}", {"id": f"event-{i}"})
            if i % 3 == 0:
                await asyncio.sleep(0.0005)  # the websocket waits for the next event

    publish(batch_size=batch, publish_every=every, steps=steps)
    assert messaging.xlen(STREAM) == EVENTS
