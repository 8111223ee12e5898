"""Usage, events and quotas end to end, on the local backend and on Agones (the fake API):
a person whose WebUI the cruiser takes reads why on their session page, admins read anyone's
history and usage, and a daily quota refuses a new WebUI and takes a running one back only at
a quiet moment."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fake_agones import AppBacking, FakeAgones
from tests.support.accounting import cruise, last_active, next_midnights, used_today
from tests.support.inprocess import InProcessAllocator, on_fake_agones
from tests.support.pods import pod_app
from tests.support.processes import RedisServer, header_for, tiny_webui

ADMIN, ANN, BOB = "boss@example.com", "ann@example.com", "bob@example.com"
IDLE_TIMEOUT = 900.0
HTML = {"accept": "text/html"}
Start = Callable[..., InProcessAllocator]


@pytest.fixture(params=["local", "agones"])
def start(
    request: pytest.FixtureRequest, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Start]:
    """Starts an allocator on this backend with the given settings (no in-process cruiser:
    the test runs each pass itself)."""
    started: list[InProcessAllocator] = []
    common = {"admins": ADMIN, "cruiser": "off", "idle_timeout": str(IDLE_TIMEOUT)}
    if request.param == "local":
        command = f"{sys.executable} {tiny_webui(tmp_path)} {{port}}"

        def local(**settings: str) -> InProcessAllocator:
            allocator = InProcessAllocator.with_settings(
                tmp_path, backend="local", identity="header", redis_url=redis_server.url,
                local_command=command, **common, **settings,
            ).start()  # fmt: skip
            started.append(allocator)
            return allocator

        yield local
    else:
        with FakeAgones(replicas=3, backing=AppBacking(pod_app)) as fake:
            fake.wait_ready(3)

            def agones(**settings: str) -> InProcessAllocator:
                data_dir = tmp_path / "allocator"
                allocator = on_fake_agones(fake, redis_server.url, data_dir, **common, **settings)
                started.append(allocator)
                return allocator

            yield agones
    for allocator in started:
        allocator.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


async def test_a_person_reads_why_their_webui_was_given_back(
    start: Start, http: httpx.AsyncClient
) -> None:
    allocator = start()
    began = time.time()
    assert (await http.get(f"{allocator.url}/whoami", headers=header_for(ANN))).status_code == 200
    last_active(allocator, ANN, 2 * IDLE_TIMEOUT)
    assert cruise(allocator).reclaimed == 1

    page = await http.get(f"{allocator.url}/_allocator/", headers={**header_for(ANN), **HTML})
    clock = time.strftime("%H:%M", time.gmtime())
    assert "Your WebUI was given back at" in page.text
    assert "after 30 minutes without activity." in page.text
    assert clock in page.text or time.strftime("%H:%M", time.gmtime(time.time() - 60)) in page.text
    assert 'id="usage-today"' in page.text

    events = await http.get(
        f"{allocator.url}/_allocator/api/sessions/{ANN}/events", headers=header_for(ADMIN)
    )
    assert events.status_code == 200
    newest, allocated = events.json()[:2]
    assert (newest["kind"], newest["reason"], newest["seconds"]) == (
        "reclaimed", "idle", pytest.approx(2 * IDLE_TIMEOUT, abs=60)
    )  # fmt: skip
    assert allocated["kind"] == "allocated" and allocated["server"]
    assert newest["message"].startswith("Your WebUI was given back at")

    usage = await http.get(f"{allocator.url}/_allocator/api/usage", headers=header_for(ADMIN))
    [ann] = [row for row in usage.json()["people"] if row["email"] == ANN]
    assert 0 < ann["allocated_seconds"] <= time.time() - began

    refused = await http.get(
        f"{allocator.url}/_allocator/api/sessions/{ANN}/events", headers=header_for(ANN)
    )
    assert refused.status_code == 403
    admin_page = await http.get(
        f"{allocator.url}/_allocator/admin", headers={**header_for(ADMIN), **HTML}
    )
    assert 'id="usage-table"' in admin_page.text and ANN in admin_page.text


async def test_past_the_daily_quota_no_new_webui_until_midnight_admins_exempt(
    start: Start, http: httpx.AsyncClient
) -> None:
    allocator = start(daily_gpu_hours="1")
    used_today(allocator, ANN, 3600)
    used_today(allocator, ADMIN, 3600)

    page = await http.get(f"{allocator.url}/", headers={**header_for(ANN), **HTML})
    assert page.status_code == 503
    assert "GPU hours are used up" in page.text
    assert "00:00 UTC" in page.text and 'http-equiv="refresh"' not in page.text
    api = await http.get(f"{allocator.url}/sdapi/v1/options", headers=header_for(ANN))
    assert api.status_code == 503
    assert api.json()["state"] == "over_quota"
    assert api.json()["resets_at"] in next_midnights()
    assert 0 < int(api.headers["retry-after"]) <= 86_400
    status = await http.get(f"{allocator.url}/_allocator/status", headers=header_for(ANN))
    assert status.json()["state"] == "over_quota"
    assert status.json()["resets_at"] in next_midnights()
    assert allocator.call(allocator.runtime.core.store.get(ANN)) is None

    assert (await http.get(f"{allocator.url}/whoami", headers=header_for(ADMIN))).status_code == 200
    events = await http.get(
        f"{allocator.url}/_allocator/api/sessions/{ANN}/events", headers=header_for(ADMIN)
    )
    assert [event["kind"] for event in events.json()] == ["over_quota"]  # asked twice: one


async def test_a_running_webui_past_the_quota_goes_only_when_quiet_and_not_busy(
    start: Start, http: httpx.AsyncClient
) -> None:
    allocator = start(daily_gpu_hours="1")
    assert (await http.get(f"{allocator.url}/whoami", headers=header_for(BOB))).status_code == 200
    home = await http.get(f"{allocator.url}/_allocator/", headers={**header_for(BOB), **HTML})
    assert 'id="quota-left"' in home.text and "of 1.00 h" in home.text
    used_today(allocator, BOB, 3600)
    status = (await http.get(f"{allocator.url}/_allocator/status", headers=header_for(BOB))).json()
    assert status["reclaim_reason"] == "over_quota"  # the badge warns: it goes once quiet
    assert status["reclaim_in_seconds"] <= allocator.settings.quota_quiet

    assert cruise(allocator).kept_active == 1  # just active: kept
    store = allocator.runtime.core.store
    last_active(allocator, BOB, 2 * allocator.settings.quota_quiet)
    allocator.call(store.hold_busy([BOB], "a-generation", time.time() + 600))
    assert cruise(allocator).kept_busy == 1  # quiet, but a generation runs: kept
    allocator.call(store.release_busy([BOB], "a-generation"))
    assert cruise(allocator).reclaimed == 1

    events = await http.get(
        f"{allocator.url}/_allocator/api/sessions/{BOB}/events", headers=header_for(ADMIN)
    )
    kinds = [(event["kind"], event["reason"]) for event in events.json()]
    assert kinds == [("reclaimed", "over_quota"), ("kept", "busy"), ("allocated", None)]
    page = await http.get(f"{allocator.url}/_allocator/", headers={**header_for(BOB), **HTML})
    assert "at its first quiet moment after you used today" in page.text
    status = await http.get(f"{allocator.url}/_allocator/status", headers=header_for(BOB))
    assert status.json()["state"] == "over_quota"
