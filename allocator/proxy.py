"""HttpForwarder: one HTTP request to a person's WebUI and its response back, streamed.

The upstream client is aiohttp: measured on this kind of machine it sustains several times
the request rate of httpx's pooled client at 32 connections (BENCHMARKS.md). Bodies stream
both ways with bounded memory; responses without a known small length are pumped chunk by
chunk (so SSE events arrive as sent) while watching for the browser going away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from allocator.headers import downstream_headers, upstream_headers
from allocator.settings import Settings
from allocator.types import Person, Receive, Scope, Send, Session

SMALL_BODY = 64 * 1024
REPLAYABLE = frozenset({"GET", "HEAD", "OPTIONS"})


class UpstreamRefused(Exception):
    """The WebUI's address did not accept a connection (gone, or not listening)."""


class UpstreamBroken(Exception):
    """The WebUI accepted but did not produce a response."""


class ClientGone(Exception):
    """The browser went away while sending its request body."""


def create_client(settings: Settings) -> aiohttp.ClientSession:
    """One pooled client for the process; no total timeout (generations and streams are long)."""
    connector = aiohttp.TCPConnector(
        limit=0,
        keepalive_timeout=4.0,  # below the 5 s uvicorn default of Gradio apps: no reuse race
        enable_cleanup_closed=True,
    )
    timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=settings.upstream_connect_timeout,
        sock_read=settings.upstream_read_timeout or None,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
    )


def upstream_url(scheme: str, session: Session, scope: Scope) -> URL:
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    target = raw_path + b"?" + query if query else raw_path
    return URL(f"{scheme}://{session.authority}{target.decode('latin-1')}", encoded=True)


class HttpForwarder:
    def __init__(self, client: aiohttp.ClientSession, cookie_name: bytes | None) -> None:
        self.client = client
        self._cookie = cookie_name
        self.closing = asyncio.Event()  # set at shutdown: idle-exempt streams end at once

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
        before anything was sent to the browser."""
        method: str = scope["method"]
        headers = upstream_headers(scope, person, self._cookie)
        body = await _request_body(receive)
        url = upstream_url("http", session, scope)
        replayable = method in REPLAYABLE and not isinstance(body, AsyncIterator)
        response = await self._open(method, url, headers, body, replayable)
        try:
            await self._respond(response, send, receive, exempt)
        finally:
            response.release()
        return response.status

    async def _open(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterator[bytes] | None,
        replayable: bool,
    ) -> aiohttp.ClientResponse:
        for attempt in range(2):
            try:
                return await self.client.request(
                    method,
                    url,
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                )
            except aiohttp.ClientConnectorError as exc:
                raise UpstreamRefused(str(exc)) from exc
            except aiohttp.ServerDisconnectedError as exc:
                if attempt == 0 and replayable:
                    continue  # a pooled connection the WebUI had just closed
                raise UpstreamBroken("the WebUI closed the connection") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamBroken(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _respond(
        self, response: aiohttp.ClientResponse, send: Send, receive: Receive, exempt: bool
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": downstream_headers(response.raw_headers),
            }
        )
        length = response.content_length
        if length is not None and length <= SMALL_BODY:
            await send({"type": "http.response.body", "body": await response.read()})
            return
        await self._stream(response, send, receive, exempt)

    async def _stream(
        self, response: aiohttp.ClientResponse, send: Send, receive: Receive, exempt: bool
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


async def _pump(response: aiohttp.ClientResponse, send: Send) -> None:
    async for chunk in response.content.iter_any():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _request_body(receive: Receive) -> bytes | AsyncIterator[bytes] | None:
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


async def close_quietly(client: aiohttp.ClientSession) -> None:
    with contextlib.suppress(Exception):
        await client.close()
