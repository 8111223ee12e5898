"""The local backend: a real WebUI process per person, isolated, never orphaned.

The demo WebUI (Gradio) where the WebUI itself matters; a tiny one that starts in
milliseconds where only its process does."""

from __future__ import annotations

import base64
import concurrent.futures
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from gradio_client import Client
from prometheus_client import REGISTRY

from allocator.backends.local import LocalBackend
from allocator.settings import default_data_dir
from tests.support.inprocess import InProcessAllocator
from tests.support.processes import (
    AllocatorProcess,
    RedisServer,
    header_for,
    tiny_webui,
    wait_until,
)

START_SECONDS = 90
Allocator = InProcessAllocator | AllocatorProcess


def webuis(data_dir: Path, parent: int | None = None) -> list[psutil.Process]:
    """The WebUI processes started for people under `data_dir` (children of `parent`, by
    default of this test process: the in-process allocators run here)."""
    found = []
    for child in psutil.Process(parent).children():
        try:
            if str(data_dir) in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def status(allocator: Allocator, email: str) -> dict[str, object]:
    answer = httpx.get(f"{allocator.url}/_allocator/status", headers=header_for(email), timeout=30)
    found: dict[str, object] = answer.json()
    return found


def wait_ready(
    allocator: Allocator, email: str, timeout: float = START_SECONDS
) -> dict[str, object]:
    """Asks for a WebUI the way a browser does (page loads) until the person has one."""
    found: dict[str, object] = {}

    def ready() -> bool:
        httpx.get(f"{allocator.url}/", headers=header_for(email), timeout=30)
        found.update(status(allocator, email))
        assert found["state"] != "failed", found
        return found["state"] == "ready"

    wait_until(ready, timeout, f"{email}'s WebUI", interval=0.3)
    return found


def txt2img(allocator: Allocator, email: str, prompt: str) -> httpx.Response:
    body = {"prompt": prompt, "seed": 7, "steps": 2, "width": 64, "height": 64, "batch_size": 1}
    return httpx.post(
        f"{allocator.url}/sdapi/v1/txt2img", json=body, headers=header_for(email), timeout=60
    )


def tiny_command(folder: Path) -> str:
    return f"{{python}} {tiny_webui(folder)} {{port}} --user-dir {{user_dir}}"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessAllocator]:
    with InProcessAllocator.with_settings(
        tmp_path_factory.mktemp("local"),
        identity="header",
        max_sessions="8",
        local_command="{python} -m demo_webui --port {port} --user-dir {user_dir} "
        "--outputs-dir {outputs_dir} --delay 0.3",
    ) as allocator:
        yield allocator


def test_two_people_get_two_webuis_and_cannot_reach_each_others_outputs(
    local: InProcessAllocator,
) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda e: wait_ready(local, e), ["ann@example.com", "ben@example.com"])
    assert a["server"] != b["server"]

    made = txt2img(local, "ann@example.com", "a lighthouse at dusk")
    assert made.status_code == 200, made.text
    assert base64.b64decode(made.json()["images"][0]).startswith(b"\x89PNG")
    users = local.settings.data_dir / "users"
    ann_files = list(users.glob("ann-example-com-*/outputs/*.png"))
    assert len(ann_files) == 1
    assert not list(users.glob("ben-example-com-*/outputs/*.png"))

    for path in (f"/gradio_api/file={ann_files[0]}", f"/file={ann_files[0]}"):
        stolen = httpx.get(f"{local.url}{path}", headers=header_for("ben@example.com"), timeout=10)
        assert stolen.status_code in (403, 404), (path, stolen.status_code)
        assert not stolen.content.startswith(b"\x89PNG")


def test_thirty_parallel_first_requests_start_exactly_one_webui(
    local: InProcessAllocator,
) -> None:
    before = len(webuis(local.settings.data_dir))
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
    assert len(webuis(local.settings.data_dir)) == before + 1


