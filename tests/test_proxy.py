"""The proxy carries HTTP, SSE, WebSockets and big uploads to the WebUI unchanged."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.origin import Origin
from tests.support.processes import AllocatorProcess, RedisServer, header_for

ALICE = header_for("alice@example.com")


@pytest.fixture(scope="module")
def proxy(
    origin: Origin, module_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AllocatorProcess]:
    allocator = AllocatorProcess(
        tmp_path_factory.mktemp("proxy"),
        **origin.settings(
            redis_url=module_redis.url,
            busy_after="0.2",
            activity_interval="0.2",
        ),
    ).start()
    yield allocator
    allocator.stop()


def test_request_reaches_the_webui_with_our_identity_and_without_the_clients(
    proxy: AllocatorProcess,
) -> None:
    headers = {
        **ALICE,
        "X-Forwarded-User": "mallory@example.com",
        "X-Forwarded-Email": "mallory@example.com",
        "X-Goog-IAP-JWT-Assertion": "forged",
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "must not pass",
        "X-Forwarded-For": "203.0.113.9",
    }
    response = httpx.post(
        f"{proxy.url}/echo?q=a%20b&x=1", headers=headers, content=b"hello", timeout=10
    )
    assert response.status_code == 200
    seen = {k.lower(): v for k, v in response.json()["headers"]}
    assert response.json()["raw_path"] == "/echo?q=a%20b&x=1"
    assert response.json()["body_length"] == 5
    assert seen["x-forwarded-email"] == "alice@example.com"
    assert seen["x-forwarded-user"] == "alice@example.com"
    # uvicorn trusts the loopback peer's chain (SDA_FORWARDED_ALLOW_IPS), so the client is
    # already its last entry.
    assert seen["x-forwarded-for"] == "203.0.113.9"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{proxy.port}"
    assert "x-goog-iap-jwt-assertion" not in seen
    assert "x-goog-authenticated-user-email" not in seen
    assert "x-secret-hop" not in seen
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_encoded_paths_pass_unchanged(proxy: AllocatorProcess) -> None:
    response = httpx.get(f"{proxy.url}/echo", headers=ALICE, timeout=10)
    assert response.json()["path"] == "/echo"
    odd = httpx.get(f"{proxy.url}/echo%2Fslash", headers=ALICE, timeout=10)
    assert odd.status_code == 404  # the origin saw the encoded path, not "/echo/slash"


def test_sse_events_arrive_as_sent_not_batched(proxy: AllocatorProcess) -> None:
    arrivals: list[float] = []
    with httpx.stream("GET", f"{proxy.url}/sse?n=5&gap=0.4", headers=ALICE, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        start = time.monotonic()
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 5
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap > 0.25 for gap in gaps), f"events were batched: arrivals {arrivals}"


def test_websocket_round_trips_text_binary_and_close_codes(
    proxy: AllocatorProcess, origin: Origin
) -> None:
    url = f"ws://127.0.0.1:{proxy.port}/ws"
    with connect(url, additional_headers=ALICE, subprotocols=["chat"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat"
        ws.send("hello")
        assert ws.recv(5) == "hello"
        ws.send(b"\x00\x01\xff" * 1000)
        assert ws.recv(5) == b"\x00\x01\xff" * 1000
        ws.send("close:4001:done here")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4001
    assert closed.value.rcvd.reason == "done here"

    before = len(origin.ws_closes)
    with connect(url, additional_headers=ALICE) as ws:
        ws.send("ping")
        assert ws.recv(5) == "ping"
        ws.close(code=4002, reason="browser leaves")
    deadline = time.monotonic() + 5
    while len(origin.ws_closes) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert origin.ws_closes[-1] == 4002


def test_websocket_from_another_site_is_refused(proxy: AllocatorProcess) -> None:
    url = f"ws://127.0.0.1:{proxy.port}/ws"
    headers = {**ALICE, "Origin": "https://evil.example"}
    with pytest.raises(Exception, match="403"):
        connect(url, additional_headers=headers)


def test_large_upload_streams_with_bounded_memory(proxy: AllocatorProcess) -> None:
    assert proxy.process is not None
    process = psutil.Process(proxy.process.pid)
    size = 200 * 1024 * 1024
    chunk = b"x" * (1024 * 1024)
    peak = [process.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    def body() -> Iterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    before = process.memory_info().rss
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        response = httpx.post(f"{proxy.url}/upload", headers=ALICE, content=body(), timeout=120)
    finally:
        done.set()
        sampler.join()
    assert response.status_code == 200
    assert response.json()["bytes"] == size
    growth_mb = (peak[0] - before) / 2**20
    assert growth_mb < 50, f"RSS grew by {growth_mb:.0f} MB during a 200 MB upload"


def test_a_long_request_holds_a_busy_lease_and_heartbeats_do_not_count(
    proxy: AllocatorProcess,
) -> None:
    bob = header_for("bob@example.com")
    assert httpx.get(f"{proxy.url}/echo", headers=bob, timeout=10).status_code == 200

    def status() -> dict[str, object]:
        return httpx.get(f"{proxy.url}/_allocator/status", headers=bob, timeout=5).json()

    slow = threading.Thread(
        target=lambda: httpx.get(f"{proxy.url}/slow?seconds=2", headers=bob, timeout=10)
    )
    slow.start()
    time.sleep(1.0)
    assert status()["busy"] is True
    slow.join()
    time.sleep(0.6)
    assert status()["busy"] is False

    # An open heartbeat stream is idle-exempt: no lease, no activity.
    time.sleep(1.2)
    idle_before = status()["idle_seconds"]
    assert isinstance(idle_before, int) and idle_before >= 1
    with httpx.stream(
        "GET", f"{proxy.url}/gradio_api/heartbeat/abc", headers=bob, timeout=10
    ) as response:
        lines = response.iter_lines()
        next(lines)
        time.sleep(1.0)
        now = status()
    assert now["busy"] is False
    assert isinstance(now["idle_seconds"], int) and now["idle_seconds"] >= idle_before


def test_dev_cookie_never_reaches_the_webui(proxy: AllocatorProcess, tmp_path: Path) -> None:
    headers = {**ALICE, "Cookie": "theme=dark; sda_session=secret-token; lang=en"}
    response = httpx.get(f"{proxy.url}/cookies", headers=headers, timeout=10)
    assert response.json()["cookie"] == "theme=dark; lang=en"


async def test_many_websockets_stay_open_at_once(proxy: AllocatorProcess) -> None:
    """More than any default client pool size (aiohttp's is 100) at the same time."""
    url = f"ws://127.0.0.1:{proxy.port}/ws"
    sockets = []
    try:
        for index in range(150):
            ws = await asyncio.wait_for(ws_connect(url, additional_headers=ALICE), 5)
            sockets.append(ws)
            await ws.send(f"hello {index}")
            assert await asyncio.wait_for(ws.recv(), 5) == f"hello {index}"
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


def test_a_response_the_webui_breaks_off_is_never_passed_off_as_complete(
    proxy: AllocatorProcess,
) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{proxy.url}/cut", headers=ALICE, timeout=10)
    assert httpx.get(f"{proxy.url}/echo", headers=ALICE, timeout=10).status_code == 200
    assert "broke off a response" in proxy.log()
    assert "Traceback" not in proxy.log()


def test_heartbeats_from_an_open_tab_never_start_a_webui(proxy: AllocatorProcess) -> None:
    zed = header_for("zed@example.com")
    beat = httpx.get(f"{proxy.url}/gradio_api/heartbeat/abc", headers=zed, timeout=10)
    assert beat.status_code == 503 and beat.json()["state"] == "none"
    status = httpx.get(f"{proxy.url}/_allocator/status", headers=zed, timeout=10).json()
    assert status["state"] == "none"
    assert httpx.get(f"{proxy.url}/echo", headers=zed, timeout=10).status_code == 200


def test_cross_site_posts_are_refused(proxy: AllocatorProcess) -> None:
    evil = {**ALICE, "Origin": "https://evil.example"}
    assert httpx.post(f"{proxy.url}/echo", headers=evil, content=b"x").status_code == 403
    assert httpx.get(f"{proxy.url}/echo", headers=evil).status_code == 200  # reading is fine
    same = {**ALICE, "Origin": proxy.url}
    assert httpx.post(f"{proxy.url}/echo", headers=same, content=b"x").status_code == 200


def test_two_identity_headers_are_no_identity(proxy: AllocatorProcess) -> None:
    headers = [
        ("X-Goog-Authenticated-User-Email", "accounts.google.com:mallory@example.com"),
        ("X-Goog-Authenticated-User-Email", "accounts.google.com:alice@example.com"),
    ]
    assert httpx.get(f"{proxy.url}/echo", headers=headers, timeout=10).status_code == 401
