"""The cruiser as people run it: inside `serve` (activity measured by the real proxy),
`sd-allocator cruise`, and the Cloud Function through functions-framework."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from functions_framework import create_app
from prometheus_client import REGISTRY

from fake_agones import AppBacking, FakeAgones
from tests.support.inprocess import InProcessAllocator, on_fake_agones
from tests.support.pods import gates, pod_app
from tests.support.processes import (
    BIN,
    REPO,
    RedisServer,
    free_port,
    header_for,
    tiny_webui,
    wait_until,
)

FUNCTION_SOURCE = str(REPO / "cruiser" / "function.py")
IDLE_TIMEOUT = 3.0


@pytest.fixture
def agones() -> Iterator[FakeAgones]:
    with FakeAgones(replicas=4, backing=AppBacking(pod_app)) as fake:
        fake.wait_ready(4)
        yield fake


def cluster_env(fake: FakeAgones, redis_server: RedisServer, data_dir: Path) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "SDA_BACKEND": "agones",
        "SDA_REDIS_URL": redis_server.url,
        "SDA_NAMESPACE": fake.namespace,
        "SDA_FLEET": fake.fleet,
        "KUBECONFIG": str(fake.write_kubeconfig(data_dir / "kubeconfig")),
    }


def start_allocator(
    fake: FakeAgones, redis_server: RedisServer, data_dir: Path, **settings: str
) -> InProcessAllocator:
    return on_fake_agones(fake, redis_server.url, data_dir, **settings)


def get(
    allocator: InProcessAllocator, email: str, path: str, timeout: float = 30
) -> httpx.Response:
    return httpx.get(f"{allocator.url}{path}", headers=header_for(email), timeout=timeout)


def state(allocator: InProcessAllocator, email: str) -> str:
    return str(get(allocator, email, "/_allocator/status").json()["state"])


def passes_so_far() -> float:
    return REGISTRY.get_sample_value("sda_cruise_pass_seconds_count") or 0.0


def reclaimed(reason: str) -> float:
    return REGISTRY.get_sample_value("sda_reclaimed_total", {"reason": reason}) or 0.0


def test_serve_reclaims_the_idle_and_keeps_the_active_the_streaming_and_the_busy(
    agones: FakeAgones, redis_server: RedisServer, tmp_path: Path
) -> None:
    idle_before = reclaimed("idle")
    allocator = start_allocator(
        agones,
        redis_server,
        tmp_path,
        cruiser="on",
        idle_timeout=str(IDLE_TIMEOUT),
        cruise_interval="0.5",
    )
    try:
        pods = {
            email: get(allocator, email, "/whoami").json()["pod"]
            for email in ("idle@x.com", "steady@x.com", "slow@x.com", "heartbeat@x.com")
        }
        status = get(allocator, "idle@x.com", "/_allocator/status").json()
        assert status["state"] == "ready" and 0 < status["reclaim_in_seconds"] <= IDLE_TIMEOUT
        stop = threading.Event()

        def keep_going(email: str, path: str) -> None:
            while not stop.is_set():
                get(allocator, email, path)
                stop.wait(0.4)

        workers = [
            threading.Thread(target=keep_going, args=("steady@x.com", "/whoami")),
            threading.Thread(
                target=keep_going, args=("heartbeat@x.com", "/gradio_api/heartbeat/x")
            ),
            threading.Thread(target=get, args=(allocator, "slow@x.com", "/hold/slow", 300)),
        ]
        for worker in workers:
            worker.start()
        slow_since = time.time()
        wait_until(lambda: state(allocator, "idle@x.com") == "none", 60, "idle to be reclaimed")
        reclaimed_page = get(allocator, "idle@x.com", "/_allocator/status").json()
        assert reclaimed_page["message"] is None  # given back, not "your WebUI stopped"
        wait_until(lambda: state(allocator, "heartbeat@x.com") == "none", 60, "heartbeats only")
        # Passes keep coming; let one run after the slow request has lasted twice the timeout.
        wait_until(lambda: time.time() > slow_since + 2 * IDLE_TIMEOUT, 60, "the long request")
        after = passes_so_far()
        wait_until(lambda: passes_so_far() > after, 60, "one more cruiser pass")
        assert state(allocator, "steady@x.com") == "ready"
        assert state(allocator, "slow@x.com") == "ready"
        stop.set()
        gates.open("slow")
        for worker in workers:
            worker.join(60)
        deletes = agones.delete_counts()
        assert deletes.get(pods["idle@x.com"]) == 1
        assert deletes.get(pods["heartbeat@x.com"]) == 1
        assert pods["steady@x.com"] not in deletes
        assert pods["slow@x.com"] not in deletes
        assert reclaimed("idle") == idle_before + 2
    finally:
        allocator.stop()


def make_idle(redis_server: RedisServer, emails: list[str]) -> None:
    """Their last activity an hour ago, as if nobody had used them since (no waiting)."""
    client = redis.Redis.from_url(redis_server.url)
    client.zadd("sda:activity", dict.fromkeys(emails, time.time() - 3600), xx=True)


def idle_sessions(
    fake: FakeAgones, redis_server: RedisServer, tmp_path: Path, emails: list[str]
) -> dict[str, str]:
    """Sessions for `emails`, made by a real allocator (cruiser off), then idle for an hour."""
    allocator = start_allocator(fake, redis_server, tmp_path / "serve", cruiser="off")
    try:
        pods = {email: get(allocator, email, "/whoami").json()["pod"] for email in emails}
    finally:
        allocator.stop()
    make_idle(redis_server, emails)
    return pods


def cruise(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SDA_")}
    environ.update(env, SDA_IDLE_TIMEOUT="60", SDA_LOG_LEVEL="info")
    return subprocess.run(
        [str(BIN / "sd-allocator"), "cruise", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_cruises_once_with_a_json_summary_and_a_dry_run(
    agones: FakeAgones, redis_server: RedisServer, tmp_path: Path
) -> None:
    pods = idle_sessions(agones, redis_server, tmp_path, ["a@x.com", "b@x.com"])
    env = cluster_env(agones, redis_server, tmp_path)

    dry = cruise(env, "--once", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout.strip().splitlines()[-1])["would_reclaim"] == 2
    assert agones.delete_counts() == {}

    agones.fail_deletes(1)
    failing = cruise(env, "--once", "--json")
    assert failing.returncode == 1
    summary = json.loads(failing.stdout.strip().splitlines()[-1])
    assert (summary["reclaimed"], summary["failed"]) == (1, 1)

    retried = cruise(env, "--once")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith("1 candidates: 1 reclaimed")
    assert sorted(agones.delete_counts()) == sorted(pods.values())


def test_the_cli_refuses_the_embedded_store(tmp_path: Path) -> None:
    result = cruise({"SDA_REDIS_URL": "memory"}, "--once")
    assert result.returncode == 2
    assert "SDA_REDIS_URL=memory" in result.stderr


def test_the_function_answers_200_with_a_summary_or_500_on_a_failed_release(
    agones: FakeAgones, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle_sessions(agones, redis_server, tmp_path, ["a@x.com", "b@x.com"])
    for name, value in cluster_env(agones, redis_server, tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SDA_IDLE_TIMEOUT", "60")
    function = create_app("cruise", FUNCTION_SOURCE).test_client()  # type: ignore[no-untyped-call]

    agones.fail_deletes(1)
    failed = function.post("/")
    assert failed.status_code == 500
    assert (failed.json["reclaimed"], failed.json["failed"]) == (1, 1)
    retried = function.post("/")  # the scheduler's retry
    assert retried.status_code == 200
    assert (retried.json["candidates"], retried.json["reclaimed"]) == (1, 1)
    assert set(agones.delete_counts().values()) == {1}


def test_the_function_as_a_real_functions_framework_process(
    agones: FakeAgones, redis_server: RedisServer, tmp_path: Path
) -> None:
    pods = idle_sessions(agones, redis_server, tmp_path, ["a@x.com"])
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SDA_")}
    environ.update(cluster_env(agones, redis_server, tmp_path), SDA_IDLE_TIMEOUT="60")
    process = subprocess.Popen(
        [str(BIN / "functions-framework"), "--target", "cruise", "--source", FUNCTION_SOURCE,
         "--host", "127.0.0.1", "--port", str(port)],
        env=environ,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"

        def answers() -> bool:
            try:
                httpx.get(url + "?dry_run=1", timeout=10)
                return True
            except httpx.HTTPError:
                return False

        wait_until(answers, 30, "functions-framework to serve")
        answer = httpx.post(url, timeout=30)
        assert answer.status_code == 200
        assert answer.json()["reclaimed"] == 1
        assert agones.delete_counts() == {pods["a@x.com"]: 1}
    finally:
        process.terminate()
        process.wait(10)


def test_make_run_defaults_reclaim_an_idle_local_webui_in_process(tmp_path: Path) -> None:
    """The local backend and the embedded store: `serve` runs the cruiser itself."""
    script = tiny_webui(tmp_path)
    idle_before = reclaimed("idle")
    with InProcessAllocator.with_settings(
        tmp_path,
        identity="header",
        local_command=f"{{python}} {script} {{port}}",
        idle_timeout="1.5",
        cruise_interval="0.3",
    ) as allocator:
        assert get(allocator, "a@x.com", "/").status_code == 200
        assert list((tmp_path / "run").glob("*.json"))  # the WebUI process runs
        wait_until(lambda: state(allocator, "a@x.com") == "none", 60, "the reclaim")
        assert not list((tmp_path / "run").glob("*.json"))  # the WebUI process is gone
        assert reclaimed("idle") == idle_before + 1
