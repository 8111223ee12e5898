"""WebSocketForwarder: a browser WebSocket joined to one on the person's WebUI.

Text, binary and close codes pass both ways unchanged (Gradio 3's `/queue/join` runs over
this). At shutdown every open WebSocket is closed with 1001 (going away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
from yarl import URL

from allocator import metrics
from allocator.headers import Withheld, as_multidict, upstream_headers
from allocator.proxy import request_target
from allocator.settings import Settings
from allocator.types import Person, Receive, Scope, Send, Session
from allocator.upstream import UpstreamBroken, UpstreamRefused

log = logging.getLogger(__name__)

GOING_AWAY = 1001
CLOSE_WAIT_SECONDS = 2.0
# Codes a peer may receive but never send in a close frame (RFC 6455 §7.4.1).
_RESERVED = {1005: 1000, 1006: 1011, 1015: 1011}


def create_client(settings: Settings) -> aiohttp.ClientSession:
    """The WebSocket client: no total timeout (a WebSocket lives as long as the page)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.upstream_connect_timeout)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),  # each open WebSocket holds a connection
        timeout=timeout,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )


class WebSocketForwarder:
    def __init__(self, client: aiohttp.ClientSession, withheld: Withheld, max_size: int) -> None:
        self.client = client
        self._withheld = withheld
        self._max_size = max_size
        self._open: dict[asyncio.Future[int], asyncio.Event] = {}  # stop → relay finished

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, session: Session, person: Person
    ) -> None:
        """Raises UpstreamRefused / UpstreamBroken before the browser's handshake is answered."""
        if (await receive())["type"] != "websocket.connect":
            return
        upstream = await self._connect(scope, session, person)
        stop: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        finished = self._open[stop] = asyncio.Event()
        metrics.OPEN_WEBSOCKETS.inc()
        try:
            await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
            await self._relay(upstream, receive, send, stop)
        except OSError:  # the browser went away (uvicorn's ClientDisconnected)
            pass
        finally:
            del self._open[stop]
            finished.set()
            metrics.OPEN_WEBSOCKETS.dec()
            await upstream.close()

    async def _connect(
        self, scope: Scope, session: Session, person: Person
    ) -> aiohttp.ClientWebSocketResponse:
        headers = as_multidict(upstream_headers(scope, person, self._withheld, websocket=True))
        target = request_target(scope).decode("latin-1")
        try:
            return await self.client.ws_connect(
                URL(f"ws://{session.authority}{target}", encoded=True),
                protocols=tuple(scope.get("subprotocols", ())),
                headers=headers,
                max_msg_size=self._max_size,
                autoping=True,
                compress=0,
            )
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamRefused(str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamBroken(f"{type(exc).__name__}: {exc}") from exc

    async def _relay(
        self,
        upstream: aiohttp.ClientWebSocketResponse,
        receive: Receive,
        send: Send,
        stop: asyncio.Future[int],
    ) -> None:
        to_upstream = asyncio.ensure_future(_browser_to_upstream(receive, upstream))
        to_browser = asyncio.ensure_future(_upstream_to_browser(upstream, send))
        waiting: set[asyncio.Future[Any]] = {to_upstream, to_browser, stop}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            to_upstream.cancel()
            to_browser.cancel()
        failed = [
            t.exception() for t in (to_upstream, to_browser) if t.done() and not t.cancelled()
        ]
        for error in filter(None, failed):
            log.info("WebSocket relay ended: %r", error)
        if stop.done():  # shutdown: the browser hears it first, then the WebUI
            code = stop.result()
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": code})
            await upstream.close(code=code)
        elif any(failed):
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": 1011})

    async def close_all(self, code: int = GOING_AWAY) -> int:
        """End every open WebSocket with `code`; waits (at most 2 s) until the closes are sent."""
        open_now = list(self._open.items())
        for stop, _ in open_now:
            if not stop.done():
                stop.set_result(code)
        if open_now:
            waits = [asyncio.ensure_future(finished.wait()) for _, finished in open_now]
            _, pending = await asyncio.wait(waits, timeout=CLOSE_WAIT_SECONDS)
            for waiting in pending:
                waiting.cancel()
        return len(open_now)


async def _browser_to_upstream(receive: Receive, upstream: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            else:
                await upstream.send_bytes(message.get("bytes") or b"")
        elif message["type"] == "websocket.disconnect":
            code = int(message.get("code") or 1000)
            await upstream.close(code=_RESERVED.get(code, code))
            return


async def _upstream_to_browser(upstream: aiohttp.ClientWebSocketResponse, send: Send) -> None:
    reason = ""
    while True:
        message = await upstream.receive()
        if message.type == aiohttp.WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": message.data})
        elif message.type == aiohttp.WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": message.data})
        else:
            if message.type == aiohttp.WSMsgType.CLOSE:
                reason = message.extra or ""
            elif message.type == aiohttp.WSMsgType.ERROR:
                log.info("upstream WebSocket error: %s", message.data)
            break
    code = upstream.close_code or 1000
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": _RESERVED.get(code, code), "reason": reason})
