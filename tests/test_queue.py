"""The queue when every GPU is taken: places, order across replicas, leaving, abandonment,
estimates, reclaim under pressure, the operators' view.

Local backend with a WebUI stand-in that starts in milliseconds (capacity is what matters
here), real Redis where two replicas share the queue."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from playwright.sync_api import Browser, Page, expect
from redis import Redis

from allocator.cli import main
from allocator.dispatch import Dispatcher
from allocator.outlook import Outlook
from allocator.runtime import Core
from allocator.settings import load_settings
from allocator.store import QUEUE_SEEN, SessionStore
from allocator.types import Capacity, Progress, State
from allocator.waitqueue import WaitQueue
from tests.support.inprocess import InProcessAllocator
from tests.support.processes import RedisServer, header_for, tiny_webui, wait_until
from tests.support.recording import RecordingBackend

WAIT = 90.0
Json = dict[str, Any]


def replica(data_dir: Path, **settings: str) -> InProcessAllocator:
    settings.setdefault("identity", "header")
    settings.setdefault("max_sessions", "1")
    settings.setdefault("local_command", f"{{python}} {tiny_webui(data_dir)} {{port}}")
    return InProcessAllocator.with_settings(data_dir, **settings)


@contextlib.contextmanager
def replicas(data_dir: Path, count: int, **settings: str) -> Iterator[list[InProcessAllocator]]:
    """`count` allocators on one machine sharing one store (settings must name a Redis)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(replica(data_dir, **settings)) for _ in range(count)]


def ask(allocator: InProcessAllocator, email: str, html: bool = False) -> httpx.Response:
    headers = {**header_for(email), **({"Accept": "text/html"} if html else {})}
    return httpx.get(f"{allocator.url}/page", headers=headers, timeout=60)


def status(allocator: InProcessAllocator, email: str) -> Json:
    answer = httpx.get(f"{allocator.url}/_allocator/status", headers=header_for(email), timeout=60)
    assert answer.status_code == 200, answer.text
    found: Json = answer.json()
    return found


def release(allocator: InProcessAllocator, email: str) -> Json:
    headers = {**header_for(email), "Origin": allocator.url}
    answer = httpx.post(f"{allocator.url}/_allocator/release", headers=headers, timeout=60)
    found: Json = answer.json()
    return found


def has_webui(allocator: InProcessAllocator, email: str) -> bool:
    return allocator.call(allocator.runtime.core.store.get(email)) is not None


def queued_emails(allocator: InProcessAllocator) -> list[str]:
    return [w.email for w in allocator.call(allocator.runtime.core.queue.waiting())]


def ready(allocator: InProcessAllocator, email: str) -> None:
    """Asks the way a page load does until the person has their WebUI."""
    wait_until(lambda: ask(allocator, email).status_code == 200, WAIT, f"{email}'s WebUI")


def queue_up(allocator: InProcessAllocator, email: str, position: int) -> Json:
    answer = ask(allocator, email)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "10"
    found: Json = answer.json()
    assert found["state"] == "queued" and found["position"] == position, found
    return found


def turns_pass(allocator: InProcessAllocator, count: int) -> None:
    """Wait until this replica's dispatcher has decided `count` more turns."""
    dispatcher = allocator.runtime.dispatcher
    target = dispatcher.turns + count
    wait_until(lambda: dispatcher.turns >= target, WAIT, f"{count} dispatcher turns")


def test_places_in_order_and_the_head_gets_the_freed_webui_without_asking(
    tmp_path: Path,
) -> None:
    with replica(tmp_path) as allocator:
        ready(allocator, "ann@example.com")
        first = queue_up(allocator, "bob@example.com", 1)
        assert first["queue_length"] == 1 and "idle for 5 minutes" in first["message"]
        queue_up(allocator, "cat@example.com", 2)
        page = ask(allocator, "cat@example.com", html=True)
        assert page.status_code == 503 and 'data-state="queued"' in page.text
        assert 'You are number <strong id="position">2</strong> of <span id="queue-length">2' in (
            page.text
        )
        assert "Leave the queue" in page.text and "queue.js" in page.text
        assert "Estimated wait:" in page.text
        assert release(allocator, "ann@example.com") == {"released": True, "left_queue": False}
        wait_until(lambda: has_webui(allocator, "bob@example.com"), WAIT, "bob's WebUI")
        assert status(allocator, "bob@example.com")["state"] == "ready"
        cat = status(allocator, "cat@example.com")
        assert (cat["state"], cat["position"], cat["queue_length"]) == ("queued", 1, 1)


