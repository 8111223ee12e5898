"""A WebUI stand-in for fake_agones pods (AppBacking): says which pod answered, streams,
echoes WebSockets, holds a request open until the test says so, answers Gradio heartbeats."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from fake_agones import Pod


class Gates:
    """Named gates a pod's `/hold/<name>` waits at until a test thread opens them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened: set[str] = set()
        self._waiting: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self.reached: list[str] = []

    def open(self, name: str) -> None:
        with self._lock:
            self._opened.add(name)
            waiting = self._waiting.pop(name, [])
        for loop, event in waiting:
            loop.call_soon_threadsafe(event.set)

    async def wait(self, name: str) -> None:
        event = asyncio.Event()
        with self._lock:
            self.reached.append(name)
            if name in self._opened:
                return
            self._waiting.setdefault(name, []).append((asyncio.get_running_loop(), event))
        await event.wait()


gates = Gates()


def pod_app(pod: Pod) -> web.Application:
    async def ping(request: web.Request) -> web.Response:
        return web.json_response({})

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"pod": pod.name, "host": request.host})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "1")))
        return web.json_response({"pod": pod.name})

    async def hold(request: web.Request) -> web.Response:
        await gates.wait(request.match_info["gate"])
        return web.json_response({"pod": pod.name})

    async def sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for number in range(3):
            await response.write(f"data: {pod.name} {number}\n\n".encode())
            await asyncio.sleep(0.05)
        return response

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str(f"{pod.name}: {message.data}")
        return socket

    app = web.Application()
    app.router.add_get("/internal/ping", ping)
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/slow", slow)
    app.router.add_get("/hold/{gate}", hold)
    app.router.add_get("/gradio_api/heartbeat/{session}", ping)
    app.router.add_get("/sse", sse)
    app.router.add_get("/ws", ws)
    return app
