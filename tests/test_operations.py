"""What operators rely on: metrics, JSON logs, Redis AUTH, several workers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.inprocess import InProcessAllocator
from tests.support.origin import Origin
from tests.support.processes import (
    AllocatorProcess,
    RedisServer,
    free_port,
    header_for,
    wait_until,
)

ALICE = header_for("alice@example.com")


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_on_their_own_port_and_json_logs(origin: Origin, tmp_path: Path) -> None:
    metrics_port = free_port()
    allocator = AllocatorProcess(
        tmp_path,
        **origin.settings(
            log_format="json",
        ),
    )
    allocator.env["SDA_METRICS_PORT"] = str(metrics_port)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    allocator.env["TMPDIR"] = str(scratch)
    allocator.start()
    try:
        for _ in range(3):
            assert httpx.get(f"{allocator.url}/echo", headers=ALICE).status_code == 200
        with connect(f"ws://127.0.0.1:{allocator.port}/ws", additional_headers=ALICE) as ws:
            ws.send("x")
            ws.recv(5)
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            assert metric(text, "sda_open_websockets") == 1
        assert metric(text, 'sda_requests_total{status="200"}') >= 3
        assert metric(text, 'sda_allocations_total{result="ok"}') == 1
        assert metric(text, "sda_allocation_seconds_count") == 1
        assert httpx.get(f"{allocator.url}/metrics", headers=ALICE).status_code == 404  # origin's
    finally:
        allocator.stop()
    records = [json.loads(line) for line in allocator.log().splitlines() if line.startswith("{")]
    assert any(r["message"].startswith("allocated static-") for r in records)
    assert {"time", "severity", "logger", "message"} <= set(records[0])


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    subprocess.run(
        ["redis-cli", "-p", str(server.port), "CONFIG", "SET", "requirepass", "s3cret-pw"],
        check=True,
        capture_output=True,
    )
    yield server
    server.kill()


def test_redis_auth_and_a_wrong_password(
    origin: Origin,
    redis_with_password: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = redis_with_password.port
    good_url = f"redis://:s3cret-pw@127.0.0.1:{port}/0"
    bad_url = f"redis://:wrong-pw@127.0.0.1:{port}/0"
    with (
        InProcessAllocator.with_settings(
            tmp_path / "good", **origin.settings(redis_url=good_url)
        ) as good,
        InProcessAllocator.with_settings(
            tmp_path / "bad", **origin.settings(redis_url=bad_url)
        ) as bad,
    ):
        assert httpx.get(f"{good.url}/echo", headers=ALICE).status_code == 200
        ready = httpx.get(f"{bad.url}/_allocator/readyz")
        assert ready.status_code == 503 and "store" in ready.json()["problems"]
        assert httpx.get(f"{bad.url}/echo", headers=ALICE).status_code == 503
    assert "s3cret-pw" not in caplog.text and "wrong-pw" not in caplog.text  # nor tracebacks


def test_two_workers_share_one_store_and_one_metrics_port(
    origin: Origin, redis_server: RedisServer, tmp_path: Path
) -> None:
    metrics_port = free_port()
    allocator = AllocatorProcess(
        tmp_path,
        **origin.settings(
            redis_url=redis_server.url,
            workers="2",
        ),
    )
    allocator.env["SDA_METRICS_PORT"] = str(metrics_port)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    allocator.env["TMPDIR"] = str(scratch)
    allocator.start()
    try:
        with httpx.Client(base_url=allocator.url, headers=ALICE) as client:
            statuses = [client.get("/echo").status_code for _ in range(20)]
        with httpx.Client(base_url=allocator.url, headers=header_for("bob@example.com")) as c2:
            statuses += [c2.get("/echo").status_code for _ in range(20)]
        assert set(statuses) == {200}

        def counted() -> bool:
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            return metric(text, 'sda_requests_total{status="200"}') >= 40

        wait_until(counted, 10, "both workers' requests in one /metrics")
        with connect(f"ws://127.0.0.1:{allocator.port}/ws", additional_headers=ALICE) as ws:
            ws.send("x")
            assert ws.recv(5) == "x"
            assert allocator.process is not None
            allocator.process.terminate()
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        allocator.process.wait(30)
        assert not list(scratch.glob("sda-metrics-*"))  # the shared metrics folder is removed
    finally:
        allocator.stop()
