"""The local backend: a real demo WebUI process per person, isolated, never orphaned."""

from __future__ import annotations

import base64
import concurrent.futures
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from gradio_client import Client

from tests.support.processes import AllocatorProcess, RedisServer, header_for, wait_until

START_SECONDS = 90


def webuis(allocator: AllocatorProcess) -> list[psutil.Process]:
    """The demo WebUI processes this allocator started (its direct children)."""
    assert allocator.process is not None
    parent = psutil.Process(allocator.process.pid)
    return [child for child in parent.children() if "demo_webui" in " ".join(child.cmdline())]


def wait_ready(
    allocator: AllocatorProcess, email: str, timeout: float = START_SECONDS
) -> dict[str, object]:
    headers = header_for(email)
    httpx.get(f"{allocator.url}/", headers=headers, timeout=30)  # starts the allocation
    found: dict[str, object] = {}

    def ready() -> bool:
        found.update(
            httpx.get(f"{allocator.url}/_allocator/status", headers=headers, timeout=10).json()
        )
        assert found["state"] != "failed", found
        return found["state"] == "ready"

    wait_until(ready, timeout, f"{email}'s WebUI", interval=0.3)
    return found


def txt2img(allocator: AllocatorProcess, email: str, prompt: str) -> httpx.Response:
    body = {"prompt": prompt, "seed": 7, "steps": 2, "width": 64, "height": 64, "batch_size": 1}
    return httpx.post(
        f"{allocator.url}/sdapi/v1/txt2img", json=body, headers=header_for(email), timeout=60
    )


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AllocatorProcess]:
    allocator = AllocatorProcess(
        tmp_path_factory.mktemp("local"),
        identity="header",
        max_sessions="8",
        local_command="{python} -m demo_webui --port {port} --user-dir {user_dir} "
        "--outputs-dir {outputs_dir} --delay 0.3",
    ).start()
    yield allocator
    allocator.stop()


def test_two_people_get_two_webuis_and_cannot_reach_each_others_outputs(
    local: AllocatorProcess,
) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda e: wait_ready(local, e), ["ann@example.com", "ben@example.com"])
    assert a["server"] != b["server"]

    made = txt2img(local, "ann@example.com", "a lighthouse at dusk")
    assert made.status_code == 200, made.text
    assert base64.b64decode(made.json()["images"][0]).startswith(b"\x89PNG")
    users = local.data_dir / "users"
    ann_files = list(users.glob("ann-example-com-*/outputs/*.png"))
    assert len(ann_files) == 1
    assert not list(users.glob("ben-example-com-*/outputs/*.png"))

    for path in (f"/gradio_api/file={ann_files[0]}", f"/file={ann_files[0]}"):
        stolen = httpx.get(f"{local.url}{path}", headers=header_for("ben@example.com"), timeout=10)
        assert stolen.status_code in (403, 404), (path, stolen.status_code)
        assert not stolen.content.startswith(b"\x89PNG")


def test_thirty_parallel_first_requests_start_exactly_one_webui(local: AllocatorProcess) -> None:
    before = len(webuis(local))
    headers = {**header_for("cat@example.com"), "Accept": "application/json"}
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        statuses = list(
            pool.map(
                lambda _: (
                    httpx.get(f"{local.url}/internal/ping", headers=headers, timeout=30).status_code
                ),
                range(30),
            )
        )
    assert set(statuses) <= {200, 503}
    wait_ready(local, "cat@example.com")
    assert len(webuis(local)) == before + 1


def test_gradio_client_runs_a_txt2img_job_through_the_proxy(local: AllocatorProcess) -> None:
    wait_ready(local, "dot@example.com")
    client = Client(f"{local.url}/", headers=header_for("dot@example.com"), verbose=False)
    result = client.predict("a red fox", "", 42, 2, 64, 64, api_name="/txt2img")
    image = Path(result if isinstance(result, str) else result[0])
    assert image.read_bytes().startswith(b"\x89PNG")


def test_a_killed_webui_is_replaced_on_the_next_request(local: AllocatorProcess) -> None:
    first = wait_ready(local, "eve@example.com")
    (victim,) = [p for p in webuis(local) if "eve-example-com" in " ".join(p.cmdline())]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)

    page = httpx.get(
        f"{local.url}/",
        headers={**header_for("eve@example.com"), "Accept": "text/html"},
        timeout=30,
    )
    assert page.status_code == 503
    assert "Your previous WebUI stopped" in page.text
    second = wait_ready(local, "eve@example.com")
    assert second["server"] != first["server"]  # a new process, a new name
    assert txt2img(local, "eve@example.com", "after the restart").status_code == 200


