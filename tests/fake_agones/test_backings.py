"""What answers at a GameServer's Pod IP: real processes, the demo WebUI, in-process apps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from kubernetes import client

from fake_agones import AppBacking, FakeAgones, Pod, ProcessBacking
from tests.fake_agones.conftest import (
    FAST,
    WAIT,
    Lingering,
    allocate,
    allocation,
    client_for,
    current_rv,
    delete_gs,
    get_gs,
    new_watch,
    watch_gs,
)

HTTP_SERVER = (
    "{python}",
    "-m",
    "http.server",
    "--bind",
    "{host}",
    "{port}",
    "--directory",
    "{dir}",
)


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=WAIT)
    except httpx.ConnectError:
        return True
    return False


def test_each_gameserver_runs_its_own_process_on_its_own_pod_ip(tmp_path: Path) -> None:
    backing = ProcessBacking(HTTP_SERVER, ready_path="/", stop_grace=2)
    fake = FakeAgones(replicas=2, backing=backing, timings=FAST, data_dir=tmp_path).start()
    try:
        views = fake.wait_ready(2, timeout=WAIT)
        urls = {view.name: f"http://{view.pod_ip}:{fake.webui_port}/" for view in views}
        for url in urls.values():
            assert httpx.get(url, timeout=WAIT).status_code == 200
        gone, kept = sorted(urls)
        fake.delete(gone)
        fake.wait_until(lambda vs: gone not in {v.name for v in vs}, timeout=WAIT)
        assert refused(urls[gone])
        assert (tmp_path / gone / "process.log").exists()
    finally:
        fake.stop()
    assert refused(urls[kept])


def test_a_process_that_dies_at_start_leaves_an_unhealthy_gameserver_that_is_replaced(
    tmp_path: Path,
) -> None:
    backing = ProcessBacking(("{python}", "-c", "raise SystemExit(3)"), startup_timeout=10)
    fake = FakeAgones(replicas=1, backing=backing, timings=FAST, data_dir=tmp_path).start()
    try:
        first = fake.wait_until(lambda vs: len(vs) == 1)[0].name
        fake.wait_until(lambda vs: first not in {v.name for v in vs} and len(vs) >= 1, timeout=WAIT)
    finally:
        fake.stop()


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[tuple[FakeAgones, client.CustomObjectsApi, Lingering]]:
    """In-process apps; a crashed one's GameServer stays terminating until ``let_go()``."""

    async def app_for(pod: Pod) -> web.Application:
        await asyncio.sleep(0.2)  # a slow start: Ready must wait for it

        async def whoami(request: web.Request) -> web.Response:
            return web.Response(text=pod.name)

        app = web.Application()
        app.router.add_get("/", whoami)
        return app

    backing = Lingering(AppBacking(app_for), crashed_only=True)
    fake = FakeAgones(replicas=2, backing=backing, timings=FAST).start()
    yield fake, client_for(fake, tmp_path), backing
    backing.let_go()
    fake.stop()


def test_a_gameserver_is_ready_only_once_its_pod_answers(tmp_path: Path) -> None:
    async def slow_app(pod: Pod) -> web.Application:
        await asyncio.sleep(0.3)
        return web.Application()

    fake = FakeAgones(replicas=0, backing=AppBacking(slow_app), timings=FAST).start()
    try:
        api = client_for(fake, tmp_path)
        rv = current_rv(api)
        fake.scale(1)
        for event in watch_gs(new_watch(), api, resource_version=rv, timeout_seconds=int(WAIT)):
            status = event["object"]["status"]
            if status["state"] in ("RequestReady", "Ready"):
                pod_ip = status["addresses"][-1]["address"]
                answer = httpx.get(f"http://{pod_ip}:{fake.webui_port}/", timeout=WAIT)
                assert answer.status_code == 404
                break
        else:
            raise AssertionError("never Ready")
    finally:
        fake.stop()


def test_the_pod_ip_and_port_named_sd_reach_the_allocated_gameserver(
    apps: tuple[FakeAgones, client.CustomObjectsApi, Lingering],
) -> None:
    fake, api, _ = apps
    fake.wait_ready(2, timeout=WAIT)
    status = allocate(api, allocation())["status"]
    pod_ip = next(a["address"] for a in status["addresses"] if a["type"] == "PodIP")
    port = next(p["port"] for p in status["ports"] if p["name"] == "sd")
    assert httpx.get(f"http://{pod_ip}:{port}/", timeout=WAIT).text == status["gameServerName"]


def test_a_crashed_app_refuses_at_once_and_its_gameserver_is_replaced(
    apps: tuple[FakeAgones, client.CustomObjectsApi, Lingering],
) -> None:
    fake, api, pods = apps
    view = fake.wait_ready(2, timeout=WAIT)[0]
    url = f"http://{view.pod_ip}:{fake.webui_port}/"
    fake.crash(view.name)
    assert refused(url)
    assert get_gs(api, view.name)  # refused while its GameServer is still there
    pods.let_go()
    fake.wait_until(lambda vs: view.name not in {v.name for v in vs}, timeout=WAIT)
    fake.wait_ready(2, timeout=WAIT)


def test_the_demo_webui_runs_behind_an_allocated_gameserver(tmp_path: Path) -> None:
    fake = FakeAgones(replicas=1, backing=ProcessBacking.demo_webui(), data_dir=tmp_path).start()
    try:
        (view,) = fake.wait_ready(1, timeout=90)
        api = client_for(fake, tmp_path)
        status = allocate(api, allocation(labels={"sd-allocator/user": "alice"}))["status"]
        assert status["gameServerName"] == view.name
        url = f"http://{view.pod_ip}:{fake.webui_port}"
        assert httpx.get(url + "/internal/ping", timeout=WAIT).status_code == 200
        delete_gs(api, view.name)
        fake.wait_until(lambda vs: view.name not in {v.name for v in vs}, timeout=WAIT)
        assert refused(url + "/internal/ping")
    finally:
        fake.stop()
