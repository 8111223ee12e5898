"""Running the app with uvicorn: one line on stderr once it answers, and a shutdown that ends.

This is ``uvicorn.run(app, host=..., port=..., log_level="warning")`` spelled out, because
``uvicorn.run`` offers no hook after the socket is bound or before connections are drained.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

GRACEFUL_SHUTDOWN_SECONDS = 30
"""How long SIGTERM waits for requests in flight (a generation) before closing them."""


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, before_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.config.host, self.config.port
            address = f"[{host}]" if ":" in host else host
            print(f"demo_webui ready on http://{address}:{port}/", file=sys.stderr, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._before_shutdown()
        await super().shutdown(sockets)


def serve(app: FastAPI, host: str, port: int, before_shutdown: Callable[[], None]) -> None:
    """Serve until SIGINT/SIGTERM; ``before_shutdown`` runs before open connections are drained."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    _Server(config, before_shutdown).run()
