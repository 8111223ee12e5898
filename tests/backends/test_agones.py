"""SDA_BACKEND=agones end to end: the allocator (in the test process) and real Redis, the
unmodified kubernetes client against the fake Agones API server, pods served on their own
loopback IPs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import websockets
from prometheus_client import REGISTRY
from websockets.exceptions import InvalidStatus

from fake_agones import AppBacking, Backing, FakeAgones, Pod, ProcessBacking, Timings
from tests.support.inprocess import InProcessAllocator, on_fake_agones
from tests.support.pods import pod_app
from tests.support.processes import REPO, RedisServer, header_for, wait_until

ALICE, BOB = "alice@example.com", "bob@example.com"
USER = "sd-allocator/user"


@pytest.fixture
def agones() -> Iterator[FakeAgones]:
    with FakeAgones(replicas=2, backing=AppBacking(pod_app)) as fake:
        fake.wait_ready(2)
        yield fake


def start_allocator(
    fake: FakeAgones, redis_server: RedisServer, data_dir: Path, **settings: str
) -> InProcessAllocator:
    return on_fake_agones(fake, redis_server.url, data_dir, **settings)


@pytest.fixture
def allocator(
    agones: FakeAgones, redis_server: RedisServer, tmp_path: Path
) -> Iterator[InProcessAllocator]:
    process = start_allocator(agones, redis_server, tmp_path)
    yield process
    process.stop()


def whoami(
    allocator: InProcessAllocator, email: str, timeout: float = 30, html: bool = False
) -> httpx.Response:
    headers = {**header_for(email), **({"Accept": "text/html"} if html else {})}
    return httpx.get(f"{allocator.url}/whoami", headers=headers, timeout=timeout)


def state(allocator: InProcessAllocator, email: str) -> str:
    answer = httpx.get(f"{allocator.url}/_allocator/status", headers=header_for(email), timeout=30)
    return str(answer.json()["state"])


def owned_by(fake: FakeAgones, email: str) -> list[str]:
    return [
        view.name
        for view in fake.snapshot()
        if view.annotations.get("sd-allocator/email") == email and not view.deleting
    ]


def allocations(fake: FakeAgones) -> list[str]:
    return [record.outcome for record in fake.allocation_log()]


def stored_sessions(redis_server: RedisServer) -> list[str]:
    client = redis.Redis.from_url(redis_server.url)
    return [key.decode() for key in client.scan_iter("sda:session:*")]


def test_two_people_get_two_gameservers_labelled_as_theirs(
    agones: FakeAgones, allocator: InProcessAllocator
) -> None:
    alice, bob = whoami(allocator, ALICE), whoami(allocator, BOB)
    assert alice.status_code == bob.status_code == 200
    assert alice.json()["pod"] != bob.json()["pod"]
    for email, answer in ((ALICE, alice), (BOB, bob)):
        (view,) = [v for v in agones.snapshot() if v.name == answer.json()["pod"]]
        assert view.state == "Allocated"
        assert view.labels[USER].startswith(email.split("@")[0])
        assert view.annotations["sd-allocator/email"] == email
        assert view.annotations["sd-allocator/allocated-at"].endswith("Z")
        assert view.pod_ip is not None and view.pod_ip != "127.0.0.1"
    record = agones.allocation_log()[0]
    assert record.headers.get("Content-Type") == "application/json"


def test_thirty_parallel_first_requests_make_one_allocation(
    agones: FakeAgones, allocator: InProcessAllocator
) -> None:
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda _: whoami(allocator, ALICE, 20), range(30)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["pod"] for a in answers}) == 1
    assert allocations(agones) == ["Allocated"]
    assert len(owned_by(agones, ALICE)) == 1


def test_a_fresh_allocator_with_an_empty_store_reattaches_the_same_gameserver(
    agones: FakeAgones, redis_server: RedisServer, tmp_path: Path
) -> None:
    first = start_allocator(agones, redis_server, tmp_path / "one")
    pod = whoami(first, ALICE).json()["pod"]
    first.stop()
    redis_server.flush()
    second = start_allocator(agones, redis_server, tmp_path / "two")
    try:
        assert whoami(second, ALICE).json()["pod"] == pod
    finally:
        second.stop()
    assert owned_by(agones, ALICE) == [pod]
    assert sum(1 for v in agones.snapshot() if v.state == "Ready") == 1  # the other is untouched


def test_a_deleted_gameserver_is_noticed_and_replaced(
    agones: FakeAgones, allocator: InProcessAllocator, redis_server: RedisServer
) -> None:
    pod = whoami(allocator, ALICE).json()["pod"]
    assert agones.delete(pod)
    # The watch drops the mapping before anyone asks (so the Pod IP is never reused for her).
    wait_until(lambda: not stored_sessions(redis_server), 30, "the mapping to go")
    page = whoami(allocator, ALICE, html=True)
    assert page.status_code == 503 and 'id="restarted"' in page.text

    def served_elsewhere() -> bool:
        answer = whoami(allocator, ALICE)
        return answer.status_code == 200 and answer.json()["pod"] != pod

    wait_until(served_elsewhere, 30, "a new GameServer to serve alice", interval=0.2)


def test_an_unhealthy_gameserver_loses_its_mapping_at_once(
    agones: FakeAgones, allocator: InProcessAllocator, redis_server: RedisServer
) -> None:
    pod = whoami(allocator, ALICE).json()["pod"]
    assert agones.mark_unhealthy(pod)
    wait_until(lambda: not stored_sessions(redis_server), 30, "the mapping to go")
    wait_until(lambda: whoami(allocator, ALICE).status_code == 200, 30, "a new WebUI")
    assert whoami(allocator, ALICE).json()["pod"] != pod


def test_a_refused_connection_is_checked_against_the_api_before_reallocating(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    timings = Timings(unhealthy_delay=3600)  # Agones notices only when the test says so
    with FakeAgones(replicas=2, backing=AppBacking(pod_app), timings=timings) as fake:
        fake.wait_ready(2)
        allocator = start_allocator(fake, redis_server, tmp_path)
        try:
            pod = whoami(allocator, ALICE).json()["pod"]
            assert fake.crash(pod)  # the WebUI dies; Agones has not noticed yet
            refused = whoami(allocator, ALICE)
            assert refused.status_code == 503  # the GameServer still exists: no new one yet
            assert allocations(fake) == ["Allocated"]
            assert fake.mark_unhealthy(pod)  # now Agones has

            def served_elsewhere() -> bool:
                answer = whoami(allocator, ALICE)
                return answer.status_code == 200 and answer.json()["pod"] != pod

            wait_until(served_elsewhere, 30, "a new GameServer after Unhealthy", interval=0.3)
        finally:
            allocator.stop()


class HeldStart:
    """Pods that start only once the test lets them: their GameServers stay Scheduled."""

    def __init__(self, inner: Backing) -> None:
        self.inner = inner
        self._go = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def let_start(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._go.set)

    async def start(self, pod: Pod) -> None:
        self._loop = asyncio.get_running_loop()
        await self._go.wait()
        await self.inner.start(pod)

    async def stop(self, pod: Pod) -> None:
        await self.inner.stop(pod)


def test_with_no_ready_gameserver_people_queue_and_see_the_fleet_scale_up(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    backing = HeldStart(AppBacking(pod_app))
    with FakeAgones(replicas=0, backing=backing) as fake:
        allocator = start_allocator(fake, redis_server, tmp_path)
        try:
            busy = whoami(allocator, ALICE, html=True)
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "10"
            assert 'data-state="queued"' in busy.text and "Waiting for a GPU" in busy.text
            assert stored_sessions(redis_server) == []
            fake.scale(1)

            def starting() -> int:
                found = httpx.get(
                    f"{allocator.url}/_allocator/status", headers=header_for(ALICE), timeout=10
                ).json()
                assert found["state"] == "queued", found
                count: int = found["starting_servers"]
                return count

            wait_until(lambda: starting() == 1, 30, "the new GameServer to be shown starting")
            backing.let_start()
            # allocated for alice whether or not she asks
            mine = [f"sda:session:{ALICE}"]
            wait_until(lambda: stored_sessions(redis_server) == mine, 30, "alice's WebUI")
            assert whoami(allocator, ALICE).status_code == 200
        finally:
            backing.let_start()
            allocator.stop()


def test_contention_twice_then_success(agones: FakeAgones, allocator: InProcessAllocator) -> None:
    agones.contend_allocations(2)
    assert whoami(allocator, ALICE).status_code == 200
    assert allocations(agones) == ["Contention", "Contention", "Allocated"]


@pytest.mark.parametrize("fault", ["fail", "hang"])
def test_an_api_that_fails_or_hangs_gives_a_503_page_and_stores_nothing(
    agones: FakeAgones, redis_server: RedisServer, tmp_path: Path, fault: str
) -> None:
    if fault == "fail":
        agones.fail_allocations(1000)
    else:
        agones.hang_allocations(1000)
    failures_before = _allocations("failed")
    allocator = start_allocator(
        agones, redis_server, tmp_path, kube_timeout="0.5", allocation_lock_ttl="2"
    )
    try:

        def failed() -> bool:
            answer = httpx.get(
                f"{allocator.url}/_allocator/status", headers=header_for(ALICE), timeout=30
            )
            return bool(answer.json()["state"] == "failed")

        first = whoami(allocator, ALICE)
        assert first.status_code == 503
        wait_until(failed, 30, "the allocation to fail", interval=0.2)
        page = httpx.get(
            f"{allocator.url}/whoami",
            headers={**header_for(ALICE), "Accept": "text/html"},
            timeout=5,
        )
        assert page.status_code == 503 and page.headers["Retry-After"]
        assert "The cluster did not answer" in page.text
        assert stored_sessions(redis_server) == []
        assert owned_by(agones, ALICE) == []
        assert _allocations("failed") == failures_before + 1
    finally:
        allocator.stop()


def test_a_lost_allocation_response_is_reattached_not_doubled(
    agones: FakeAgones, allocator: InProcessAllocator
) -> None:
    agones.lose_allocation_responses(1)
    answer = whoami(allocator, ALICE, timeout=30)
    assert answer.status_code == 200
    log = agones.allocation_log()
    assert [r.game_server for r in log] == [answer.json()["pod"]] * 2  # lost, then re-attached
    assert owned_by(agones, ALICE) == [answer.json()["pod"]]
    assert sum(1 for v in agones.snapshot() if v.state == "Ready") == 1


def test_a_late_pod_ip_is_waited_for(agones: FakeAgones, allocator: InProcessAllocator) -> None:
    agones.scale(3)
    agones.wait_ready(3)
    # Take the three Ready ones, which have addresses, so the next is the late one.
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        assert whoami(allocator, email).status_code == 200
    agones.set_pod_ip_delay(3600)  # the next pod's address comes when the test says so
    agones.scale(4)
    agones.wait_ready(1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(whoami, allocator, ALICE, 120)
        wait_until(lambda: state(allocator, ALICE) == "starting", 30, "the wait for an address")
        agones.set_pod_ip_delay(0)  # now it has one
        assert answer.result().status_code == 200
    assert answer.result().json()["host"].startswith("127.0.0.")


def test_websocket_and_sse_reach_the_gameserver(
    agones: FakeAgones, allocator: InProcessAllocator
) -> None:
    pod = whoami(allocator, ALICE).json()["pod"]
    with httpx.stream(
        "GET", f"{allocator.url}/sse", headers=header_for(ALICE), timeout=10
    ) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data:")]
    assert events == [f"data: {pod} {n}" for n in range(3)]

    async def talk() -> str:
        url = allocator.url.replace("http", "ws") + "/ws"
        async with websockets.connect(url, additional_headers=header_for(ALICE)) as socket:
            await socket.send("hello")
            return str(await socket.recv())

    assert asyncio.run(talk()) == f"{pod}: hello"


def test_release_deletes_the_gameserver_and_the_fleet_refills(
    agones: FakeAgones, allocator: InProcessAllocator, redis_server: RedisServer
) -> None:
    pod = whoami(allocator, ALICE).json()["pod"]
    released = httpx.post(
        f"{allocator.url}/_allocator/release",
        headers={**header_for(ALICE), "Origin": allocator.url},
        timeout=10,
    )
    assert released.json() == {"released": True, "left_queue": False}
    assert agones.delete_counts().get(pod) == 1
    assert stored_sessions(redis_server) == []
    agones.wait_until(lambda views: sum(v.state == "Ready" for v in views) == 2, 30)
    status = httpx.get(f"{allocator.url}/_allocator/status", headers=header_for(ALICE)).json()
    assert status["state"] == "none" and status["message"] is None  # not "your WebUI stopped"


def test_the_whole_path_with_real_demo_webuis(redis_server: RedisServer, tmp_path: Path) -> None:
    backing = ProcessBacking.demo_webui(cwd=REPO)
    with FakeAgones(replicas=1, backing=backing) as fake:
        fake.wait_ready(1, timeout=60)
        allocator = start_allocator(fake, redis_server, tmp_path)
        try:
            body = {"prompt": "a lighthouse", "steps": 2, "width": 64, "height": 64}
            answer = httpx.post(
                f"{allocator.url}/sdapi/v1/txt2img",
                json=body,
                headers=header_for(ALICE),
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            assert len(json.loads(answer.text)["images"]) == 1
        finally:
            allocator.stop()


def keep_the_watch_away(agones: FakeAgones) -> None:
    """End the allocator's watch stream and hold its next request unanswered."""
    agones.hold_watches()
    asked = agones.watch_requests()
    agones.close_watches()
    wait_until(lambda: agones.watch_requests() > asked, 30, "the allocator to watch again")


