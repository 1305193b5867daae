"""Prefect's events websocket client, made to take its reconnections one at a time.

Every task run reaches the Prefect server as events over one websocket per flow-run process. Prefect 3.9's
`PrefectEventsClient` can reconnect from two places at once when that connection drops under load: the emit path
and the time-based checkpoint task (prefect#22451 says so: "a checkpoint-loop reconnect can theoretically
interleave with an emit-path reconnect"). Interleaved, the second reconnection's auth message goes out on the
connection the first one has already authenticated; the server reads it as an event, fails to validate it and
closes the stream (prefect#22914), dropping the events it had queued but not yet published, and the client gives
up on the event it was sending. Seen in the scale test as 35 of 1,884 `disable-cluster` task runs missing from the
server, and as a task run left Running for good.

`install()` replaces `PrefectEventsClient._reconnect` in this process with `serial_reconnect`, which holds one
lock per client across a reconnection, so each one authenticates the connection it opened. It patches the class
rather than handing Prefect a subclass because `prefect.events.emit_event` sends only through the exact client
classes it knows and silently drops events for any other. flows/__init__.py calls it, so every process that runs
a flow does. tests/deploy/test_events_client.py shows both behaviours and that task runs still reach the server.
"""

from __future__ import annotations

import asyncio

from prefect.events.clients import PrefectEventsClient

ORIGINAL_RECONNECT = PrefectEventsClient._reconnect


async def serial_reconnect(self: PrefectEventsClient) -> None:
    """Prefect's reconnection, never two at once on one client. Re-entrant: a reconnection resends the events
    not yet confirmed through `emit`, which may itself reconnect."""
    me = asyncio.current_task()
    if getattr(self, "_portcullis_reconnector", None) is me:
        await ORIGINAL_RECONNECT(self)
        return
    lock = self.__dict__.setdefault("_portcullis_reconnecting", asyncio.Lock())  # on the events worker's loop
    async with lock:
        self._portcullis_reconnector = me  # type: ignore[attr-defined]
        try:
            await ORIGINAL_RECONNECT(self)
        finally:
            self._portcullis_reconnector = None  # type: ignore[attr-defined]


def install() -> None:
    """Every events client of this process (Prefect Cloud's is a subclass) reconnects one at a time."""
    PrefectEventsClient._reconnect = serial_reconnect  # type: ignore[method-assign]
