"""uvicorn's server, ending the app's open streams properly when its shutdown grace period runs out."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import uvicorn


class GracefulServer(uvicorn.Server):
    """On SIGINT/SIGTERM uvicorn stops accepting, waits `timeout_graceful_shutdown` seconds for responses
    to finish, then cancels them mid-write. This one calls `end_streams` `margin` seconds before that, so
    each open stream sends a final error event and `data: [DONE]` and closes on its own.

    Args:
        config: uvicorn's configuration (its `timeout_graceful_shutdown` is the grace period).
        end_streams: ends every open stream of the app (`ServerState.end_streams`).
        margin: seconds before the grace period's end to call it.
    """

    def __init__(self, config: uvicorn.Config, end_streams: Callable[[], None], margin: float = 2.0) -> None:
        super().__init__(config)
        self.end_streams = end_streams
        self.margin = margin

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        grace = self.config.timeout_graceful_shutdown
        if grace is None:
            await super().shutdown(sockets)
            return

        async def end_before_deadline() -> None:
            await asyncio.sleep(max(grace - self.margin, 0.0))
            self.end_streams()

        timer = asyncio.create_task(end_before_deadline())
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