def test_the_watch_survives_closed_streams_and_expired_versions(
    agones: FakeAgones,
    allocator: InProcessAllocator,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="allocator.backends.agones.watch")
    pod = whoami(allocator, ALICE).json()["pod"]
    agones.set_watch_history(2)
    keep_the_watch_away(agones)
    agones.scale(4)  # more changes than the history keeps: resuming gets 410, then a new list
    agones.wait_ready(3)  # and alice's Allocated one
    agones.release_watches()
    assert agones.delete(pod)  # seen live by the new watch
    wait_until(lambda: not stored_sessions(redis_server), 30, "the mapping to go")
    assert "GameServer watch expired; listing again" in caplog.text


def test_a_gameserver_deleted_while_the_watch_was_away_is_still_noticed(
    agones: FakeAgones,
    allocator: InProcessAllocator,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="allocator.backends.agones.watch")
    pod = whoami(allocator, ALICE).json()["pod"]
    agones.set_watch_history(1)
    keep_the_watch_away(agones)
    assert agones.delete(pod)
    agones.wait_until(lambda views: all(v.name != pod for v in views), 30)
    agones.scale(3)  # and more: the history cannot tell the returning watch about the delete
    agones.release_watches()
    wait_until(lambda: not stored_sessions(redis_server), 30, "the mapping to go")
    assert "GameServer watch expired; listing again" in caplog.text


