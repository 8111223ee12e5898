"""HttpForwarder: one HTTP request to a person's WebUI and its response back, streamed.

Bodies stream both ways with bounded memory; responses without a known small length are
pumped chunk by chunk (so SSE events arrive as sent) while watching for the browser going
away. The upstream client is `UpstreamPool` (see `upstream.py` for why). A WebUI page the
person navigates to gets the give-back badge (`badge.py`); nothing else is looked at.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from allocator import badge
from allocator.headers import Withheld, downstream_headers, upstream_headers
from allocator.types import Person, Receive, Scope, Send, Session
from allocator.upstream import (
    Body,
    UpstreamBroken,
    UpstreamPool,
    UpstreamRefused,
    UpstreamResponse,
)

__all__ = ["ClientGone", "HttpForwarder", "ResponseCut", "UpstreamBroken", "UpstreamRefused"]

SMALL_BODY = 64 * 1024
REPLAYABLE = frozenset({"GET", "HEAD", "OPTIONS"})


class ClientGone(Exception):
    """The browser went away while sending its request body."""


class ResponseCut(Exception):
    """The WebUI broke off a response the browser was already receiving."""


class _BrokenBeforeAnswer(Exception):
    """The WebUI broke off a page the badge was holding: the browser got nothing yet."""


def request_target(scope: Scope) -> bytes:
    """The path and query exactly as the browser sent them (no re-encoding)."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return raw_path + b"?" + query if query else raw_path


class HttpForwarder:
    def __init__(self, pool: UpstreamPool, withheld: Withheld, badge_on: bool = False) -> None:
        self.pool = pool
        self._withheld = withheld
        self.closing = asyncio.Event()  # set at shutdown: idle-exempt streams end at once
        self.badge_on = badge_on  # SDA_BADGE

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        session: Session,
        person: Person,
        exempt: bool,
    ) -> int:
        """Forward and answer; returns the status. Raises UpstreamRefused / UpstreamBroken
        before anything was sent to the browser, ResponseCut after."""
        method: str = scope["method"]
        headers = upstream_headers(scope, person, self._withheld)
        candidate = self.badge_on and method == "GET" and badge.wanted(scope["headers"])
        if candidate:
            headers = badge.narrowed(headers)
        body = await _request_body(receive)
        chunked = _frame(headers, body)
        head = _serialise(method, request_target(scope), headers)
        host, port = session.placement.host, session.placement.port
        response = await self.pool.request(
            host,
            port,
            head,
            body,
            chunked=chunked,
            head_only=method == "HEAD",
            replayable=method in REPLAYABLE and not isinstance(body, AsyncIterator),
        )
        try:
            if candidate and badge.rewritable(response.status, response.headers):
                await self._respond_with_badge(response, send, receive, exempt)
            else:
                await self._respond(response, send, receive, exempt)
        except _BrokenBeforeAnswer as exc:  # nothing reached the browser: recoverable
            raise UpstreamBroken(str(exc)) from exc
        except UpstreamBroken as exc:
            raise ResponseCut(str(exc)) from exc
        finally:
            self.pool.release(response, host, port)
        return response.status

    async def _respond(
        self, response: UpstreamResponse, send: Send, receive: Receive, exempt: bool
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": downstream_headers(response.headers),
            }
        )
        length = response.content_length
        if response.complete or (length is not None and length <= SMALL_BODY):
            await send({"type": "http.response.body", "body": await response.read()})
            return
        await self._stream(response, send, receive, exempt)

    async def _respond_with_badge(
        self, response: UpstreamResponse, send: Send, receive: Receive, exempt: bool
    ) -> None:
        """The page with the badge's script in it; a page too big or too slow to hold goes
        through unchanged (what was held, then the rest as it comes)."""
        length = response.content_length
        if length is not None and length > badge.BODY_LIMIT:
            await self._respond(response, send, receive, exempt)
            return
        held: list[bytes] = []
        try:
            whole = await _hold(response, held, receive)
        except UpstreamBroken as exc:
            raise _BrokenBeforeAnswer(str(exc)) from exc
        if whole is None:
            return  # the browser went away
        body = b"".join(held)
        headers = downstream_headers(response.headers)
        if whole:
            changed = await asyncio.to_thread(badge.with_script, body, badge.encoding_of(headers))
            if changed is not None:
                body, headers = changed, badge.page_headers(headers, len(changed))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if whole:
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await self._stream(response, send, receive, exempt)

    async def _stream(
        self, response: UpstreamResponse, send: Send, receive: Receive, exempt: bool
    ) -> None:
        pump = asyncio.ensure_future(_pump(response, send))
        watchers: set[asyncio.Future[Any]] = {asyncio.ensure_future(_disconnected(receive))}
        if exempt:
            watchers.add(asyncio.ensure_future(self.closing.wait()))
        try:
            await asyncio.wait({pump, *watchers}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, *watchers):
                task.cancel()
        if pump.done() and not pump.cancelled():
            pump.result()
        elif self.closing.is_set():
            await send({"type": "http.response.body", "body": b""})


def _frame(headers: list[tuple[bytes, bytes]], body: Body) -> bool:
    """Add the framing the WebUI needs for `body`; True when it must go chunk-encoded."""
    if body is None or any(name == b"content-length" for name, _ in headers):
        return False
    if isinstance(body, bytes):
        headers.append((b"content-length", str(len(body)).encode()))
        return False
    headers.append((b"transfer-encoding", b"chunked"))
    return True


def _serialise(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


async def _pump(response: UpstreamResponse, send: Send) -> None:
    async for chunk in response.chunks():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _hold(response: UpstreamResponse, held: list[bytes], receive: Receive) -> bool | None:
    """Take the body into `held`: True when it all came within the limits of size and
    time, False when the rest must stream, None when the browser went away meanwhile."""
    taking = asyncio.ensure_future(_take(response, held))
    gone = asyncio.ensure_future(_disconnected(receive))
    tasks = {taking, gone}
    try:
        await asyncio.wait(tasks, timeout=badge.BODY_WAIT, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)  # no one else reads the body while `taking` still might
    if not gone.cancelled():  # the browser went away; what the WebUI did meanwhile is moot
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved, so never reported as lost
        return None
    return False if taking.cancelled() else taking.result()


async def _take(response: UpstreamResponse, held: list[bytes]) -> bool:
    size = 0
    async for chunk in response.chunks():
        held.append(chunk)
        size += len(chunk)
        if size > badge.BODY_LIMIT:
            return False
    return True


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _request_body(receive: Receive) -> Body:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):
        return _body_stream(body, receive)
    return body or None


async def _body_stream(first: bytes, receive: Receive) -> AsyncIterator[bytes]:
    if first:
        yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk: bytes = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return