def test_leaving_the_queue_moves_the_others_up(tmp_path: Path) -> None:
    with replica(tmp_path) as allocator:
        ready(allocator, "ann@example.com")
        queue_up(allocator, "bob@example.com", 1)
        queue_up(allocator, "cat@example.com", 2)
        assert release(allocator, "bob@example.com") == {"released": False, "left_queue": True}
        assert status(allocator, "bob@example.com")["state"] == "none"
        assert status(allocator, "cat@example.com")["position"] == 1
        assert release(allocator, "bob@example.com") == {"released": False, "left_queue": False}
        form = httpx.post(
            f"{allocator.url}/_allocator/release",
            headers={
                **header_for("cat@example.com"),
                "Origin": allocator.url,
                "Accept": "text/html",
            },
        )
        assert form.status_code == 303 and queued_emails(allocator) == []


def test_a_silent_person_loses_their_place_and_those_behind_move_up(tmp_path: Path) -> None:
    with replica(tmp_path) as allocator:
        ready(allocator, "ann@example.com")
        queue_up(allocator, "bob@example.com", 1)
        queue_up(allocator, "cat@example.com", 2)
        # bob's last request as if it were two minutes ago (SDA_QUEUE_ABANDON is 60 s)
        redis = allocator.runtime.core.store.client

        async def silent_since_two_minutes() -> None:
            await redis.zadd(QUEUE_SEEN, {"bob@example.com": time.time() - 120})

        allocator.call(silent_since_two_minutes())
        wait_until(
            lambda: queued_emails(allocator) == ["cat@example.com"], WAIT, "bob to lose his place"
        )
        assert status(allocator, "cat@example.com")["position"] == 1
        queue_up(allocator, "bob@example.com", 2)  # asking again: the end of the queue


def test_pressure_reclaims_an_idle_webui_for_the_queue_but_never_a_busy_one(
    tmp_path: Path,
) -> None:
    with replica(tmp_path, pressure_idle_timeout="1") as allocator:
        ready(allocator, "ann@example.com")
        store = allocator.runtime.core.store
        forever = time.time() + 3600
        allocator.call(store.hold_busy(["ann@example.com"], "a generation", forever))
        queue_up(allocator, "bob@example.com", 1)
        ann = status(allocator, "ann@example.com")
        assert ann["reclaim_reason"] == "pressure" and ann["queue_length"] == 1
        turns_pass(allocator, 3)  # pressure passes ran, and kept the busy WebUI
        assert has_webui(allocator, "ann@example.com")
        allocator.call(store.release_busy(["ann@example.com"], "a generation"))
        wait_until(lambda: has_webui(allocator, "bob@example.com"), WAIT, "bob's WebUI")
        assert not has_webui(allocator, "ann@example.com")
        assert status(allocator, "ann@example.com")["state"] == "none"


def test_without_anyone_queued_the_usual_idle_timeout_applies(tmp_path: Path) -> None:
    with replica(tmp_path, pressure_idle_timeout="1") as allocator:
        ready(allocator, "ann@example.com")
        ann = status(allocator, "ann@example.com")
        assert ann["reclaim_reason"] == "idle" and ann["reclaim_in_seconds"] > 800


def test_estimates_come_from_idle_webuis_and_are_null_without_a_basis(tmp_path: Path) -> None:
    with replica(tmp_path, pressure_idle_timeout="600") as allocator:
        ready(allocator, "ann@example.com")
        bob = queue_up(allocator, "bob@example.com", 1)
        assert bob["eta_seconds"] is not None and 0 < bob["eta_seconds"] <= 600
        assert queue_up(allocator, "cat@example.com", 2)["eta_seconds"] is None
        store = allocator.runtime.core.store
        allocator.call(store.hold_busy(["ann@example.com"], "work", time.time() + 3600))
        wait_until(  # the estimate is refreshed every few seconds
            lambda: status(allocator, "bob@example.com")["eta_seconds"] is None,
            WAIT,
            "a busy WebUI to be no basis for an estimate",
        )


