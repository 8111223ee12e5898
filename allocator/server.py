"""Running the ASGI app under uvicorn (uvloop + httptools), one process or several workers.

Shutdown order on SIGTERM: WebSockets are closed with 1001 and idle streams end, then uvicorn
stops accepting, waits for in-flight requests (up to SDA_SHUTDOWN_TIMEOUT), then the runtime
closes (activity flushed, local WebUIs stopped).

This reaches into two uvicorn internals, pinned by tests/test_server.py: `Server.shutdown`
(called once the server should exit, before connections drain) and the worker `Process`
class of `uvicorn.supervisors.multiprocess`, which builds each worker's Server.
"""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterable

import uvicorn
from uvicorn.supervisors import multiprocess

from allocator import app as app_module
from allocator import logs, metrics
from allocator.settings import Settings
from allocator.types import ASGIApp

FACTORY = "allocator.app:create_app"
# Young collections of at most this many objects: each holds the loop about 1 ms. At 50 000 one
# took 6-8 ms, in the middle of an allocation storm (make bench, a known person's p99).
GC_GEN0_THRESHOLD = 5_000


class Server(uvicorn.Server):
    """uvicorn's server, closing WebSockets before connections drain; `apps`: the apps it
    serves (default: every AllocatorApp of this process, the one its factory made)."""

    def __init__(
        self,
        config: uvicorn.Config,
        apps: Iterable[app_module.AllocatorApp] | None = None,
        tune_gc: bool = True,
    ) -> None:
        super().__init__(config)
        self._apps = list(apps) if apps is not None else None
        self._tune_gc = tune_gc

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._tune_gc and self.started:
            gc.collect()
            gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
            gc.freeze()  # long-lived objects out of the collector's way: a shorter p99 tail

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        apps = self._apps if self._apps is not None else list(app_module.running)
        for serving in apps:
            await serving.runtime.begin_shutdown()
        await super().shutdown(sockets)


def uvicorn_config(settings: Settings, app: ASGIApp | str = FACTORY) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
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
        multiprocess.Process = WorkerProcess  # type: ignore[misc]
        multiprocess.Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        Server(config).run()


class WorkerProcess(multiprocess.Process):
    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(config=self.config)
        return self._server
