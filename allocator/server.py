"""Running the ASGI app under uvicorn (uvloop + httptools), one process or several workers.

Shutdown order on SIGTERM: WebSockets are closed with 1001 and idle streams end, then uvicorn
stops accepting, waits for in-flight requests (up to SDA_SHUTDOWN_TIMEOUT), then the runtime
closes (activity flushed, local WebUIs stopped).
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import multiprocess

from allocator import app as app_module
from allocator import logs, metrics
from allocator.settings import Settings


class Server(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for running in list(app_module.running):
            await running.runtime.begin_shutdown()
        await super().shutdown(sockets)


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        "allocator.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        lifespan="on",
        log_config=None,
        access_log=settings.access_log,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_keep_alive=int(settings.keepalive_timeout),
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        ws_max_size=settings.ws_max_size,
        server_header=False,
    )


def serve(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format, settings.access_log)
    config = uvicorn_config(settings)
    metrics.serve(settings.metrics_bind, settings.metrics_port)
    if settings.workers > 1:
        # uvicorn builds each worker's Server inside its Process class; ours closes WebSockets
        # with 1001 first, so the workers must be built from our Process.
        multiprocess.Process = _WorkerProcess  # type: ignore[misc]
        multiprocess.Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        Server(config).run()


class _WorkerProcess(multiprocess.Process):
    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(config=self.config)
        return self._server