def test_no_capacity_then_a_slot_frees(tmp_path: Path) -> None:
    allocator = AllocatorProcess(
        tmp_path, identity="header", max_sessions="1", no_capacity_retry="0.5"
    ).start()
    try:
        wait_ready(allocator, "fay@example.com")
        busy = httpx.get(
            f"{allocator.url}/",
            headers={**header_for("gil@example.com"), "Accept": "text/html"},
            timeout=30,
        )
        assert busy.status_code == 503
        assert "All GPUs are busy" in busy.text and busy.headers["retry-after"] == "10"
        api = httpx.get(f"{allocator.url}/x", headers=header_for("gil@example.com"), timeout=30)
        assert api.json()["state"] == "no_capacity"
        released = httpx.post(
            f"{allocator.url}/_allocator/release",
            headers={**header_for("fay@example.com"), "Origin": allocator.url},
        )
        assert released.json() == {"released": True}
        time.sleep(0.6)
        wait_ready(allocator, "gil@example.com")
    finally:
        allocator.stop()


def test_a_webui_that_cannot_start_is_reported_not_retried_forever(tmp_path: Path) -> None:
    allocator = AllocatorProcess(
        tmp_path,
        identity="header",
        local_command="{python} -c 'import sys; print(\"model file missing\"); sys.exit(3)' {port}",
    ).start()
    try:
        headers = header_for("hal@example.com")
        httpx.get(f"{allocator.url}/", headers=headers, timeout=30)
        wait_until(
            lambda: (
                httpx.get(f"{allocator.url}/_allocator/status", headers=headers).json()["state"]
                == "failed"
            ),
            30,
            "the failure to be reported",
        )
        page = httpx.get(
            f"{allocator.url}/", headers={**headers, "Accept": "text/html"}, timeout=30
        )
        assert page.status_code == 503
        assert "exited with code 3" in page.text and "model file missing" in page.text
        assert "Try again" in page.text
        attempts = allocator.log().count("allocation for hal@example.com failed")
        assert attempts == 1
    finally:
        allocator.stop()


def test_two_serve_processes_on_one_redis_start_one_webui_per_person(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = {"identity": "header", "redis_url": redis_server.url}
    first = AllocatorProcess(tmp_path, **settings).start()
    second = AllocatorProcess(tmp_path, **settings).start()
    try:
        headers = header_for("ida@example.com")
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            list(
                pool.map(
                    lambda i: httpx.get(
                        f"{(first, second)[i % 2].url}/", headers=headers, timeout=30
                    ),
                    range(20),
                )
            )
        status = wait_ready(first, "ida@example.com")
        assert wait_ready(second, "ida@example.com")["server"] == status["server"]
        assert len(webuis(first)) + len(webuis(second)) == 1
        both = [txt2img(a, "ida@example.com", "shared") for a in (first, second)]
        assert [r.status_code for r in both] == [200, 200]
    finally:
        first.stop()
        second.stop()


def test_shutdown_stops_every_webui(tmp_path: Path) -> None:
    allocator = AllocatorProcess(tmp_path, identity="header").start()
    wait_ready(allocator, "jo@example.com")
    children = webuis(allocator)
    assert len(children) == 1
    assert allocator.terminate() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert "Application shutdown complete" in allocator.log()
    psutil.wait_procs(children, timeout=10)
    assert not any(child.is_running() for child in children)
    assert not list((tmp_path / "run").glob("*.json"))


def test_a_killed_allocator_leaves_no_orphan(tmp_path: Path) -> None:
    allocator = AllocatorProcess(tmp_path, identity="header").start()
    wait_ready(allocator, "kim@example.com")
    children = webuis(allocator)
    assert allocator.process is not None
    allocator.process.kill()
    allocator.process.wait()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "a WebUI outlived its allocator"


def test_a_webui_that_dies_is_dropped_at_once_not_at_the_next_request(
    local: AllocatorProcess,
) -> None:
    wait_ready(local, "fred@example.com")
    (victim,) = [p for p in webuis(local) if "fred-example-com" in " ".join(p.cmdline())]
    victim.send_signal(signal.SIGKILL)
    headers = header_for("fred@example.com")

    def dropped() -> bool:
        status = httpx.get(f"{local.url}/_allocator/status", headers=headers).json()
        return status["state"] == "none"

    wait_until(dropped, 5, "the dead WebUI's mapping to go")
    page = httpx.get(f"{local.url}/", headers={**headers, "Accept": "text/html"}, timeout=30)
    assert "Your previous WebUI stopped" in page.text
