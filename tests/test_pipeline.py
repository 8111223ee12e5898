"""One request pipeline, through real HTTP with the runtime built from the test's own parts:
the memory store and a recording backend whose allocations finish when the test says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from allocator.identity import create_identity
from allocator.runtime import Core, Runtime
from allocator.settings import Settings
from allocator.store import SessionStore
from tests.support.inprocess import InProcessAllocator, settings_for
from tests.support.origin import Origin
from tests.support.processes import header_for, wait_until
from tests.support.recording import RecordingBackend

ANN = header_for("ann@example.com")
HTML = {"Accept": "text/html"}


@pytest.fixture
def backend(origin: Origin) -> RecordingBackend:
    return RecordingBackend(port=origin.port)  # its WebUIs are the origin


@pytest.fixture
def allocator(
    backend: RecordingBackend, origin: Origin, tmp_path: Path
) -> Iterator[InProcessAllocator]:
    def from_parts(settings: Settings) -> Runtime:
        core = Core.from_parts(settings, SessionStore.from_url("memory"), backend)
        return Runtime.from_parts(core, create_identity(settings))

    settings = settings_for(tmp_path, **origin.settings(allocation_wait="0"))
    with InProcessAllocator(settings, from_parts) as app:
        yield app


def let_allocations_finish(allocator: InProcessAllocator, backend: RecordingBackend) -> None:
    async def proceed() -> None:
        backend.proceed.set()

    allocator.call(proceed())


def test_waiting_people_see_what_happens_then_reach_their_webui(
    allocator: InProcessAllocator, backend: RecordingBackend
) -> None:
    url = allocator.url
    page = httpx.get(f"{url}/", headers={**ANN, **HTML}, timeout=30)
    assert page.status_code == 503 and page.headers["retry-after"]
    assert "data-state=" in page.text and 'http-equiv="refresh"' in page.text
    wait_until(lambda: backend.started.is_set(), 30, "the allocation to start")
    api = httpx.get(f"{url}/echo", headers=ANN, timeout=30)
    assert api.status_code == 503
    assert api.json()["state"] == "starting" and api.headers["retry-after"] == "2"
    status = httpx.get(f"{url}/_allocator/status", headers=ANN, timeout=30).json()
    assert status["state"] == "starting"

    let_allocations_finish(allocator, backend)
    wait_until(
        lambda: httpx.get(f"{url}/echo", headers=ANN, timeout=30).status_code == 200,
        30,
        "ann's WebUI",
    )
    echoed = httpx.get(f"{url}/echo", headers=ANN, timeout=30).json()
    seen = {name.lower(): value for name, value in echoed["headers"]}
    assert seen["x-forwarded-email"] == "ann@example.com"
    assert backend.allocated == ["gs-1"]  # one allocation, however many requests asked


def test_refused_and_challenged_before_any_session_is_looked_at(
    allocator: InProcessAllocator, backend: RecordingBackend
) -> None:
    url = allocator.url
    nobody = httpx.get(f"{url}/echo", timeout=30)
    assert nobody.status_code == 401 and nobody.json()["error"] == "Not signed in"
    bad_host = httpx.get(f"{url}/echo", headers={**ANN, "Host": "bad host!"}, timeout=30)
    assert bad_host.status_code == 400
    for path in ("/echo", "/_allocator/release"):
        cross = httpx.post(
            f"{url}{path}", headers={**ANN, "Origin": "https://evil.example"}, timeout=30
        )
        assert cross.status_code == 403, path
        assert cross.json()["message"] == "Requests from another site are refused."
    assert backend.allocated == []


def test_a_release_gives_the_webui_back_and_forgets_the_mapping(
    allocator: InProcessAllocator, backend: RecordingBackend
) -> None:
    let_allocations_finish(allocator, backend)
    wait_until(
        lambda: httpx.get(f"{allocator.url}/echo", headers=ANN, timeout=30).status_code == 200,
        30,
        "ann's WebUI",
    )
    session = allocator.call(allocator.runtime.core.store.get("ann@example.com"))
    assert session is not None and session.server == "gs-1"
    released = httpx.post(
        f"{allocator.url}/_allocator/release",
        headers={**ANN, "Origin": allocator.url},
        timeout=30,
    )
    assert released.json() == {"released": True, "left_queue": False} and backend.released == [
        "gs-1"
    ]
    assert allocator.call(allocator.runtime.core.store.get("ann@example.com")) is None
