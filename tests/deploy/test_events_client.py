"""Why every flow-run process reconnects its events websocket through tasks.access.events_client.

In the scale test the server logged `ValidationError ... for Event` on the message `{'type': 'auth', ...}` and
closed that flow-run process's events stream, and 35 task runs never reached its records: Prefect's stock client
reconnected from its emit path and from its time-based checkpoint task at once, and the second reconnection's auth
message went out on a connection the first had authenticated. These tests start both reconnections at the same
moment, against a real Prefect server, and watch how many run at once: two with Prefect's own, one with ours; the
events sent after them reach the server, and so do a flow's task runs with ours installed.
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

from tasks.access import events_client

AFTER = 5


def event(tag: str, i: int) -> Event:
    return Event(
        event="portcullis.test.race", resource={"prefect.resource.id": f"race.{tag}.{i}"}, id=uuid.uuid4()
    )


async def race(api: str, tag: str) -> None:
    """Two reconnections started together after the connection was lost, then AFTER events."""
    async with PrefectEventsClient(api_url=api, checkpoint_interval=3600) as client:
        # The connection was lost, and a failed attempt already cleared it (prefect#22451's checkpoint path).
        client._websocket.transport.abort()
        client._websocket = None
        with contextlib.suppress(Exception):
            await client._connect.__aexit__(None, None, None)
        await asyncio.gather(client._reconnect(), client._reconnect(), return_exceptions=True)
        with contextlib.suppress(Exception):  # Prefect's own may have lost its connection by now
            for i in range(AFTER):
                await client.emit(event(tag, i))


def stored(api: str, body: dict[str, Any], path: str, want: int) -> Any:
    """POST `body` to `path` until the answer counts `want` or 15 s have passed; the last answer."""
    deadline = time.monotonic() + 15
    while True:
        r = httpx.post(f"{api}{path}", json=body, timeout=30)
        r.raise_for_status()
        answer = r.json()
        count = answer if isinstance(answer, int) else len(answer["events"])
        if count >= want or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


@pytest.mark.parametrize(("serial", "at_once"), [(False, 2), (True, 1)])
def test_two_reconnections_at_once(prefect_api: str, monkeypatch: Any, serial: bool, at_once: int) -> None:
    running = peak = 0
    original = events_client.ORIGINAL_RECONNECT  # Prefect's own

    async def watched(self: PrefectEventsClient) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await original(self)
        finally:
            running -= 1

    if serial:
        monkeypatch.setattr(PrefectEventsClient, "_reconnect", events_client.serial_reconnect)
        monkeypatch.setattr(events_client, "ORIGINAL_RECONNECT", watched)
    else:
        monkeypatch.setattr(PrefectEventsClient, "_reconnect", watched)
    tag = uuid.uuid4().hex[:8]
    asyncio.run(race(prefect_api, tag))
    assert peak == at_once
    if serial:
        body = {"filter": {"resource": {"id_prefix": [f"race.{tag}."]}}, "limit": 50}
        events = stored(prefect_api, body, "/events/filter", AFTER)["events"]
        assert {e["resource"]["prefect.resource.id"] for e in events} == {
            f"race.{tag}.{i}" for i in range(AFTER)
        }


def test_a_flows_task_runs_reach_the_server_with_it_installed(prefect_api: str) -> None:
    """prefect.events.emit_event sends only through the client classes it knows: installing must keep them."""
    from prefect import flow, task
    from prefect.events.worker import EventsWorker

    import flows  # noqa: F401 - importing the flows installs it

    assert PrefectEventsClient._reconnect is events_client.serial_reconnect
    name = f"events-{uuid.uuid4().hex[:8]}"

    @task(name=name)
    def one(i: int) -> int:
        return i

    @flow(name="events-client-check")
    def several() -> list[int]:
        return [one(i) for i in range(3)]

    assert several() == [0, 1, 2]
    EventsWorker.drain_all()
    assert stored(prefect_api, {"task_runs": {"name": {"like_": name}}}, "/task_runs/count", 3) == 3
