"""The WebUI production runs: AUTOMATIC1111 v1.10's web stack (Gradio 3.41.2 on fastapi 0.94
and pydantic 1, in its own venv) through the proxy, with the local backend and on the Agones
path. Its queue is a WebSocket per job at /queue/join, its pictures come from Gradio 3's /file=
route, and its page polls /internal/progress while a job runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Response, expect

from fake_agones import FakeAgones
from tests.support import a1111
from tests.support.inprocess import InProcessAllocator, on_fake_agones
from tests.support.processes import AllocatorProcess, RedisServer, header_for, wait_until

ANN, BEN = "ann@example.com", "ben@example.com"
START_SECONDS = 120  # Gradio 3 imports for several seconds; more on a loaded machine
PROGRESS_TASK = "task(from-gradio-client)"  # the id a1111_webui/job.py gives its job


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessAllocator]:
    """Local backend running the stand-in; each job waits until the test releases it."""
    with InProcessAllocator.with_settings(
        tmp_path_factory.mktemp("a1111"),
        identity="header",
        local_command=a1111.local_command("--hold"),
        start_timeout=str(START_SECONDS),
    ) as allocator:
        yield allocator


def wait_ready(url: str, email: str) -> None:
    """Page loads, as a browser's progress page makes them, until the person's WebUI answers."""

    def ready() -> bool:
        page = httpx.get(f"{url}/", headers=header_for(email), timeout=60)
        return page.status_code == 200 and b"gradio" in page.content.lower()

    wait_until(ready, START_SECONDS, f"{email}'s WebUI", interval=0.3)


def progress_of(url: str, email: str, task: str) -> dict[str, object]:
    """What the A1111 page asks every half second while a job runs."""
    body = {"id_task": task, "id_live_preview": -1, "live_preview": False}
    answer = httpx.post(
        f"{url}/internal/progress", json=body, headers=header_for(email), timeout=30
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, object] = answer.json()
    return found


def release_job(url: str, email: str) -> None:
    answer = httpx.post(f"{url}/_test/release", headers=header_for(email), timeout=30)
    assert answer.status_code == 200, answer.text


def saved_pictures(data_dir: Path, email: str) -> list[Path]:
    slug = email.replace("@", "-").replace(".", "-")
    return sorted((data_dir / "users").glob(f"{slug}-*/outputs/txt2img-images/*/*.png"))


def run_held_job(allocator: InProcessAllocator, email: str, downloads: Path) -> a1111.JobResult:
    """A job over the WebSocket queue, seen running through the proxy, then let go."""
    job = a1111.start_job(allocator.url, header_for(email), "a lighthouse at dusk", downloads)
    wait_until(
        lambda: progress_of(allocator.url, email, PROGRESS_TASK)["active"] is True,
        START_SECONDS,
        f"the job to run in {email}'s WebUI",
        interval=0.2,
    )
    release_job(allocator.url, email)
    return a1111.job_result(job)


@pytest.fixture(scope="module")
def anns_job(held: InProcessAllocator, tmp_path_factory: pytest.TempPathFactory) -> a1111.JobResult:
    wait_ready(held.url, ANN)
    return run_held_job(held, ANN, tmp_path_factory.mktemp("downloads"))


def test_gradio_client_0_5_runs_a_job_over_the_websocket_queue_and_gets_the_picture(
    held: InProcessAllocator, anns_job: a1111.JobResult
) -> None:
    assert anns_job.status == "Status.FINISHED"
    assert progress_of(held.url, ANN, PROGRESS_TASK)["completed"] is True
    (saved,) = saved_pictures(held.settings.data_dir, ANN)
    (downloaded,) = anns_job.pictures
    # Downloaded through the proxy from Gradio 3's /file= route: the very file A1111 saved.
    assert downloaded.read_bytes() == saved.read_bytes()
    assert saved.read_bytes().startswith(b"\x89PNG")


def test_another_person_cannot_fetch_a_picture_through_their_own_webui(
    held: InProcessAllocator, anns_job: a1111.JobResult
) -> None:
    (anns,) = saved_pictures(held.settings.data_dir, ANN)
    own = httpx.get(f"{held.url}/file={anns}", headers=header_for(ANN), timeout=30)
    assert own.status_code == 200 and own.content == anns.read_bytes()
    wait_ready(held.url, BEN)
    stolen = httpx.get(f"{held.url}/file={anns}", headers=header_for(BEN), timeout=30)
    assert stolen.status_code in (403, 404), stolen.status_code
    assert not stolen.content.startswith(b"\x89PNG")


def test_a_job_over_the_websocket_keeps_the_session_busy_and_progress_polls_do_not_count(
    held: InProcessAllocator, tmp_path: Path
) -> None:
    email = "cy@example.com"
    wait_ready(held.url, email)
    store, tracker = held.runtime.core.store, held.runtime.tracker

    def leased() -> bool:
        held.call(tracker.flush())  # what the next periodic flush would write
        return held.call(store.busy_now(email, time.time()))

    job = a1111.start_job(held.url, header_for(email), "a busy harbour", tmp_path)
    try:
        wait_until(
            lambda: progress_of(held.url, email, PROGRESS_TASK)["active"] is True,
            START_SECONDS,
            "the job to run",
            interval=0.2,
        )
        wait_until(leased, 60, "a busy lease while the job's WebSocket is open")

        before = held.call(store.view(email, time.time()))
        assert before is not None and before.busy
        for _ in range(5):  # what the page asks while the job runs: none of it is activity
            assert progress_of(held.url, email, PROGRESS_TASK)["active"] is True
            pending = httpx.get(
                f"{held.url}/internal/pending-tasks", headers=header_for(email), timeout=30
            )
            assert pending.status_code == 200
        held.call(tracker.flush())
        after = held.call(store.view(email, time.time()))
        assert after is not None and after.last_activity == before.last_activity
    finally:
        release_job(held.url, email)
    assert a1111.job_result(job).status == "Status.FINISHED"
    wait_until(lambda: not leased(), 60, "the lease to end with the job")


def page_loads(page: Page, url: str) -> list[int]:
    """The statuses of the page's loads of `url`, as they come."""
    statuses: list[int] = []

    def seen(response: Response) -> None:
        if response.request.is_navigation_request() and response.url == url:
            statuses.append(response.status)

    page.on("response", seen)
    return statuses


