"""Prefect's events websocket client with its reconnections taken one at a time.

Every task run reaches the Prefect server as events over one websocket per flow-run process. Prefect 3.9's
`PrefectEventsClient` can reconnect from two places at once when that connection drops under load: the emit path
and the time-based checkpoint task (prefect#22451 says so: "a checkpoint-loop reconnect can theoretically
interleave with an emit-path reconnect"). Interleaved, the second reconnection's auth message goes out on the
connection the first one has already authenticated; the server reads it as an event, fails to validate it and
closes the stream (prefect#22914), dropping the events it had queued but not yet published, including ones the
client had already checkpointed, and the client gives up on the event it was sending. Seen in the scale test as
35 of 1,884 `disable-cluster` task runs missing from the server, and as a task run left Running for good
(tests/deploy/test_events_client.py shows both clients at the moment the race happens).

`SerialEventsClient` holds one lock across a reconnection, so each one authenticates the connection it opened.
`install()` makes Prefect's `EventsWorker` use it; flows/__init__.py calls it, so every flow-run process does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect.events.clients import PrefectEventsClient
from prefect.events.worker import EventsWorker, emit_events_to_cloud
from prefect.settings import PREFECT_API_URL


class SerialEventsClient(PrefectEventsClient):
    """`PrefectEventsClient` whose reconnections never overlap (re-entrant: a reconnection resends through
    `emit`, which may itself reconnect)."""

    def __init__(self, api_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(api_url=api_url or _api_url(), **kwargs)
        self._reconnecting: asyncio.Lock | None = None
        self._reconnector: asyncio.Task[Any] | None = None

    async def _reconnect(self) -> None:
        me = asyncio.current_task()
        if self._reconnector is me:  # a resend inside this reconnection reconnects again: already ours
            await super()._reconnect()
            return
        if self._reconnecting is None:
            self._reconnecting = asyncio.Lock()  # made on the events worker's own loop
        async with self._reconnecting:
            self._reconnector = me
            try:
                await super()._reconnect()
            finally:
                self._reconnector = None


def _api_url() -> str:
    """The API the stock worker would send to: PREFECT_API_URL, or the ephemeral server Prefect starts."""
    url = PREFECT_API_URL.value()
    if url:
        return url
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    return server.api_url


def install() -> None:
    """Send this process's events through `SerialEventsClient` (not to Prefect Cloud, whose client differs)."""
    if not emit_events_to_cloud():
        EventsWorker.set_client_override(SerialEventsClient)
