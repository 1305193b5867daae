"""Why ops/scale-server.env sets prefect-redis's publisher batch size and interval.

The server keeps one prefect-redis `Publisher` per events websocket (one per flow-run process) for the
connection's whole life. With its defaults (a batch of 5, flushed every 10 s by a background task), the background
flush awaits Redis (the duplicate check) and then clears the batch, dropping any event the websocket appended in
between: it never reaches the `events` stream, so its task run stays Running in the UI for good (seen in the scale
test: 1 of 473 task runs). With a batch of 1 every event is published by the call that received it, and with a
day-long interval the background flush never races it. These tests run the real Publisher against the local Redis.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.deploy.stack import REPO

pytestmark = pytest.mark.scale

EVENTS = 3000


def scale_env() -> dict[str, str]:
    lines = (REPO / "ops" / "scale-server.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def published(redis_db: Any, monkeypatch: pytest.MonkeyPatch, batch_size: int, publish_every: float) -> int:
    """Publish EVENTS events through one long-lived publisher while its background flush runs; count arrivals."""
    from prefect_redis import client
    from prefect_redis.messaging import Cache, Publisher

    monkeypatch.setenv("PREFECT_REDIS_MESSAGING_HOST", "127.0.0.1")
    monkeypatch.setenv("PREFECT_REDIS_MESSAGING_PORT", "6379")
    monkeypatch.setenv("PREFECT_REDIS_MESSAGING_DB", str(redis_db.connection_pool.connection_kwargs["db"]))

    async def run() -> None:
        await client.clear_cached_clients()
        publisher = Publisher(
            "publisher-race",
            Cache(),
            deduplicate_by="id",  # as the server's event publisher
            batch_size=batch_size,
            publish_every=timedelta(seconds=publish_every),
        )
        async with publisher:
            for i in range(EVENTS):
                await publisher.publish_data(b"{}", {"id": f"event-{i}"})
                if i % 3 == 0:
                    await asyncio.sleep(0.0005)  # the websocket waits for the next event
        await client.clear_cached_clients()

    asyncio.run(run())
    return redis_db.xlen("publisher-race")


def test_the_default_publisher_loses_events_when_its_background_flush_races_the_websocket(
    redis_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The defaults' batch of 5, with the background flush made frequent so the race shows in one short run.
    assert published(redis_db, monkeypatch, batch_size=5, publish_every=0.0001) < EVENTS


def test_the_scale_configuration_publishes_every_event(
    redis_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = scale_env()
    batch = int(env["PREFECT_REDIS_MESSAGING_PUBLISHER_BATCH_SIZE"])
    every = float(env["PREFECT_REDIS_MESSAGING_PUBLISHER_PUBLISH_EVERY"])
    assert batch == 1 and every >= 3600
    assert published(redis_db, monkeypatch, batch_size=batch, publish_every=every) == EVENTS
