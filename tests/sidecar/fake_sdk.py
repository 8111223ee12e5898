"""A fake Agones SDK server: the REST paths the sidecar uses, on loopback, in the test's loop.

Like the real one (``pkg/sdkserver``), a watch stream starts with the GameServer as it is now and
then carries every change; ``/ready`` and ``/shutdown`` change its state, ``PUT
/metadata/annotation`` sets the annotation ``agones.dev/sdk-<key>``. It refuses a POST whose body
is not the JSON ``{}`` the REST gateway expects, and a PUT whose body is not ``{"key": ...,
"value": ...}`` with strings, so a sidecar that sends anything else never gets a call recorded. It
can be created before it listens, to play an SDK server that starts late.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.support.processes import free_port

WAIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Call:
    path: str
    at: float
    body: dict[str, Any]


class FakeAgonesSDK:
    def __init__(self, health_period_seconds: int = 5) -> None:
        self.port = free_port()
        self.calls: list[Call] = []
        self.watch_connections = 0
        self.gameserver: dict[str, Any] = {
            "object_meta": {
                "name": "sd-webui-abcde",
                "namespace": "default",
                "labels": {},
                "annotations": {},
            },
            "spec": {"health": {"period_seconds": health_period_seconds, "failure_threshold": 3}},
            "status": {"state": "Scheduled"},
        }
        self._streams: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    async def start(self) -> FakeAgonesSDK:
        app = web.Application()
        for path in ("/ready", "/health", "/shutdown"):
            app.router.add_post(path, self._post)
        app.router.add_put("/metadata/annotation", self._put_annotation)
        app.router.add_get("/gameserver", self._get_gameserver)
        app.router.add_get("/watch/gameserver", self._watch)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        await self.end_streams()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- what the tests look at ---------------------------------------------------------------

    def count(self, path: str) -> int:
        return sum(1 for call in self.calls if call.path == path)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [call.body for call in self.calls if call.path == path]

    @property
    def annotations(self) -> dict[str, str]:
        annotations: dict[str, str] = self.gameserver["object_meta"]["annotations"]
        return annotations

    async def wait_for(self, path: str, count: int = 1, within: float = WAIT_TIMEOUT) -> Call:
        """The ``count``-th call to ``path``, once it has arrived."""
        await self.wait_until(lambda: self.count(path) >= count, within)
        return [call for call in self.calls if call.path == path][count - 1]

    async def wait_until(self, check: Callable[[], bool], within: float = WAIT_TIMEOUT) -> None:
        """Until ``check()`` holds; it is asked again after every call and watch connection."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(check), within)

    async def updates_read(self) -> None:
        """Returns once the watching sidecar has read every update sent so far: its stream is
        ended after them, and it connects again only once it has read that stream to its end."""
        await self.wait_until(lambda: bool(self._streams))
        connections = self.watch_connections
        await self.end_streams()
        await self.wait_until(lambda: self.watch_connections > connections)

    # --- what the tests change ----------------------------------------------------------------

    async def set_label(self, key: str, value: str) -> None:
        self.gameserver["object_meta"]["labels"][key] = value
        await self._publish()

    async def allocate(self, labels: dict[str, str]) -> None:
        """What an allocation does to the GameServer: its labels and state change at once."""
        self.gameserver["object_meta"]["labels"].update(labels)
        self.gameserver["status"]["state"] = "Allocated"
        await self._publish()

    async def set_state(self, state: str) -> None:
        self.gameserver["status"]["state"] = state
        await self._publish()

    async def end_streams(self) -> None:
        """Close every open watch stream, as a restarting SDK server would."""
        for queue in list(self._streams):
            await queue.put(None)

    # --- the server ---------------------------------------------------------------------------

    async def _post(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json" or await request.text() != "{}":
            return web.json_response({"error": "expected the JSON body {}"}, status=400)
        self.calls.append(Call(request.path, time.monotonic(), {}))
        if request.path == "/ready":
            self.gameserver["status"]["state"] = "Ready"
        elif request.path == "/shutdown":
            self.gameserver["status"]["state"] = "Shutdown"
        if request.path != "/health":
            await self._publish()
        await self._notify()
        return web.json_response({})

    async def _get_gameserver(self, request: web.Request) -> web.Response:
        return web.json_response(self.gameserver)

    async def _put_annotation(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.content_type == "application/json" else None
        except ValueError:
            body = None
        if (
            not isinstance(body, dict)
            or set(body) != {"key", "value"}
            or not all(isinstance(v, str) for v in body.values())
        ):
            return web.json_response({"error": "expected a key and a value"}, status=400)
        self.calls.append(Call(request.path, time.monotonic(), body))
        self.annotations[f"agones.dev/sdk-{body['key']}"] = body["value"]
        await self._publish()
        await self._notify()
        return web.json_response({})

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        # The stream starts with the GameServer as it is when the watch is registered.
        update: dict[str, Any] | None = copy.deepcopy(self.gameserver)
        self._streams.add(queue)
        self.watch_connections += 1
        await self._notify()
        try:
            while update is not None:
                await response.write(json.dumps({"result": update}).encode() + b"\n")
                update = await queue.get()
        finally:
            self._streams.discard(queue)
        return response

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _publish(self) -> None:
        for queue in self._streams:
            await queue.put(copy.deepcopy(self.gameserver))
