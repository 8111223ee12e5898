"""The proxy carries HTTP, SSE, WebSockets and big uploads to the WebUI unchanged."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.inprocess import InProcessAllocator
from tests.support.origin import Origin
from tests.support.processes import AllocatorProcess, RedisServer, header_for, wait_until

ALICE = header_for("alice@example.com")


@pytest.fixture(scope="module")
def proxy(
    origin: Origin, module_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessAllocator]:
    settings = origin.settings(redis_url=module_redis.url)
    with InProcessAllocator.with_settings(tmp_path_factory.mktemp("proxy"), **settings) as app:
        yield app


def test_request_reaches_the_webui_with_our_identity_and_without_the_clients(
    proxy: InProcessAllocator,
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


def test_encoded_paths_pass_unchanged(proxy: InProcessAllocator) -> None:
    response = httpx.get(f"{proxy.url}/echo", headers=ALICE, timeout=10)
    assert response.json()["path"] == "/echo"
    odd = httpx.get(f"{proxy.url}/echo%2Fslash", headers=ALICE, timeout=10)
    assert odd.status_code == 404  # the origin saw the encoded path, not "/echo/slash"


def test_sse_events_arrive_as_sent_not_batched(proxy: InProcessAllocator, origin: Origin) -> None:
    """The WebUI sends each event only after the browser has read the one before: a proxy
    that held events back would never deliver the first one (and the read times out)."""
    url = f"{proxy.url}/sse-steps?key=unbatched&n=4"
    with httpx.stream("GET", url, headers=ALICE, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = (line for line in response.iter_lines() if line.startswith("data:"))
        for index in range(4):
            assert next(events) == f'data: {{"n": {index}}}'
            origin.open_gate(f"unbatched-{index}")
        assert list(events) == []


def test_websocket_round_trips_text_binary_and_close_codes(
    proxy: InProcessAllocator, origin: Origin
) -> None:
    assert httpx.get(f"{proxy.url}/echo", headers=ALICE, timeout=30).status_code == 200
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
    wait_until(lambda: len(origin.ws_closes) > before, 30, "the WebUI to see the close")
    assert origin.ws_closes[-1] == 4002


def test_websocket_from_another_site_is_refused(proxy: InProcessAllocator) -> None:
    url = f"ws://127.0.0.1:{proxy.port}/ws"
    headers = {**ALICE, "Origin": "https://evil.example"}
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=headers)
    assert refused.value.response.status_code == 403


@pytest.fixture(scope="module")
def proxy_process(
    origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AllocatorProcess]:
    """A real process, for what only one shows: its own memory."""
    allocator = AllocatorProcess(tmp_path_factory.mktemp("upload"), **origin.settings()).start()
    yield allocator
    allocator.stop()


def test_large_upload_streams_with_bounded_memory(proxy_process: AllocatorProcess) -> None:
    proxy = proxy_process
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
    proxy: InProcessAllocator, origin: Origin
) -> None:
    bob = header_for("bob@example.com")
    assert httpx.get(f"{proxy.url}/echo", headers=bob, timeout=10).status_code == 200
    store, tracker = proxy.runtime.core.store, proxy.runtime.tracker

    def leased() -> bool:
        proxy.call(tracker.flush())  # what the next periodic flush would write
        return proxy.call(store.busy_now("bob@example.com", time.time()))

    def status() -> dict[str, object]:
        answer: dict[str, object] = httpx.get(
            f"{proxy.url}/_allocator/status", headers=bob, timeout=10
        ).json()
        return answer

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.get, f"{proxy.url}/hold/bob-work", headers=bob, timeout=60)
        wait_until(lambda: status()["busy"] is True, 30, "the request in flight to make bob busy")
        wait_until(leased, 30, "a busy lease once the request outlives SDA_BUSY_AFTER")
        origin.open_gate("bob-work")
        assert slow.result().status_code == 200
    wait_until(lambda: not leased(), 30, "the lease to end with the work")
    assert status()["busy"] is False

    # An open heartbeat stream is idle-exempt: no lease, no activity.
    proxy.call(tracker.flush())
    stamp_before = proxy.call(store.view("bob@example.com", time.time()))
    assert stamp_before is not None
    with httpx.stream(
        "GET", f"{proxy.url}/gradio_api/heartbeat/abc", headers=bob, timeout=10
    ) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data:")
        assert not tracker.is_busy("bob@example.com") and not leased()
        assert status()["busy"] is False
    stamp_after = proxy.call(store.view("bob@example.com", time.time()))
    assert stamp_after is not None and stamp_after.last_activity == stamp_before.last_activity


def test_dev_cookie_never_reaches_the_webui(proxy: InProcessAllocator, tmp_path: Path) -> None:
    headers = {**ALICE, "Cookie": "theme=dark; sda_session=secret-token; lang=en"}
    response = httpx.get(f"{proxy.url}/cookies", headers=headers, timeout=10)
    assert response.json()["cookie"] == "theme=dark; lang=en"


async def test_many_websockets_stay_open_at_once(proxy: InProcessAllocator) -> None:
    """More than any default client pool size (aiohttp's is 100) at the same time."""
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{proxy.url}/echo", headers=ALICE)).status_code == 200
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
    proxy: InProcessAllocator, caplog: pytest.LogCaptureFixture
) -> None:
    cuts_before = _upstream_errors("cut")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{proxy.url}/cut", headers=ALICE, timeout=10)
    assert httpx.get(f"{proxy.url}/echo", headers=ALICE, timeout=10).status_code == 200
    assert _upstream_errors("cut") == cuts_before + 1  # counted as cut, not as a success
    # No traceback: uvicorn's own line about the unfinished response is how the cut reaches
    # the browser (ASGI has no other way to abort a response), not a crash.
    assert not [record for record in caplog.records if record.exc_info]


def test_heartbeats_from_an_open_tab_never_start_a_webui(proxy: InProcessAllocator) -> None:
    zed = header_for("zed@example.com")
    beat = httpx.get(f"{proxy.url}/gradio_api/heartbeat/abc", headers=zed, timeout=10)
    assert beat.status_code == 503 and beat.json()["state"] == "none"
    status = httpx.get(f"{proxy.url}/_allocator/status", headers=zed, timeout=10).json()
    assert status["state"] == "none"
    assert httpx.get(f"{proxy.url}/echo", headers=zed, timeout=10).status_code == 200


def test_cross_site_posts_are_refused(proxy: InProcessAllocator) -> None:
    evil = {**ALICE, "Origin": "https://evil.example"}
    assert httpx.post(f"{proxy.url}/echo", headers=evil, content=b"x").status_code == 403
    assert httpx.get(f"{proxy.url}/echo", headers=evil).status_code == 200  # reading is fine
    same = {**ALICE, "Origin": proxy.url}
    assert httpx.post(f"{proxy.url}/echo", headers=same, content=b"x").status_code == 200


def test_two_identity_headers_are_no_identity(proxy: InProcessAllocator) -> None:
    headers = [
        ("X-Goog-Authenticated-User-Email", "accounts.google.com:mallory@example.com"),
        ("X-Goog-Authenticated-User-Email", "accounts.google.com:alice@example.com"),
    ]
    assert httpx.get(f"{proxy.url}/echo", headers=headers, timeout=10).status_code == 401


def _upstream_errors(cause: str) -> float:
    return REGISTRY.get_sample_value("sda_upstream_errors_total", {"cause": cause}) or 0.0
