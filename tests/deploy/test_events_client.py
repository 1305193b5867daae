"""Why every flow-run process sends its events through tasks.events_client.SerialEventsClient.

In the scale test the server logged `ValidationError ... for Event` on the message `{'type': 'auth', ...}` and
closed that flow-run process's events stream, and 35 task runs never reached its records: Prefect's stock client
reconnected from its emit path and from its time-based checkpoint task at once, and the second reconnection's auth
message went out on a connection the first had authenticated. These tests start both reconnections at the same
moment, against a real Prefect server, and watch how many run at once: two with the stock client, one with ours;
and every event sent after them reaches the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import httpx
import pytest
from prefect.events import Event
from prefect.events.clients import PrefectEventsClient

from tasks.events_client import SerialEventsClient

AFTER = 5


def event(tag: str, i: int) -> Event:
    return Event(
        event="portcullis.test.race", resource={"prefect.resource.id": f"race.{tag}.{i}"}, id=uuid.uuid4()
    )


async def race(client_type: type[PrefectEventsClient], api: str, tag: str, monkeypatch: Any) -> int:
    """Two reconnections started together after the connection was lost; the most that ran at once."""
    running = peak = 0
    reconnect = PrefectEventsClient._reconnect

    async def watched(self: PrefectEventsClient) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await reconnect(self)
        finally:
            running -= 1

    monkeypatch.setattr(PrefectEventsClient, "_reconnect", watched)
    async with client_type(api_url=api, checkpoint_interval=3600) as client:
        # The connection was lost, and a failed attempt already cleared it (prefect#22451's checkpoint path).
        client._websocket.transport.abort()
        client._websocket = None
        with contextlib.suppress(Exception):
            await client._connect.__aexit__(None, None, None)
        await asyncio.gather(client._reconnect(), client._reconnect(), return_exceptions=True)
        if client_type is SerialEventsClient:
            for i in range(AFTER):
                await client.emit(event(tag, i))
    return peak


def stored(api: str, tag: str) -> set[str]:
    """The resources of the events the server stored for `tag`, once it has all of them or 15 s have passed."""
    body = {"filter": {"resource": {"id_prefix": [f"race.{tag}."]}}, "limit": 50}
    deadline = time.monotonic() + 15
    while True:
        r = httpx.post(f"{api}/events/filter", json=body, timeout=30)
        r.raise_for_status()
        found = {e["resource"]["prefect.resource.id"] for e in r.json()["events"]}
        if len(found) >= AFTER or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.mark.parametrize(("client_type", "at_once"), [(PrefectEventsClient, 2), (SerialEventsClient, 1)])
def test_two_reconnections_at_once(
    prefect_api: str, monkeypatch: Any, client_type: Any, at_once: int
) -> None:
    tag = uuid.uuid4().hex[:8]
    assert asyncio.run(race(client_type, prefect_api, tag, monkeypatch)) == at_once
    if client_type is SerialEventsClient:
        assert stored(prefect_api, tag) == {f"race.{tag}.{i}" for i in range(AFTER)}


def test_flow_processes_use_it() -> None:
    from prefect.events.worker import EventsWorker

    import flows  # noqa: F401 - importing the flows installs it

    override = EventsWorker._client_override
    assert override is not None and override[0] is SerialEventsClient
