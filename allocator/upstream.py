"""UpstreamPool: the hot path's HTTP/1.1 client, pooled keep-alive connections to WebUIs.

Why not a library client: `make bench` measures the candidates side by side (BENCHMARKS.md,
"Upstream client"): with 32 concurrent 1 KiB GETs, aiohttp's ClientSession spends about
five times the CPU per request of this module, and httpx's pooled client collapses to a few
hundred requests per second. A proxy only needs the plain core of a client: write the head
and body, parse the response with httptools (llhttp, the parser uvicorn uses), stream it,
reuse the socket. WebSockets still go through aiohttp (`wsproxy.py`), where per-request
cost does not matter.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from typing import cast

import httptools

READ_HIGH_WATER = 256 * 1024  # stop reading from the WebUI while this much waits for the browser
READ_LOW_WATER = 64 * 1024


class UpstreamRefused(Exception):
    """The WebUI's address did not accept a connection (gone, or not listening)."""


class UpstreamBroken(Exception):
    """The WebUI accepted but did not produce a (complete) response."""


class _Disconnected(UpstreamBroken):
    """The connection closed (before the response: safe to retry a replayable request)."""

    def __init__(self, reason: str, clean: bool = True) -> None:
        super().__init__(reason)
        self.clean = clean  # an orderly close, not a reset


class UpstreamResponse:
    """A response whose head has arrived; the body is read with `read()` or `chunks()`."""

    def __init__(self, connection: _Connection, head_only: bool) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.head_only = head_only
        self._connection = connection
        self._loop = connection.loop
        self._head: asyncio.Future[None] = self._loop.create_future()
        self._head.add_done_callback(_retrieve)  # a failed request may never await it
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._until_eof = False
        self._any_byte = False

    @property
    def content_length(self) -> int | None:
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else None
        return None

    @property
    def complete(self) -> bool:
        return self._done

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < READ_LOW_WATER:
                    self._connection.resume_reading()
                yield chunk
            elif self._done:
                return
            elif self._error is not None:
                raise self._error
            else:
                self._waiter = self._loop.create_future()
                await self._waiter

    # -- fed by the connection's parser callbacks ----------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _began(self) -> None:
        self._any_byte = True

    def _head_complete(self, status: int, keep_alive: bool) -> None:
        self.status = status
        self.keep_alive = keep_alive and not self.head_only
        names = {name for name, _ in self.headers}
        self._until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        if self.head_only or status in (204, 304):
            self._done = True
        if not self._head.done():
            self._head.set_result(None)

    def _feed(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH_WATER:
            self._connection.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, error: Exception) -> None:
        if not self._head.done():
            self._head.set_exception(error)
        elif not self._done:
            if self._until_eof and isinstance(error, _Disconnected) and error.clean:
                self._done = True  # a body delimited by the (orderly) end of the connection
            else:
                self._error = error
        self._wake()


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_used = 0.0
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._response: UpstreamResponse | None = None
        self._write_resumed: asyncio.Future[None] | None = None
        self._reading_paused = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None:  # nothing asked: a WebUI talking out of turn
            self.close()
            return
        response._began()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(UpstreamBroken(f"invalid HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._response is not None:
            reason = f"connection lost: {exc}" if exc else "the WebUI closed the connection"
            self._response._fail(_Disconnected(reason, clean=exc is None))
        if self._write_resumed is not None and not self._write_resumed.done():
            self._write_resumed.set_result(None)

    def pause_writing(self) -> None:
        self._write_resumed = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._write_resumed is not None and not self._write_resumed.done():
            self._write_resumed.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        response = self._response
        if response is not None and response.status:  # a second answer to one request
            raise UpstreamBroken("the WebUI sent more than one response")  # stops the parser

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._response is not None
        self._response.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        assert self._response is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational (103 Early Hints): wait for the real one
            self._response.headers = []
            return
        self._response._head_complete(status, self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        assert self._response is not None
        self._response._feed(body)

    def on_message_complete(self) -> None:
        if self._response is not None and self._response.status:
            self.last_used = time.monotonic()  # the WebUI's keep-alive clock starts now
            self._response._finish()

    # -- used by the pool -----------------------------------------------------------------

    def begin(self, head_only: bool) -> UpstreamResponse:
        self._response = UpstreamResponse(self, head_only)
        return self._response

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self._write_resumed is not None and not self._write_resumed.done():
            await self._write_resumed

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def reusable(self) -> bool:
        response = self._response
        return (
            not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and response is not None
            and response.complete
            and response.keep_alive
            and not self._reading_paused
        )

    def idle(self) -> None:
        self._response = None
        self.reused = True

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


Body = bytes | AsyncIterator[bytes] | None


class UpstreamPool:
    def __init__(
        self,
        connect_timeout: float,
        read_timeout: float | None = None,
        keepalive: float = 4.0,  # below the 5 s uvicorn default of Gradio apps: no reuse race
        max_idle_per_host: int = 64,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._keepalive = keepalive
        self._max_idle = max_idle_per_host
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def request(
        self,
        host: str,
        port: int,
        head: bytes,
        body: Body,
        chunked: bool = False,
        head_only: bool = False,
        replayable: bool = False,
    ) -> UpstreamResponse:
        """Send a request (`head`: its request line and headers, serialised) and wait for the
        response head. A streamed body is sent as is, or chunk-encoded when `chunked`.
        A replayable request is retried once on a fresh connection when a pooled one turns
        out to have been closed by the WebUI."""
        connection = await self._checkout(host, port)
        try:
            return await self._exchange(connection, head, body, chunked, head_only)
        except _Disconnected:
            connection.close()
            if not (replayable and connection.reused):
                raise
        except BaseException:
            connection.close()
            raise
        connection = await self._connect(host, port)
        try:
            return await self._exchange(connection, head, body, chunked, head_only)
        except BaseException:
            connection.close()
            raise

    def release(self, response: UpstreamResponse, host: str, port: int) -> None:
        """Back to the pool if the exchange finished cleanly, else closed."""
        connection = response._connection
        idle = self._idle.setdefault((host, port), [])
        if connection.reusable() and len(idle) < self._max_idle:
            connection.idle()
            idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _exchange(
        self, connection: _Connection, head: bytes, body: Body, chunked: bool, head_only: bool
    ) -> UpstreamResponse:
        response = connection.begin(head_only)
        if body is None or isinstance(body, bytes):
            connection.write(head + body if body else head)
        else:
            connection.write(head)
            await _send_stream(connection, body, chunked)
        if not self._read_timeout:
            await response._head
            return response
        try:
            await asyncio.wait_for(asyncio.shield(response._head), self._read_timeout)
        except TimeoutError:
            raise UpstreamBroken(f"no response within {self._read_timeout:g} s") from None
        return response

    async def _checkout(self, host: str, port: int) -> _Connection:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.last_used < self._keepalive:
                return connection
            connection.close()
        if idle is not None:
            del self._idle[(host, port)]  # WebUIs come and go: forget addresses not in use
        return await self._connect(host, port)

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop), host, port),
                self._connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamRefused(f"{host}:{port}: {exc or type(exc).__name__}") from exc
        return connection


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


async def _send_stream(connection: _Connection, body: AsyncIterator[bytes], chunked: bool) -> None:
    async for chunk in body:
        if not chunk:
            continue
        if connection.closed:
            return  # the WebUI answered early and hung up; its answer is what counts
        connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        await connection.drain()
    if chunked and not connection.closed:
        connection.write(b"0\r\n\r\n")
