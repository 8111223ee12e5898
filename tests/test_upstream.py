"""UpstreamPool against scripted servers: every way a WebUI can answer, or fail to."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from allocator.upstream import READ_HIGH_WATER, UpstreamBroken, UpstreamPool, UpstreamRefused
from tests.support.processes import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
GET = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


class Scripted:
    """A TCP server running `handler` per connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.port = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except ConnectionError:
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def hold_open() -> None:
    """Keep the connection as it is until the test ends."""
    await asyncio.Event().wait()


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%b\r\n%b" % (len(body), extra, body)


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_head(reader)
        writer.write(answer(b"hello"))
        await writer.drain()


@pytest.fixture
def pool() -> UpstreamPool:
    return UpstreamPool(connect_timeout=2.0)


async def test_keep_alive_connection_is_reused(pool: UpstreamPool) -> None:
    async with Scripted(keep_alive) as server:
        for _ in range(3):
            response = await pool.request("127.0.0.1", server.port, GET, None)
            assert (response.status, await response.read()) == (200, b"hello")
            pool.release(response, "127.0.0.1", server.port)
        assert server.connections == 1


async def test_chunked_response_streams_piece_by_piece(pool: UpstreamPool) -> None:
    """Each piece is sent only after the reader has had the one before: a pool that waited
    for more (or for the end) would never get past the first."""
    read: list[asyncio.Event] = [asyncio.Event() for _ in range(3)]

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for index, piece in enumerate((b"one", b"two", b"three")):
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
            await read[index].wait()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await hold_open()

    async with Scripted(chunked) as server:
        response = await pool.request("127.0.0.1", server.port, GET, None)
        assert response.content_length is None
        pieces = []
        async for chunk in response.chunks():
            pieces.append(chunk)
            read[len(pieces) - 1].set()
        assert pieces == [b"one", b"two", b"three"]
        assert response.keep_alive


async def test_body_until_the_connection_closes(pool: UpstreamPool) -> None:
    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\npart one, part two")
        await writer.drain()

    async with Scripted(until_eof) as server:
        response = await pool.request("127.0.0.1", server.port, GET, None)
        assert await response.read() == b"part one, part two"
        pool.release(response, "127.0.0.1", server.port)
        assert not pool._idle.get(("127.0.0.1", server.port))


@pytest.mark.parametrize(
    ("method", "status_line"),
    [(b"HEAD", b"200 OK"), (b"GET", b"204 No Content"), (b"GET", b"304 Not Modified")],
)
async def test_answers_without_a_body_do_not_hang(
    pool: UpstreamPool, method: bytes, status_line: bytes
) -> None:
    async def no_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        length = b"content-length: 1234\r\n" if method == b"HEAD" else b""
        writer.write(b"HTTP/1.1 %b\r\n%b\r\n" % (status_line, length))
        await writer.drain()
        await hold_open()  # a pool waiting for a body would wait forever

    async with Scripted(no_body) as server:
        head = method + b" / HTTP/1.1\r\nhost: x\r\n\r\n"
        response = await asyncio.wait_for(
            pool.request("127.0.0.1", server.port, head, None, head_only=method == b"HEAD"), 30
        )
        assert await asyncio.wait_for(response.read(), 30) == b""


async def test_early_hints_are_skipped(pool: UpstreamPool) -> None:
    async def hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n" + answer(b"ok"))
        await writer.drain()
        await hold_open()

    async with Scripted(hints) as server:
        response = await pool.request("127.0.0.1", server.port, GET, None)
        assert response.status == 200
        assert response.headers == [(b"content-length", b"2")]
        assert await response.read() == b"ok"


async def test_a_pooled_connection_the_webui_closed_is_retried_for_get_only(
    pool: UpstreamPool,
) -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(answer(b"hi"))
        await writer.drain()
        await released.wait()  # then closes, as an idle keep-alive timeout would

    released = asyncio.Event()
    async with Scripted(one_answer) as server:
        first = await pool.request("127.0.0.1", server.port, GET, None)
        assert await first.read() == b"hi"
        pool.release(first, "127.0.0.1", server.port)
        assert pool._idle.get(("127.0.0.1", server.port))
        released.set()
        idle = pool._idle[("127.0.0.1", server.port)]
        await eventually(lambda: all(c.closed for c in idle), "the pool to see the close")
        # The pool noticed the close: a fresh connection, no retry needed.
        second = await pool.request("127.0.0.1", server.port, GET, None, replayable=True)
        assert await second.read() == b"hi"
        assert server.connections == 2


