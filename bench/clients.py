"""Scenario 3: which HTTP client the proxy's hot path should use to talk to WebUIs.

aiohttp's ClientSession, httpx's AsyncClient and the allocator's own `UpstreamPool`
(allocator/upstream.py) fetch the same 1 KiB body from the same nginx origin as scenario 1.
Each client runs in a fresh Python process, so that they share neither an event loop nor
garbage-collector state:

    .venv/bin/python -m bench.clients <client> <url> <requests> <concurrency> [--warmup N]

runs `concurrency` workers on uvloop, each issuing sequential GETs on its own keep-alive
connection, `requests` in total after `N` warm-up requests (default: a tenth), checks every
response (status 200, exactly the origin's body) and prints one JSON line: req/s and the CPU
time (user + system, `getrusage`) the process spent per request — what a proxy pays for its
upstream client on every request it forwards.

`run()` is the harness side: start the origin, run each client's process in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

# Only the standard library and the origin's body at import time: the measured process
# should hold nothing but the client under test.
from bench.nginx import BODY_SIZE, ORIGIN_BODY

if TYPE_CHECKING:
    from bench.procs import Processes
    from bench.tools import Tools

CLIENTS = ("aiohttp", "httpx", "upstream")
DESCRIPTIONS = {
    "aiohttp": "aiohttp.ClientSession (connector limit=0, auto_decompress=False, no "
    "User-Agent/Accept-Encoding)",
    "httpx": "httpx.AsyncClient (max_connections=64, max_keepalive_connections=64)",
    "upstream": "allocator.upstream.UpstreamPool (asyncio Protocol + httptools parser)",
}
BASELINE = "aiohttp"  # ratios are relative to this client
TIMEOUT_S = 300.0  # per client process; a safety net, not a budget


# -- the measuring process ---------------------------------------------------------------

Fetch = Callable[[], Awaitable[tuple[int, bytes]]]


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    first_error: str | None = None

    def failed(self, why: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or why


@dataclass
class Measured:
    """What one client process prints (one JSON line)."""

    client: str
    version: str
    requests: int
    errors: int
    first_error: str | None
    warmup_requests: int
    warmup_errors: int
    concurrency: int
    seconds: float
    rps: float
    cpu_seconds: float  # user + system of the client process during the measured requests
    cpu_us_per_request: float


def _version(*packages: str) -> str:
    parts = []
    for package in packages:
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} not installed")
    return ", ".join(parts)


@contextlib.asynccontextmanager
async def _aiohttp(url: str) -> AsyncIterator[Fetch]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    ) as session:

        async def fetch() -> tuple[int, bytes]:
            async with session.get(url) as response:
                return response.status, await response.read()

        yield fetch


@contextlib.asynccontextmanager
async def _httpx(url: str) -> AsyncIterator[Fetch]:
    import httpx

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits) as client:

        async def fetch() -> tuple[int, bytes]:
            response = await client.get(url)
            return response.status_code, response.content

        yield fetch


@contextlib.asynccontextmanager
async def _upstream(url: str) -> AsyncIterator[Fetch]:
    from allocator.upstream import UpstreamPool

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = f"GET {parts.path or '/'} HTTP/1.1\r\nhost: {host}:{port}\r\n\r\n".encode()
    pool = UpstreamPool(connect_timeout=5.0)

    async def fetch() -> tuple[int, bytes]:
        response = await pool.request(host, port, head, None, replayable=True)
        try:
            body = await response.read()
        finally:
            pool.release(response, host, port)
        return response.status, body

    try:
        yield fetch
    finally:
        pool.close()


FACTORIES: dict[str, Callable[[str], contextlib.AbstractAsyncContextManager[Fetch]]] = {
    "aiohttp": _aiohttp,
    "httpx": _httpx,
    "upstream": _upstream,
}
PACKAGES = {
    "aiohttp": ("aiohttp",),
    "httpx": ("httpx",),
    "upstream": ("sd-allocator", "httptools"),
}


async def _load(fetch: Fetch, count: int, concurrency: int) -> Tally:
    """`concurrency` workers, each issuing GETs one after the other, `count` in total."""
    expected = ORIGIN_BODY.encode()
    tally = Tally()
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            tally.requests += 1
            try:
                status, body = await fetch()
            except Exception as e:  # counted, and the worker goes on with the next request
                tally.failed(f"{type(e).__name__}: {e}")
                continue
            if status != 200 or body != expected:
                tally.failed(f"status {status} with {len(body)} bytes (expected 200, {BODY_SIZE})")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(client: str, url: str, requests: int, concurrency: int, warmup: int) -> Measured:
    async with FACTORIES[client](url) as fetch:
        warm = await _load(fetch, warmup, concurrency)
        cpu_before, started = _cpu_seconds(), time.perf_counter()
        tally = await _load(fetch, requests, concurrency)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
    return Measured(
        client=client,
        version=_version(*PACKAGES[client]),
        requests=tally.requests,
        errors=tally.errors,
        first_error=tally.first_error or warm.first_error,
        warmup_requests=warm.requests,
        warmup_errors=warm.errors,
        concurrency=concurrency,
        seconds=round(seconds, 3),
        rps=round(tally.requests / seconds, 1) if seconds else 0.0,
        cpu_seconds=round(cpu, 3),
        cpu_us_per_request=round(1e6 * cpu / tally.requests, 2) if tally.requests else 0.0,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.clients", description=__doc__.splitlines()[0])
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("url")
    parser.add_argument("requests", type=int)
    parser.add_argument("concurrency", type=int)
    parser.add_argument("--warmup", type=int, help="warm-up requests (default: a tenth)")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else max(args.concurrency, args.requests // 10)

    import uvloop

    measured = uvloop.run(measure(args.client, args.url, args.requests, args.concurrency, warmup))
    print(json.dumps(asdict(measured)), flush=True)
    return 0


# -- the harness side --------------------------------------------------------------------


@dataclass(frozen=True)
class ClientLoad:
    """Settings shared by every client in one run."""

    requests: int = 20_000
    httpx_requests: int = 2_000  # httpx manages a few hundred req/s at this concurrency
    concurrency: int = 32

    def count(self, client: str) -> int:
        return self.httpx_requests if client == "httpx" else self.requests

    def warmup(self, client: str) -> int:
        return max(self.concurrency, self.count(client) // 10)


@dataclass
class ClientResult:
    name: str
    description: str
    missing: str | None = None  # why it was not measured
    measured: Measured | None = None


@dataclass
class ClientsResults:
    load: ClientLoad
    clients: dict[str, ClientResult]


def _print_result(name: str, m: Measured) -> None:
    flag = f"  ERRORS: {m.errors} (first: {m.first_error})" if m.errors or m.warmup_errors else ""
    print(
        f"    {name:<9} {m.requests:>7,} GETs in {m.seconds:6.2f} s  {m.rps:>9,.0f} req/s  "
        f"{m.cpu_us_per_request:>8.1f} µs CPU/request{flag}",
        flush=True,
    )


def run(processes: Processes, tools: Tools, load: ClientLoad) -> ClientsResults:
    """Start the origin, then run each client's measuring process in turn."""
    from bench import services
    from bench.throughput import check_answers
    from bench.tools import ROOT

    origin = services.start_origin(processes, tools.nginx)
    url = services.base_url(origin) + "/"
    results: dict[str, ClientResult] = {}
    try:
        check_answers(url, {})
        for name in CLIENTS:
            result = results[name] = ClientResult(name=name, description=DESCRIPTIONS[name])
            argv = [sys.executable, "-m", "bench.clients", name, url, str(load.count(name))]
            argv += [str(load.concurrency), "--warmup", str(load.warmup(name))]
            try:
                out = processes.run(f"client-{name}", argv, timeout=TIMEOUT_S, cwd=ROOT)
                lines = out.strip().splitlines()
                if not lines:
                    raise ValueError("printed nothing")
                result.measured = Measured(**json.loads(lines[-1]))
            except (RuntimeError, ValueError, TypeError) as e:
                result.missing = f"failed: {e}"
                print(f"    {name:<9} FAILED: {e}", flush=True)
                continue
            _print_result(name, result.measured)
    finally:
        processes.stop(origin)
    return ClientsResults(load=load, clients=results)


if __name__ == "__main__":
    sys.exit(main())