def test_gradio_client_runs_a_txt2img_job_through_the_proxy(local: InProcessAllocator) -> None:
    wait_ready(local, "dot@example.com")
    client = Client(f"{local.url}/", headers=header_for("dot@example.com"), verbose=False)
    result = client.predict("a red fox", "", 42, 2, 64, 64, api_name="/txt2img")
    image = Path(result if isinstance(result, str) else result[0])
    assert image.read_bytes().startswith(b"\x89PNG")


def kill_webui_of(allocator: InProcessAllocator, slug_prefix: str) -> None:
    (victim,) = [
        process
        for process in webuis(allocator.settings.data_dir)
        if slug_prefix in " ".join(process.cmdline())
    ]
    victim.send_signal(signal.SIGKILL)
    # Dead, but not reaped here: the exit is the allocator's to collect (and to notice).
    wait_until(lambda: not _running(victim), 30, "the WebUI to die")


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_webui_is_replaced_on_the_next_request_and_the_person_is_told(
    local: InProcessAllocator,
) -> None:
    """Told whichever comes first, the next request or the notice that the process exited,
    and however fast the new WebUI starts."""
    first = wait_ready(local, "eve@example.com")
    kill_webui_of(local, "eve-example-com")
    page = httpx.get(
        f"{local.url}/",
        headers={**header_for("eve@example.com"), "Accept": "text/html"},
        timeout=30,
    )
    assert page.status_code == 503
    assert 'id="restarted"' in page.text  # "Your previous WebUI stopped..."
    second = wait_ready(local, "eve@example.com")
    assert second["server"] != first["server"]  # a new process, a new name
    assert txt2img(local, "eve@example.com", "after the restart").status_code == 200


def test_a_webui_that_dies_is_dropped_at_once_not_at_the_next_request(
    local: InProcessAllocator,
) -> None:
    wait_ready(local, "fred@example.com")
    kill_webui_of(local, "fred-example-com")
    wait_until(
        lambda: status(local, "fred@example.com")["state"] == "none",
        30,
        "the dead WebUI's mapping to go without any request to it",
    )
    headers = {**header_for("fred@example.com"), "Accept": "text/html"}
    page = httpx.get(f"{local.url}/", headers=headers, timeout=30)
    assert page.status_code == 503 and 'id="restarted"' in page.text


def test_with_no_slot_free_the_next_person_queues_and_gets_the_freed_one(tmp_path: Path) -> None:
    with InProcessAllocator.with_settings(
        tmp_path, identity="header", max_sessions="1", local_command=tiny_command(tmp_path)
    ) as allocator:
        wait_ready(allocator, "fay@example.com")
        busy = httpx.get(
            f"{allocator.url}/",
            headers={**header_for("gil@example.com"), "Accept": "text/html"},
            timeout=30,
        )
        assert busy.status_code == 503 and busy.headers["retry-after"] == "10"
        assert 'data-state="queued"' in busy.text
        assert '<strong id="position">1</strong>' in busy.text
        api = httpx.get(f"{allocator.url}/x", headers=header_for("gil@example.com"), timeout=30)
        assert api.json()["state"] == "queued" and api.json()["position"] == 1
        released = httpx.post(
            f"{allocator.url}/_allocator/release",
            headers={**header_for("fay@example.com"), "Origin": allocator.url},
        )
        assert released.json() == {"released": True, "left_queue": False}
        store = allocator.runtime.core.store
        wait_until(  # allocated for gil while gil asks nothing
            lambda: allocator.call(store.get("gil@example.com")) is not None,
            START_SECONDS,
            "gil's WebUI to be started for him",
        )
        assert status(allocator, "gil@example.com")["state"] == "ready"


def test_a_webui_that_cannot_start_is_reported_not_retried_forever(tmp_path: Path) -> None:
    failures_before = _allocations("failed")
    with InProcessAllocator.with_settings(
        tmp_path,
        identity="header",
        local_command="{python} -c 'import sys; print(\"model file missing\"); sys.exit(3)' {port}",
    ) as allocator:
        headers = header_for("hal@example.com")
        httpx.get(f"{allocator.url}/", headers=headers, timeout=30)
        wait_until(
            lambda: status(allocator, "hal@example.com")["state"] == "failed",
            30,
            "the failure to be reported",
        )
        for _ in range(3):  # page loads while the failure is shown start nothing new
            page = httpx.get(
                f"{allocator.url}/", headers={**headers, "Accept": "text/html"}, timeout=30
            )
            assert page.status_code == 503
            assert "exited with code 3" in page.text and "model file missing" in page.text
            assert "Try again" in page.text
        assert _allocations("failed") == failures_before + 1


