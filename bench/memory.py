"""Scenario 2: the proxy's resident memory (process plus children) at rest, with many known
sessions, with many open WebSockets, and while a large upload streams through it.

The allocator is measured against the goals; configurable-http-proxy runs the same steps (minus
sessions, which it does not have) as a reference.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from bench import services
from bench.procs import Processes, Service, StartupError, tree_rss
from bench.tools import Tools, allocator_problem

SETTLE_S = 1.0


@dataclass(frozen=True)
class Sizes:
    sessions: int = 10_000
    websockets: int = 1_000
    upload_bytes: int = 1 << 30
    concurrency: int = 64


@dataclass
class Step:
    """Outcome of creating many things (sessions, WebSockets): how many worked, how fast."""

    wanted: int
    ok: int = 0
    seconds: float = 0.0
    first_error: str | None = None

    @property
    def failed(self) -> int:
        return self.wanted - self.ok


@dataclass
class Upload:
    sent: int
    received: int
    seconds: float
    rss_before: int
    rss_peak: int
    samples: int

    @property
    def growth(self) -> int:
        return self.rss_peak - self.rss_before


@dataclass
class MemoryResult:
    subject: str
    description: str
    missing: str | None = None
    rss: dict[str, int] = field(default_factory=dict)  # start, sessions, websockets (bytes)
    sessions: Step | None = None
    websockets: Step | None = None
    upload: Upload | None = None


def email(i: int) -> str:
    return f"user{i}@example.com"


async def settled_rss(pid: int) -> int:
    """RSS after a short pause, so that work just finished has been released."""
    await asyncio.sleep(SETTLE_S)
    return tree_rss(pid)


class RssSampler:
    """Samples a process tree's RSS every `interval` seconds on a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))


