"""A WebUI stand-in for fake_agones pods (AppBacking): says which pod answered, streams,
echoes WebSockets, holds a request open, answers Gradio heartbeats."""

from __future__ import annotations

import asyncio

from aiohttp import web

from fake_agones import Pod


def pod_app(pod: Pod) -> web.Application:
    async def ping(request: web.Request) -> web.Response:
        return web.json_response({})

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"pod": pod.name, "host": request.host})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "1")))
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
    app.router.add_get("/gradio_api/heartbeat/{session}", ping)
    app.router.add_get("/sse", sse)
    app.router.add_get("/ws", ws)
    return app