def generate_and_see_the_picture(page: Page, prompt: str) -> None:
    """On the A1111 page: type, Generate, and wait until the gallery's picture has pixels."""
    box = page.locator("#txt2img_prompt textarea")
    expect(box).to_be_visible(timeout=START_SECONDS * 1000)
    box.fill(prompt)
    page.click("#txt2img_generate")
    picture = page.locator("#txt2img_gallery img").first
    expect(picture).to_be_visible(timeout=60_000)
    # Loaded through the proxy from /file=, not merely an <img> element: its pixels arrived.
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0",
        arg=picture.element_handle(),
        timeout=60_000,
    )
    # The page's own progress polling got through too, to the end of the job.
    expect(page.locator("#txt2img_progress")).to_have_text("Done", timeout=60_000)


def test_in_chromium_sign_in_wait_generate_and_the_picture_loads(
    browser: Browser, tmp_path: Path
) -> None:
    """With A1111's "Always save all generated images" off, the picture is served from
    Gradio's own cache, which the local backend places in the person's folder."""
    allocator = AllocatorProcess(
        tmp_path,
        local_command=a1111.local_command("--no-save-samples"),
        start_timeout=str(START_SECONDS),
        allocation_wait="0",  # the progress page at once, however quick the start
    ).start()
    page = browser.new_page()
    loads = page_loads(page, f"{allocator.url}/")
    try:
        page.goto(f"{allocator.url}/")
        expect(page).to_have_url(f"{allocator.url}/_allocator/login?next=%2F")
        page.fill("#email", "painter@example.com")
        page.click("#sign-in")
        generate_and_see_the_picture(page, "a lighthouse on a cliff")
        assert 503 in loads and loads[-1] == 200, loads  # waited on the progress page
        page.screenshot(path=str(tmp_path / "a1111.png"))
        assert not saved_pictures(tmp_path, "painter@example.com")
        assert len(list((tmp_path / "users").glob("painter-example-com-*/*/*/image.png"))) == 1
    finally:
        page.close()
        allocator.stop()


def test_on_the_agones_path_gradio_client_and_chromium_get_their_pictures(
    browser: Browser, redis_server: RedisServer, tmp_path: Path
) -> None:
    with FakeAgones(replicas=2, backing=a1111.backing(), data_dir=tmp_path / "pods") as fake:
        fake.wait_ready(2, timeout=START_SECONDS)
        allocator = on_fake_agones(
            fake, redis_server.url, tmp_path / "allocator", allocation_wait="0"
        )
        try:
            wait_ready(allocator.url, ANN)
            result = a1111.run_job(
                allocator.url, header_for(ANN), "a harbour at night", tmp_path / "downloads"
            )
            (downloaded,) = result.pictures
            assert downloaded.read_bytes().startswith(b"\x89PNG")

            # What IAP adds to each request of a signed-in person's browser.
            context = browser.new_context(extra_http_headers=header_for(BEN))
            page = context.new_page()
            loads = page_loads(page, f"{allocator.url}/")
            page.goto(f"{allocator.url}/")
            generate_and_see_the_picture(page, "a harbour at dawn")
            context.close()
            assert 503 in loads and loads[-1] == 200, loads
            pods = tmp_path / "pods"
            made_in = {p.relative_to(pods).parts[0] for p in pods.glob("*/outputs/**/*.png")}
            assert len(made_in) == 2, made_in  # each person's picture in their own Pod
        finally:
            allocator.stop()
