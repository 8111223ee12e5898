"""SIGTERM: WebSockets close with 1001, in-flight requests finish, sessions survive in Redis."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.origin import Origin
from tests.support.processes import AllocatorProcess, RedisServer, header_for, wait_until

ALICE = header_for("alice@example.com")


def test_sigterm_finishes_requests_closes_websockets_and_keeps_sessions(
    origin: Origin, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = origin.settings(redis_url=redis_server.url)
    allocator = AllocatorProcess(tmp_path, **settings).start()
    assert httpx.get(f"{allocator.url}/echo", headers=ALICE, timeout=10).status_code == 200
    server = httpx.get(f"{allocator.url}/_allocator/status", headers=ALICE).json()["server"]

    url = f"ws://127.0.0.1:{allocator.port}/ws"
    with (
        connect(url, additional_headers=ALICE) as ws,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        ws.send("hi")
        assert ws.recv(5) == "hi"
        slow = pool.submit(httpx.get, f"{allocator.url}/hold/work", headers=ALICE, timeout=60)
        wait_until(lambda: "work" in origin.held, 30, "the request to reach the WebUI")
        assert allocator.process is not None
        allocator.process.terminate()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        origin.open_gate("work")  # the WebUI answers only now, while the allocator shuts down
        assert slow.result().status_code == 200  # finished, not cut off
    assert allocator.process.wait(30) in (0, -15)

    restarted = AllocatorProcess(tmp_path, **settings).start()
    try:
        status = httpx.get(f"{restarted.url}/_allocator/status", headers=ALICE).json()
        assert status["state"] == "ready" and status["server"] == server
    finally:
        restarted.stop()


def test_sigterm_ends_an_open_tabs_heartbeat_at_once(origin: Origin, tmp_path: Path) -> None:
    # A graceful-shutdown timeout far beyond the test's patience: the process can only exit in
    # time if shutdown ends the idle heartbeat stream itself instead of waiting for it.
    allocator = AllocatorProcess(tmp_path, **origin.settings(shutdown_timeout="3600")).start()
    assert httpx.get(f"{allocator.url}/echo", headers=ALICE, timeout=10).status_code == 200
    url = f"{allocator.url}/gradio_api/heartbeat/tab1"
    with httpx.stream("GET", url, headers=ALICE, timeout=30) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("data:")
        assert allocator.process is not None
        allocator.process.terminate()
        for _ in lines:  # ends when the allocator ends the stream
            pass
    assert allocator.process.wait(60) in (0, -15)