def test_nobody_is_routed_before_the_sidecar_confirms_their_folder(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    timings = Timings(sidecar_delay=1.0)
    with FakeAgones(replicas=1, backing=AppBacking(pod_app), timings=timings) as fake:
        fake.wait_ready(1)
        allocator = start_allocator(fake, redis_server, tmp_path)
        try:
            began = time.monotonic()
            wait_until(lambda: whoami(allocator, ALICE).status_code == 200, 30, "the WebUI")
            assert time.monotonic() - began >= 1.0  # not before the sidecar's second
            (view,) = fake.snapshot()
            assert view.annotations["agones.dev/sdk-sd-allocator-outputs"] == view.labels[USER]
        finally:
            allocator.stop()


def test_a_pod_without_the_sidecar_is_not_used_and_the_log_says_why(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    timings = Timings(sidecar_delay=None)
    with FakeAgones(replicas=1, backing=AppBacking(pod_app), timings=timings) as fake:
        fake.wait_ready(1)
        allocator = start_allocator(fake, redis_server, tmp_path, outputs_wait="1")
        try:

            def failed() -> bool:
                status = httpx.get(
                    f"{allocator.url}/_allocator/status", headers=header_for(ALICE), timeout=30
                ).json()
                return bool(status["state"] == "failed")

            assert whoami(allocator, ALICE).status_code == 503
            wait_until(failed, 30, "the allocation to fail")
            assert stored_sessions(redis_server) == []
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert any("sidecar" in message for message in errors)
        finally:
            allocator.stop()


def test_a_websocket_after_the_store_lost_the_mapping_reattaches_and_never_allocates(
    agones: FakeAgones, redis_server: RedisServer, tmp_path: Path
) -> None:
    """AUTOMATIC1111's Gradio 3 opens a WebSocket per job: after Redis lost the mapping, the
    next job must find the person's own GameServer, as a page load would."""
    allocator = start_allocator(agones, redis_server, tmp_path, cache_ttl="0")
    try:
        pod = whoami(allocator, ALICE).json()["pod"]
        redis_server.flush()
        url = allocator.url.replace("http", "ws") + "/ws"

        async def talk(email: str) -> str:
            async with websockets.connect(url, additional_headers=header_for(email)) as socket:
                await socket.send("hello")
                return str(await socket.recv())

        assert asyncio.run(talk(ALICE)) == f"{pod}: hello"
        assert stored_sessions(redis_server) == [f"sda:session:{ALICE}"]
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(talk(BOB))  # never had one: a WebSocket does not start one
        assert refused.value.response.status_code == 403
        assert allocations(agones) == ["Allocated"]
        assert owned_by(agones, BOB) == []
    finally:
        allocator.stop()


def _allocations(result: str) -> float:
    return REGISTRY.get_sample_value("sda_allocations_total", {"result": result}) or 0.0


def test_two_replicas_give_a_reclaimed_gameserver_to_the_queue_in_order(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """One GameServer, two allocator replicas: idle alice loses hers to the queue under
    pressure, bob (first in line, through one replica) gets the Fleet's replacement before
    cat (second, through the other); cat gets the next."""
    cat = "cat@example.com"
    with FakeAgones(replicas=1, backing=AppBacking(pod_app)) as fake:
        fake.wait_ready(1)
        first = start_allocator(fake, redis_server, tmp_path / "a", pressure_idle_timeout="1")
        second = start_allocator(fake, redis_server, tmp_path / "b", pressure_idle_timeout="1")
        try:
            assert whoami(first, ALICE).status_code == 200
            for allocator, email, position in ((first, BOB, 1), (second, cat, 2)):
                queued = whoami(allocator, email, timeout=60)
                assert queued.status_code == 503, queued.text
                assert queued.json()["position"] == position

            def keep_asking_until_served(email: str) -> bool:
                for allocator in (first, second):  # stays in line meanwhile
                    whoami(allocator, email, timeout=60)
                return f"sda:session:{email}" in stored_sessions(redis_server)

            wait_until(lambda: keep_asking_until_served(BOB), 60, "bob's GameServer", 0.3)
            assert f"sda:session:{cat}" not in stored_sessions(redis_server)
            assert state(second, cat) == "queued" and state(first, ALICE) == "none"
            assert released(second, BOB)
            wait_until(lambda: keep_asking_until_served(cat), 60, "cat's GameServer", 0.3)
            assert whoami(second, cat).json()["pod"] != ""
        finally:
            first.stop()
            second.stop()


def released(allocator: InProcessAllocator, email: str) -> bool:
    headers = {**header_for(email), "Origin": allocator.url}
    answer = httpx.post(f"{allocator.url}/_allocator/release", headers=headers, timeout=30)
    return bool(answer.json()["released"])