async def _gather_bounded(
    count: int, concurrency: int, work: Callable[[int], Awaitable[bool]], label: str
) -> Step:
    """Run `work(i)` for i < count, `concurrency` at a time; count successes. Gives up (raises)
    once more than 1 % have failed, so a broken proxy does not keep the run busy for hours."""
    step = Step(wanted=count)
    semaphore = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    progress = max(1, count // 4)
    tolerated = max(10, count // 100)
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        async with semaphore:
            if done - step.ok > tolerated:
                return
            try:
                if await work(i):
                    step.ok += 1
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                step.first_error = step.first_error or f"{type(e).__name__}: {e}"
            done += 1
            if done % progress == 0:
                print(f"      {label}: {step.ok}/{done} ok", flush=True)

    await asyncio.gather(*(one(i) for i in range(count)))
    step.seconds = round(time.monotonic() - started, 2)
    if done - step.ok > tolerated:
        raise ValueError(
            f"{label}: gave up after {done - step.ok} failures; first: {step.first_error}"
        )
    return step


async def create_sessions(base: str, count: int, concurrency: int) -> Step:
    """One request per distinct person, then poll /_allocator/status until `ready`."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def create(i: int) -> bool:
            headers = services.identity(email(i))
            deadline = time.monotonic() + 60
            state = "none"
            while time.monotonic() < deadline:
                if state == "none":
                    async with client.get(base + "/", headers=headers) as response:
                        await response.read()
                async with client.get(base + "/_allocator/status", headers=headers) as response:
                    body = await response.json(content_type=None)
                    state = body.get("state") if response.status == 200 else "error"
                if state == "ready":
                    return True
                await asyncio.sleep(0.05)
            raise ValueError(f"{email(i)} not ready after 60 s (state {state})")

        return await _gather_bounded(count, concurrency, create, "sessions")


async def open_websockets(
    client: aiohttp.ClientSession, base: str, count: int, concurrency: int
) -> tuple[Step, list[aiohttp.ClientWebSocketResponse]]:
    """Open `count` WebSockets to /ws (person i uses user{i}); each must echo one message."""
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    url = base.replace("http://", "ws://") + "/ws"

    async def open_one(i: int) -> bool:
        ws = await client.ws_connect(url, headers=services.identity(email(i)), heartbeat=None)
        sockets.append(ws)
        text = f"hello {i}"
        await ws.send_str(text)
        message = await ws.receive(timeout=10)
        if message.type != aiohttp.WSMsgType.TEXT or message.data != text:
            raise ValueError(f"WebSocket {i} echoed {message.type.name} {message.data!r}")
        return True

    step = await _gather_bounded(count, concurrency, open_one, "websockets")
    return step, sockets


async def _chunks(total: int, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
    chunk = b"u" * chunk_size
    sent = 0
    while sent < total:
        n = min(chunk_size, total - sent)
        yield chunk if n == chunk_size else chunk[:n]
        sent += n


async def stream_upload(base: str, size: int, pid: int) -> Upload:
    """POST `size` bytes (chunked, generated on the fly) to /upload while sampling RSS."""
    rss_before = await settled_rss(pid)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        with RssSampler(pid) as sampler:
            started = time.monotonic()
            async with client.post(
                base + "/upload", data=_chunks(size), headers=services.identity(email(0))
            ) as response:
                if response.status != 200:
                    text = await response.text()
                    raise ValueError(f"upload answered {response.status}: {text[:200]}")
                received = int((await response.json(content_type=None))["bytes"])
            seconds = round(time.monotonic() - started, 2)
    return Upload(
        sent=size,
        received=received,
        seconds=seconds,
        rss_before=rss_before,
        rss_peak=sampler.peak,
        samples=sampler.samples,
    )


async def _exercise(proxy: Service, sizes: Sizes, result: MemoryResult, sessions: bool) -> None:
    base = services.base_url(proxy)
    result.rss["start"] = await settled_rss(proxy.pid)
    print(f"    rss after start: {result.rss['start'] / 1e6:.1f} MB", flush=True)
    if sessions:
        result.sessions = await create_sessions(base, sizes.sessions, sizes.concurrency)
        result.rss["sessions"] = await settled_rss(proxy.pid)
        print(
            f"    rss with {result.sessions.ok} sessions: {result.rss['sessions'] / 1e6:.1f} MB",
            flush=True,
        )
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:
        result.websockets, sockets = await open_websockets(
            client, base, sizes.websockets, sizes.concurrency
        )
        result.rss["websockets"] = await settled_rss(proxy.pid)
        print(
            f"    rss with {result.websockets.ok} open WebSockets: "
            f"{result.rss['websockets'] / 1e6:.1f} MB",
            flush=True,
        )
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    result.upload = await stream_upload(base, sizes.upload_bytes, proxy.pid)
    up = result.upload
    print(
        f"    upload {up.sent / 2**20:.0f} MiB in {up.seconds:.1f} s, origin received "
        f"{up.received / 2**20:.0f} MiB, rss growth {up.growth / 1e6:.1f} MB",
        flush=True,
    )


def run(
    processes: Processes, tools: Tools, sizes: Sizes, allocator_command: list[str]
) -> dict[str, MemoryResult]:
    origin = services.start_ws_origin(processes)
    assert origin.port is not None
    results: dict[str, MemoryResult] = {}
    for name, description in (
        ("allocator", "sd-allocator, 1 worker, static backend, header identity, Redis"),
        ("chp", "configurable-http-proxy (reference; no sessions step)"),
    ):
        print(f"  {name}: {description}", flush=True)
        result = results[name] = MemoryResult(subject=name, description=description)
        already_running = processes.running()
        try:
            if name == "allocator":
                problem = allocator_problem(allocator_command)
                if problem:
                    result.missing = problem
                    print(f"    SKIPPED: {problem}", flush=True)
                    continue
                redis = services.start_redis(processes, tools.redis_server)
                assert redis.port is not None
                proxy = services.start_allocator(
                    processes, allocator_command, origin.port, redis.port
                )
            else:
                proxy = services.start_chp(processes, tools.chp, origin.port)
            asyncio.run(_exercise(proxy, sizes, result, sessions=name == "allocator"))
        except (StartupError, RuntimeError, ValueError, aiohttp.ClientError) as e:
            result.missing = f"failed: {e}"
            print(f"    FAILED: {e}", flush=True)
        finally:
            for service in processes.running():
                if service not in already_running:
                    processes.stop(service)
    return results