async def test_a_reused_connection_dropped_mid_request_is_retried_when_replayable(
    pool: UpstreamPool,
) -> None:
    async def one_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(answer(b"first"))
        await writer.drain()
        await read_head(reader)  # the second request on this connection: hang up on it

    async with Scripted(one_then_hang_up) as server:
        first = await pool.request("127.0.0.1", server.port, GET, None)
        assert await first.read() == b"first"
        pool.release(first, "127.0.0.1", server.port)
        retried = await pool.request("127.0.0.1", server.port, GET, None, replayable=True)
        assert await retried.read() == b"first"
        assert server.connections == 2
        pool.release(retried, "127.0.0.1", server.port)
        post = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n"
        with pytest.raises(UpstreamBroken):
            await pool.request("127.0.0.1", server.port, post, b"x", replayable=False)


async def test_refused_and_garbage(pool: UpstreamPool) -> None:
    with pytest.raises(UpstreamRefused):
        await pool.request("127.0.0.1", free_port(), GET, None)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        await hold_open()

    async with Scripted(garbage) as server:
        with pytest.raises(UpstreamBroken, match="invalid HTTP response"):
            await pool.request("127.0.0.1", server.port, GET, None)


async def test_cut_off_body_is_an_error_not_a_short_answer(pool: UpstreamPool) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 500)
        await writer.drain()

    async with Scripted(cut) as server:
        response = await pool.request("127.0.0.1", server.port, GET, None)
        with pytest.raises(UpstreamBroken):
            await response.read()


@pytest.mark.parametrize("chunked", [True, False])
async def test_streamed_request_body_arrives_whole(pool: UpstreamPool, chunked: bool) -> None:
    received: list[bytes] = []

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if b"chunked" in head:
            body = b""
            while (size := int((await reader.readline()).strip(), 16)) > 0:
                body += await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        else:
            body = await reader.readexactly(3 * 65536)
        received.append(body)
        writer.write(answer(b"%d" % len(body)))
        await writer.drain()

    async def body() -> AsyncIterator[bytes]:
        for index in range(3):
            yield bytes([index]) * 65536

    framing = b"transfer-encoding: chunked" if chunked else b"content-length: 196608"
    head = b"POST /up HTTP/1.1\r\nhost: x\r\n%b\r\n\r\n" % framing
    async with Scripted(sink) as server:
        response = await pool.request("127.0.0.1", server.port, head, body(), chunked=chunked)
        assert await response.read() == b"196608"
    assert received == [b"\x00" * 65536 + b"\x01" * 65536 + b"\x02" * 65536]


async def test_a_slow_browser_bounds_what_is_buffered(pool: UpstreamPool) -> None:
    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        size = 20 * 1024 * 1024
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"z" * 65536)
            await writer.drain()

    async with Scripted(firehose) as server:
        response = await pool.request("127.0.0.1", server.port, GET, None)
        total = peak = 0
        async for chunk in response.chunks():
            total += len(chunk)
            peak = max(peak, response._buffered)
            if total < 2 * 1024 * 1024:
                await asyncio.sleep(0.001)  # a slow reader at first
        assert total == 20 * 1024 * 1024
        assert peak < READ_HIGH_WATER + 1024 * 1024


async def test_no_answer_within_the_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await hold_open()

    pool = UpstreamPool(connect_timeout=2.0, read_timeout=0.3)
    async with Scripted(silent) as server:
        with pytest.raises(UpstreamBroken, match=r"no response within 0\.3 s"):
            await pool.request("127.0.0.1", server.port, GET, None)


async def test_a_reset_is_not_an_end_of_body(pool: UpstreamPool) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(0.1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, not FIN

    async with Scripted(reset) as server:
        response = await pool.request("127.0.0.1", server.port, GET, None)
        with pytest.raises(UpstreamBroken):
            await response.read()


async def test_a_second_answer_to_one_request_is_refused(pool: UpstreamPool) -> None:
    async def twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"2\r\nok\r\n0\r\n\r\n" + answer(b"smuggled"))
        await writer.drain()
        await hold_open()

    async with Scripted(twice) as server:
        response = await pool.request("127.0.0.1", server.port, GET, None)
        body = b""
        with contextlib.suppress(UpstreamBroken):
            body = await response.read()
        assert b"smuggled" not in body
        pool.release(response, "127.0.0.1", server.port)
        assert not pool._idle.get(("127.0.0.1", server.port))
