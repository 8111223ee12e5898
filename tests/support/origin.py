"""A stand-in upstream with what the proxy must carry: echo, SSE, WebSockets, uploads, slowness.

Runs an aiohttp server on a background loop (`background`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from aiohttp import WSMsgType, web

from background import BackgroundLoop, serve


class Origin:
    def __init__(self) -> None:
        self.port = 0
        self.ws_closes: list[int | None] = []
        self.requests = 0
        self._gates: dict[str, asyncio.Event] = {}
        self.held: list[str] = []  # gates a request has reached and waits at
        self._background = BackgroundLoop("origin")
        self._runner: web.AppRunner | None = None

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.port}"

    def settings(self, **extra: str) -> dict[str, str]:
        """Allocator settings that send everyone to this origin, header identity."""
        return {"backend": "static", "static_target": self.authority, "identity": "header", **extra}

    def start(self) -> Origin:
        self._background.start()
        self._runner, self.port = self._background.call(serve(self._application()))
        return self

    def open_gate(self, name: str) -> None:
        """Let `/hold/<name>` answer, or `/sse-steps` send its next event (`<key>-<index>`)."""

        async def open_it() -> None:
            self._gate(name).set()

        self._background.call(open_it())

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def stop(self) -> None:
        if self._runner is not None:
            self._background.call(self._runner.cleanup())
        self._background.stop()

    def _application(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/sse", self.sse)
        app.router.add_get("/sse-steps", self.sse_steps)
        app.router.add_get("/hold/{gate}", self.hold)
        app.router.add_get("/ws", self.websocket)
        app.router.add_post("/upload", self.upload)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/gradio_api/heartbeat/{session}", self.heartbeat)
        app.router.add_get("/cookies", self.cookies)
        app.router.add_get("/cut", self.cut)
        return app

    async def echo(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        data: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        response = web.json_response(data)
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    async def sse(self, request: web.Request) -> web.StreamResponse:
        count = int(request.query.get("n", "5"))
        gap = float(request.query.get("gap", "0.3"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(count):
            await response.write(f"data: {json.dumps({'n': index})}\n\n".encode())
            await asyncio.sleep(gap)
        await response.write_eof()
        return response

    async def sse_steps(self, request: web.Request) -> web.StreamResponse:
        """Event i is sent only once the gate `<key>-<i-1>` is open: a client that has read
        each event before opening the next gate proves the stream was not buffered."""
        key, count = request.query["key"], int(request.query.get("n", "3"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(count):
            if index:
                await self._gate(f"{key}-{index - 1}").wait()
            await response.write(f"data: {json.dumps({'n': index})}\n\n".encode())
        await response.write_eof()
        return response

    async def hold(self, request: web.Request) -> web.Response:
        """Answers once the test opens the gate: a request in flight for as long as needed."""
        gate = request.match_info["gate"]
        self.held.append(gate)
        await self._gate(gate).wait()
        return web.json_response({"held": True})

    async def heartbeat(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b"data: heartbeat\n\n")
                await asyncio.sleep(1)
        except ConnectionError:
            return response

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat", "other"), max_msg_size=0)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                if message.data.startswith("close:"):
                    _, code, reason = message.data.split(":", 2)
                    await ws.close(code=int(code), message=reason.encode())
                    break
                await ws.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        self.ws_closes.append(ws.close_code)
        return ws

    async def upload(self, request: web.Request) -> web.Response:
        total = 0
        digest = hashlib.sha256()
        async for chunk in request.content.iter_chunked(1 << 16):
            total += len(chunk)
            digest.update(chunk)
        return web.json_response({"bytes": total, "sha256": digest.hexdigest()})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "1")))
        return web.json_response({"slept": True})

    async def cut(self, request: web.Request) -> web.StreamResponse:
        """Promises 200 000 bytes, sends 100 000, hangs up."""
        response = web.StreamResponse(headers={"Content-Length": "200000"})
        await response.prepare(request)
        await response.write(b"c" * 100_000)
        assert request.transport is not None
        request.transport.close()
        return response

    async def cookies(self, request: web.Request) -> web.Response:
        return web.json_response({"cookie": request.headers.get("Cookie")})