def test_admins_see_the_queue_and_can_take_someone_out(tmp_path: Path) -> None:
    with replica(tmp_path, admins="root@example.com") as allocator:
        ready(allocator, "ann@example.com")
        queue_up(allocator, "bob@example.com", 1)
        queue_up(allocator, "cat@example.com", 2)
        api = f"{allocator.url}/_allocator/api/queue"
        listed = httpx.get(api, headers=header_for("root@example.com")).json()
        assert [(e["email"], e["position"]) for e in listed] == [
            ("bob@example.com", 1),
            ("cat@example.com", 2),
        ]
        assert httpx.get(api, headers=header_for("ann@example.com")).status_code == 403
        root = header_for("root@example.com")
        assert httpx.delete(f"{api}/BOB@example.com", headers=root).status_code == 204
        assert httpx.delete(f"{api}/bob@example.com", headers=root).status_code == 404
        assert status(allocator, "cat@example.com")["position"] == 1
        page = httpx.get(
            f"{allocator.url}/_allocator/admin", headers={**root, "Accept": "text/html"}
        )
        assert "cat@example.com" in page.text and "/_allocator/admin/dequeue" in page.text


def test_the_queue_survives_the_replica_people_joined_through(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with replica(tmp_path, redis_url=redis_server.url) as other:
        first = replica(tmp_path, redis_url=redis_server.url).start()
        ready(first, "ann@example.com")
        queue_up(first, "bob@example.com", 1)
        first.stop()
        assert release(other, "ann@example.com")["released"]
        wait_until(lambda: has_webui(other, "bob@example.com"), WAIT, "bob's WebUI")


def test_with_the_store_down_a_queued_person_gets_a_clear_503(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with replica(tmp_path, redis_url=redis_server.url) as allocator:
        ready(allocator, "ann@example.com")
        queue_up(allocator, "bob@example.com", 1)
        redis_server.kill()
        answer = httpx.get(
            f"{allocator.url}/_allocator/status", headers=header_for("bob@example.com"), timeout=60
        )
        assert answer.status_code == 503 and answer.json()["error"] == "Temporarily unavailable"
        assert ask(allocator, "bob@example.com").status_code == 503
        redis_server.start()  # empty: the mapping is lost, ann's WebUI still runs
        queue_up(allocator, "bob@example.com", 1)
        turns_pass(allocator, 1)  # the dispatcher outlived the outage


PEOPLE = [f"p{n:02d}@example.com" for n in range(10)]


def test_two_replicas_serve_everyone_in_queue_order_under_a_refresh_storm(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Two GPUs, two replicas, ten people queued in a known order; every person hammers both
    replicas with page loads and status polls, uses their WebUI briefly once they have it and
    gives it back. Whenever someone is found served, nobody ahead of them may still be
    waiting without an allocation under way: that would be someone served out of order."""
    with replicas(tmp_path, 2, redis_url=redis_server.url, max_sessions="2") as (a, b):
        ready(a, "hold1@example.com")
        ready(b, "hold2@example.com")
        for position, email in enumerate(PEOPLE, start=1):
            queue_up((a, b)[position % 2], email, position)
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        served: list[str] = []
        violations: list[str] = []
        lock = threading.Lock()

        def waiting_without_allocation(email: str) -> bool:
            in_queue = redis.zscore("sda:queue", email) is not None
            return in_queue and not redis.exists(f"sda:lock:{email}")

        def person(email: str) -> None:
            chooser = random.Random(email)
            while True:
                allocator = chooser.choice((a, b))
                if chooser.random() < 0.5:
                    answer = ask(allocator, email)
                    if answer.status_code == 200:
                        break
                elif status(allocator, email)["state"] == "ready":
                    break
            ahead = PEOPLE[: PEOPLE.index(email)]
            with lock:
                late = [other for other in ahead if waiting_without_allocation(other)]
                if late:
                    violations.append(f"{email} served while {late} still waited")
                served.append(email)
            ask(chooser.choice((a, b)), email)  # uses it
            assert release(chooser.choice((a, b)), email)["released"]

        with concurrent.futures.ThreadPoolExecutor(len(PEOPLE)) as pool:
            running = [pool.submit(person, email) for email in PEOPLE]
            release(a, "hold1@example.com")
            release(b, "hold2@example.com")
            for done in concurrent.futures.as_completed(running, timeout=300):
                done.result()
        assert violations == []
        assert sorted(served) == PEOPLE


@pytest.mark.parametrize("pressure", ["0", "300"])
def test_settings_for_pressure(tmp_path: Path, pressure: str) -> None:
    with replica(tmp_path, pressure_idle_timeout=pressure) as allocator:
        ready(allocator, "ann@example.com")
        queue_up(allocator, "bob@example.com", 1)
        ann = status(allocator, "ann@example.com")
        expected = "idle" if pressure == "0" else "pressure"
        assert ann["reclaim_reason"] == expected


def test_operators_list_the_queue_and_take_someone_out_with_the_cli(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {"SDA_REDIS_URL": redis_server.url, "SDA_DATA_DIR": str(tmp_path)}
    with replica(tmp_path, redis_url=redis_server.url) as allocator:
        ready(allocator, "ann@example.com")
        queue_up(allocator, "bob@example.com", 1)
        queue_up(allocator, "cat@example.com", 2)
        listed = cli("queue", "list", "--json", **env)
        assert [(row["position"], row["email"]) for row in json.loads(listed.stdout)] == [
            (1, "bob@example.com"),
            (2, "cat@example.com"),
        ]
        table = cli("queue", "list", **env).stdout.splitlines()
        assert table[0].split()[:2] == ["#", "EMAIL"] and table[1].split()[:2] == [
            "1",
            "bob@example.com",
        ]
        assert cli("queue", "remove", "BOB@example.com", **env).exit_code == 0
        again = cli("queue", "remove", "bob@example.com", **env)
        assert again.exit_code == 2 and "not in the queue" in again.stderr
        assert status(allocator, "cat@example.com")["position"] == 1


def cli(*args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_in_a_browser_the_queue_page_updates_live_and_opens_the_webui_when_served(
    browser: Browser, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text('<!doctype html><h1 id="webui">A WebUI</h1>')
    (site / "internal").mkdir()
    (site / "internal" / "ping").write_text("ok")  # what the local backend waits for
    command = f"{{python}} -m http.server {{port}} --bind 127.0.0.1 --directory {site}"
    with replica(tmp_path, identity="dev", local_command=command) as allocator:
        ann, bob, cat = (signed_in(browser, allocator, name) for name in ("ann", "bob", "cat"))
        expect(ann.locator("#webui")).to_be_visible(timeout=WAIT * 1000)
        expect(bob.locator("#position")).to_have_text("1")
        expect(cat.locator("#position")).to_have_text("2")
        expect(cat.locator("#eta")).to_contain_text("Estimated wait")
        reloads: list[str] = []
        cat.on("framenavigated", lambda frame: reloads.append(frame.url))
        ann.goto(f"{allocator.url}/_allocator/")
        ann.click("#release")
        # bob's page opens his WebUI by itself; cat's moves her up without reloading
        expect(bob.locator("#webui")).to_be_visible(timeout=WAIT * 1000)
        expect(cat.locator("#position")).to_have_text("1", timeout=WAIT * 1000)
        expect(cat.locator("#queue-length")).to_have_text("1")
        assert reloads == []
        # taken out by an administrator: her page says so instead of queueing her again
        allocator.call(allocator.runtime.core.allocations.leave_queue("cat@example.com"))
        expect(cat.locator("#state")).to_have_text("Not in the queue any more")
        expect(cat.locator("#again")).to_be_visible()
        assert reloads == [] and queued_emails(allocator) == []
        cat.click("#again")
        expect(cat.locator("#position")).to_have_text("1")


def test_in_a_browser_the_badge_warns_of_pressure_and_giving_back_serves_the_queue(
    browser: Browser, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    (site / "internal").mkdir(parents=True)
    (site / "internal" / "ping").write_text("ok")
    (site / "index.html").write_text('<!doctype html><h1 id="webui">A WebUI</h1>')
    command = f"{{python}} -m http.server {{port}} --bind 127.0.0.1 --directory {site}"
    settings = {"identity": "dev", "local_command": command, "pressure_idle_timeout": "200"}
    with replica(tmp_path, **settings) as allocator:
        ann = signed_in(browser, allocator, "ann")
        expect(ann.locator("#webui")).to_be_visible(timeout=WAIT * 1000)
        badge = ann.locator("#sda-badge #sda-badge-text")
        expect(badge).to_be_hidden()  # 15 minutes away, nobody waiting
        bob = signed_in(browser, allocator, "bob")
        expect(bob.locator("#position")).to_have_text("1")
        expect(badge).to_contain_text("people are waiting for a GPU", timeout=WAIT * 1000)
        ann.locator("#sda-badge #sda-badge-release").click()
        expect(ann).to_have_url(f"{allocator.url}/_allocator/")
        expect(bob.locator("#webui")).to_be_visible(timeout=WAIT * 1000)


def signed_in(browser: Browser, allocator: InProcessAllocator, name: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(f"{allocator.url}/")
    page.fill("#email", f"{name}@example.com")
    page.click("#sign-in")
    return page


@pytest.mark.parametrize(
    ("deadlines", "rate", "position", "expected"),
    [
        ((), None, 1, None),  # no idle WebUI, no turnover: no basis
        ((30.0, 200.0), None, 2, 200),  # the second idle WebUI's deadline
        ((30.0,), None, 2, None),  # only one idle WebUI for the second in line
        ((), 1 / 60, 3, 180),  # one give-back a minute: the third waits three
        ((500.0,), 1 / 60, 1, 60),  # the sooner of the two
    ],
)
def test_an_estimate_has_a_basis_or_is_none(
    deadlines: tuple[float, ...], rate: float | None, position: int, expected: int | None
) -> None:
    assert Outlook(deadlines, rate, 0, at=1000.0).eta(position, now=1000.0) == expected


def test_an_estimate_counts_down_between_refreshes() -> None:
    assert Outlook((100.0,), None, 0, at=1000.0).eta(1, now=1040.0) == 60


def test_someone_whose_webui_still_runs_gets_it_back_instead_of_queueing(tmp_path: Path) -> None:
    """ann's WebUI runs, but its record was lost (a replica stopped between starting it and
    saving it): she is not sent behind bob for a GPU she already has."""
    with replica(tmp_path) as allocator:
        ready(allocator, "ann@example.com")
        store = allocator.runtime.core.store
        allocator.call(store.drop("ann@example.com"))
        allocator.runtime.core.cache.forget("ann@example.com")
        queue_up(allocator, "bob@example.com", 1)
        assert ask(allocator, "ann@example.com").status_code == 200
        assert queued_emails(allocator) == ["bob@example.com"]


def test_a_stale_starting_record_does_not_hide_someones_place(tmp_path: Path) -> None:
    """An allocation that ended without a word (its replica stopped) left "starting" behind:
    while nothing runs for them, status says where they wait, as the page does."""
    with replica(tmp_path) as allocator:
        ready(allocator, "ann@example.com")
        queue_up(allocator, "bob@example.com", 1)
        stale = Progress(State.STARTING, "Your WebUI is starting.", time.time())
        allocator.call(allocator.runtime.core.store.set_progress("bob@example.com", stale, 150))
        assert status(allocator, "bob@example.com")["state"] == "queued"


async def test_the_dispatchers_failed_try_never_queues_someone_who_left() -> None:
    store = SessionStore.from_url("memory")
    queue = WaitQueue(store)
    assert await queue.join("ann@example.com", 100.0) == 1
    # the dispatcher tried for ann with lock "queue:x"; ann left meanwhile (the lock went)
    await queue.leave("ann@example.com")
    assert await queue.join("ann@example.com", 200.0, lock_token="queue:x") == 0
    assert await queue.waiting() == []
    await store.close()


async def test_the_dispatchers_tries_do_not_count_as_the_person_asking() -> None:
    store = SessionStore.from_url("memory")
    queue = WaitQueue(store)
    await queue.join("ann@example.com", 100.0)
    await store.acquire_lock("ann@example.com", "queue:x", 30)
    assert await queue.join("ann@example.com", 200.0, lock_token="queue:x") == 1
    assert [w.seen for w in await queue.waiting()] == [100.0]  # still silent since 100
    await store.close()


class OneFree(RecordingBackend):
    """A backend that always reports one free WebUI."""

    async def capacity(self) -> Capacity:
        return Capacity(free=1)


async def test_a_webui_already_handed_to_a_starting_head_is_not_counted_twice() -> None:
    """The backend's count of free WebUIs already leaves out one handed to an allocation
    that is starting: the next free one goes to the next head at once."""
    settings = load_settings(backend="static", static_target="127.0.0.1:1", identity="header")
    store = SessionStore.from_url("memory")
    core = Core.from_parts(settings, store, OneFree())
    dispatcher = Dispatcher(core.queue, core.backend, core.allocations, settings)
    for email in ("ann@example.com", "bob@example.com"):
        await core.queue.join(email, time.time())
    await store.acquire_lock("ann@example.com", "queue:ann", 30)  # ann's WebUI is starting
    starting = Progress(State.STARTING, "starting", time.time())
    await store.set_progress("ann@example.com", starting, 150)
    await dispatcher.turn()
    assert await store.lock_held("bob@example.com")  # bob's allocation began
    await core.close()
