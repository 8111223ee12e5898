"""A tiny origin for the memory benchmark: what a WebUI does, minus the WebUI.

    GET  /        a fixed 1 KiB body
    GET  /ws      WebSocket echo (text and binary)
    POST /upload  reads and discards the body, answers {"bytes": <count>}

Run: python -m bench.origin_ws --port 8000
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web

BODY = b"o" * 1024


async def index(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="text/plain")


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=None, autoping=True)
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


async def upload(request: web.Request) -> web.Response:
    received = 0
    async for chunk in request.content.iter_any():
        received += len(chunk)
    return web.json_response({"bytes": received})


def app() -> web.Application:
    application = web.Application()
    application.add_routes([web.get("/", index), web.get("/ws", echo), web.post("/upload", upload)])
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    web.run_app(app(), host=args.host, port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
