"""A WebUI stand-in for the sidecar tests, on loopback, in the test's event loop.

It counts the sidecar's ``GET /internal/ping`` and answers each with a fixed status, or never: a
test waits for the sidecar's own checks instead of for time to pass. The sidecar checks the WebUI
once a period while it runs, and every second (or period) while it waits for Ready, so a number
of checks without a health ping to Agones is that many periods without one, on any machine.

It also has A1111's settings (``GET``/``POST /sdapi/v1/options``): ``options`` is what a read
answers (a JSON value, or raw bytes for a broken answer), each ``POST`` is recorded in ``posted``
with the moment it came, and merged into ``options`` unless ``refuse`` is set or it has one
of ``refuse_keys`` (A1111 fails a whole request for one bad key).
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.sidecar.fake_sdk import WAIT_TIMEOUT
from tests.support.processes import free_port


class FakeWebUI:
    def __init__(self, port: int | None = None, status: int | None = 503) -> None:
        """``status``: the answer to every ping (503: up, but not answering as a WebUI should);
        None: no answer at all, the request stays open until the stand-in stops."""
        self.port = port or free_port()
        self.status = status
        self.pings = 0
        self._pinged = asyncio.Condition()
        self.options: Any = {}
        self.refuse = False
        self.refuse_keys: set[str] = set()
        self.posted: list[tuple[float, Any]] = []
        self.option_reads = 0
        self._never = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeWebUI:
        app = web.Application()
        app.router.add_get("/internal/ping", self._ping)
        app.router.add_get("/sdapi/v1/options", self._get_options)
        app.router.add_post("/sdapi/v1/options", self._set_options)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_pings(self, count: int, within: float = WAIT_TIMEOUT) -> None:
        """Until the sidecar has asked ``count`` times in all."""
        async with self._pinged:
            await asyncio.wait_for(self._pinged.wait_for(lambda: self.pings >= count), within)

    async def wait_for_option_reads(self, count: int, within: float = WAIT_TIMEOUT) -> None:
        """Until the sidecar has read the settings ``count`` times in all."""
        async with self._pinged:
            await asyncio.wait_for(
                self._pinged.wait_for(lambda: self.option_reads >= count), within
            )

    async def _get_options(self, request: web.Request) -> web.Response:
        self.option_reads += 1
        async with self._pinged:
            self._pinged.notify_all()
        if isinstance(self.options, bytes):
            return web.Response(body=self.options, content_type="application/json")
        return web.json_response(self.options)

    async def _set_options(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posted.append((time.monotonic(), body))
        if self.refuse or self.refuse_keys & set(body):
            return web.json_response({"detail": "refused"}, status=500)
        self.options.update(body)
        return web.json_response(True)

    async def _ping(self, request: web.Request) -> web.Response:
        self.pings += 1
        async with self._pinged:
            self._pinged.notify_all()
        while self.status is None:
            await self._never.wait()  # never set: the request stays open
        return web.Response(status=self.status)
