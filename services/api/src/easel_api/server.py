"""A uvicorn server that ends live event streams before it waits for open responses.

Uvicorn runs the app's lifespan shutdown only after every open response has finished (or its
graceful timeout cancels them). Event streams never finish on their own, so without this every
connected client would see a cut connection instead of a cleanly ended stream.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn


class EaselServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        hub = getattr(getattr(self._app, "state", None), "hub", None)
        if hub is not None:
            await hub.close()
        await super().shutdown(sockets=sockets)