def test_two_allocators_on_one_redis_start_one_webui_per_person(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = {
        "identity": "header",
        "redis_url": redis_server.url,
        "local_command": tiny_command(tmp_path),
    }
    with (
        InProcessAllocator.with_settings(tmp_path, **settings) as first,
        InProcessAllocator.with_settings(tmp_path, **settings) as second,
    ):
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
        server = wait_ready(first, "ida@example.com")["server"]
        assert wait_ready(second, "ida@example.com")["server"] == server
        assert len(webuis(tmp_path)) == 1
        both = [httpx.get(f"{a.url}/", headers=headers, timeout=30) for a in (first, second)]
        assert [r.status_code for r in both] == [200, 200]


def test_shutdown_stops_every_webui(tmp_path: Path) -> None:
    allocator = AllocatorProcess(
        tmp_path, identity="header", local_command=tiny_command(tmp_path)
    ).start()
    wait_ready(allocator, "jo@example.com")
    assert allocator.process is not None
    children = webuis(tmp_path, allocator.process.pid)
    assert len(children) == 1
    assert allocator.terminate() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive
    assert not list((tmp_path / "run").glob("*.json"))


def test_a_killed_allocator_leaves_no_orphan(tmp_path: Path) -> None:
    allocator = AllocatorProcess(
        tmp_path, identity="header", local_command=tiny_command(tmp_path)
    ).start()
    wait_ready(allocator, "kim@example.com")
    assert allocator.process is not None
    children = webuis(tmp_path, allocator.process.pid)
    assert len(children) == 1
    allocator.process.kill()
    allocator.process.wait()
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, "a WebUI outlived its allocator"


def test_a_webui_command_that_does_not_exist_is_a_clear_failure(tmp_path: Path) -> None:
    with InProcessAllocator.with_settings(
        tmp_path, identity="header", local_command="/nonexistent/webui --port {port}"
    ) as allocator:
        httpx.get(f"{allocator.url}/", headers=header_for("lou@example.com"), timeout=30)
        wait_until(
            lambda: status(allocator, "lou@example.com")["state"] == "failed", 30, "the failure"
        )
        message = str(status(allocator, "lou@example.com")["message"])
        assert "cannot run /nonexistent/webui" in message and "No such file" in message


def _allocations(result: str) -> float:
    return REGISTRY.get_sample_value("sda_allocations_total", {"result": result}) or 0.0


async def test_a_data_dir_inside_a_dot_folder_is_reported_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """AUTOMATIC1111's Gradio 3 answers 403 for every picture under such a folder."""
    await LocalBackend(tiny_command(tmp_path), tmp_path / ".data", 1, 10).start()
    assert "inside a folder starting with '.' (.data)" in caplog.text
    caplog.clear()
    await LocalBackend(tiny_command(tmp_path), tmp_path / "data", 1, 10).start()
    assert f"SDA_DATA_DIR {tmp_path / 'data'} is inside" not in caplog.text
    assert not [p for p in default_data_dir().relative_to(Path.home()).parts if p[0] == "."]


async def test_folders_left_at_the_former_default_place_are_pointed_at(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is moved (people's pictures are not ours to move); the operator is told."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    former = tmp_path / ".local" / "share" / "sd-allocator" / "users" / "ann-example-com-1"
    former.mkdir(parents=True)
    await LocalBackend(tiny_command(tmp_path), default_data_dir(), 1, 10).start()
    assert f"from before are still in {former.parent}" in caplog.text
    assert former.is_dir()

    caplog.clear()  # once they are moved, nothing more is said
    former.rename(default_data_dir() / "users" / former.name)
    await LocalBackend(tiny_command(tmp_path), default_data_dir(), 1, 10).start()
    assert "from before" not in caplog.text
