"""The reaper core against real Redis and the fake Agones API: what is reclaimed, what is kept,
what is reconciled, and that nothing is released twice."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from allocator.backends.agones import AgonesBackend
from allocator.backends.agones.client import KubeApi, load_configuration
from allocator.backends.local import LocalBackend
from allocator.backends.static import StaticBackend
from allocator.store import SessionStore
from allocator.types import Session
from allocator.waitqueue import WaitQueue
from cruiser.reaper import CruiseOptions, Reaper
from fake_agones import FakeAgones
from tests.support.inprocess import settings_for
from tests.support.people import no_progress, person
from tests.support.processes import RedisServer, tiny_webui

TIMEOUT = 900.0
OPTIONS = CruiseOptions(idle_timeout=TIMEOUT, orphan_grace=600.0)
LONG_AGO = time.time() - 2 * TIMEOUT


@pytest.fixture(scope="module")
def agones() -> Iterator[FakeAgones]:
    with FakeAgones(replicas=12) as fake:
        fake.wait_ready(12)
        yield fake


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[SessionStore]:
    sessions = SessionStore.from_url(redis_server.url)
    yield sessions
    await sessions.close()


@pytest.fixture
async def backend(
    agones: FakeAgones, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AgonesBackend]:
    monkeypatch.setenv("KUBECONFIG", str(agones.write_kubeconfig(tmp_path / "kubeconfig")))
    configuration = load_configuration()
    agones_backend = AgonesBackend(KubeApi(agones.namespace, 5.0, configuration), agones.fleet)
    yield agones_backend
    # Give every GameServer back so the next test starts with a full Ready fleet.
    for session in await agones_backend.inventory():
        await agones_backend.release(session)
    await agones_backend.close()
    agones.wait_ready(12)


async def allocated(
    backend: AgonesBackend, store: SessionStore | None, email: str, last_activity: float
) -> Session:
    """A real GameServer for `email`, mapped in the store (unless `store` is None)."""
    someone = person(email)
    placement = await backend.allocate(someone, no_progress)
    session = Session(someone.email, someone.slug, backend.name, placement, last_activity)
    if store is not None:
        await store.save(session, last_activity)
    return session


async def past_grace(backend: AgonesBackend, server: str) -> CruiseOptions:
    """Options whose orphan grace `server` has already outlived (its allocated-at annotation
    has one-second resolution: half its age as read now, rather than waiting a second)."""
    (running,) = [s for s in await backend.inventory() if s.server == server]
    age = time.time() - running.allocated_at
    assert age > 0
    return replace(OPTIONS, orphan_grace=age / 2)


async def test_a_claim_outlasts_any_one_release_of_the_backend(
    agones: FakeAgones, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four times the longest release the backend may take, and never under two minutes."""
    monkeypatch.setenv("KUBECONFIG", str(agones.write_kubeconfig(tmp_path / "kubeconfig")))
    settings = settings_for(tmp_path, backend="agones", kube_timeout=45.0)
    slow = AgonesBackend.from_settings(settings)
    try:
        assert CruiseOptions.from_settings(settings, slow).claim_ttl == 180.0
    finally:
        await slow.close()
    for other in (LocalBackend.from_settings(settings), StaticBackend("127.0.0.1:7860")):
        assert CruiseOptions.from_settings(settings, other).claim_ttl == 120.0


async def test_an_idle_session_is_reclaimed_once_and_its_mapping_goes(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    idle = await allocated(backend, store, "idle@example.com", LONG_AGO)
    recent = await allocated(backend, store, "recent@example.com", time.time())
    summary = await Reaper(store, backend, OPTIONS).run_pass()
    assert (summary.candidates, summary.reclaimed, summary.failed) == (1, 1, 0)
    assert agones.delete_counts().get(idle.server) == 1
    assert recent.server not in agones.delete_counts()
    assert await store.get(idle.email) is None
    assert await store.view(idle.email, time.time()) is None
    assert await store.get(recent.email) is not None


async def test_while_people_queue_the_pressure_timeout_applies_and_the_queue_learns_of_it(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    queue = WaitQueue(store)
    options = replace(OPTIONS, pressure_idle_timeout=60.0)
    ten_minutes_idle = await allocated(backend, store, "lunch@example.com", time.time() - 600)
    summary = await Reaper(store, backend, options).run_pass()
    assert (summary.candidates, summary.queued) == (0, 0)  # nobody waits: 15 minutes apply
    await queue.join("waiting@example.com", time.time())
    summary = await Reaper(store, backend, options).run_pass()
    assert (summary.candidates, summary.reclaimed, summary.queued) == (1, 1, 1)
    assert agones.delete_counts().get(ten_minutes_idle.server) == 1
    assert len(await queue.freed_since(time.time() - 60)) == 1  # turnover, for estimates


async def test_a_busy_lease_keeps_an_idle_looking_session(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    session = await allocated(backend, store, "generating@example.com", LONG_AGO)
    await store.hold_busy([session.email], "replica-1", time.time() + 30)
    summary = await Reaper(store, backend, OPTIONS).run_pass()
    assert (summary.candidates, summary.kept_busy, summary.reclaimed) == (1, 1, 0)
    assert session.server not in agones.delete_counts()


async def test_activity_arriving_during_the_pass_saves_the_session(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    session = await allocated(backend, store, "late@example.com", LONG_AGO)

    class RequestArrives(SessionStore):
        """A request is counted between the candidate query and the claim."""

        async def claim_reaps(self, *args: object, **kwargs: object) -> list[str]:
            await store.touch({session.email: time.time()})
            return await store.claim_reaps(*args, **kwargs)  # type: ignore[arg-type]

    racing = RequestArrives(store._redis)
    summary = await Reaper(racing, backend, OPTIONS).run_pass()
    assert (summary.candidates, summary.kept_active, summary.reclaimed) == (1, 1, 0)
    assert session.server not in agones.delete_counts()
    assert await store.get(session.email) is not None


async def test_two_passes_at_once_release_each_gameserver_exactly_once(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    sessions = [await allocated(backend, store, f"p{n}@example.com", LONG_AGO) for n in range(8)]
    first, second = await asyncio.gather(
        Reaper(store, backend, OPTIONS).run_pass(), Reaper(store, backend, OPTIONS).run_pass()
    )
    assert first.reclaimed + second.reclaimed == 8
    deletes = agones.delete_counts()
    assert [deletes.get(s.server) for s in sessions] == [1] * 8
    retried = await Reaper(store, backend, OPTIONS).run_pass()  # a retried scheduler call
    assert (retried.candidates, retried.reclaimed) == (0, 0)
    assert [agones.delete_counts().get(s.server) for s in sessions] == [1] * 8


async def test_a_failed_release_is_reported_kept_and_retried_next_pass(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    session = await allocated(backend, store, "stuck@example.com", LONG_AGO)
    agones.fail_deletes(1)
    failed = await Reaper(store, backend, OPTIONS).run_pass()
    assert (failed.failed, failed.reclaimed, failed.ok) == (1, 0, False)
    assert failed.failures[0].server == session.server
    assert "etcdserver: timed out" in failed.failures[0].error
    assert await store.get(session.email) is not None
    retried = await Reaper(store, backend, OPTIONS).run_pass()
    assert (retried.failed, retried.reclaimed) == (0, 1)
    assert await store.get(session.email) is None


async def test_dry_run_changes_nothing(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    session = await allocated(backend, store, "maybe@example.com", LONG_AGO)
    summary = await Reaper(store, backend, replace(OPTIONS, dry_run=True)).run_pass()
    assert (summary.would_reclaim, summary.reclaimed, summary.dry_run) == (1, 0, True)
    assert session.server not in agones.delete_counts()
    real = await Reaper(store, backend, OPTIONS).run_pass()  # no claim was left behind
    assert real.reclaimed == 1


async def test_maximum_age_reclaims_an_active_session_but_never_a_busy_one(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    old = await allocated(backend, store, "old@example.com", time.time() - 7200)
    busy = await allocated(backend, store, "oldbusy@example.com", time.time() - 7200)
    await store.touch({old.email: time.time(), busy.email: time.time()})
    await store.hold_busy([busy.email], "replica-1", time.time() + 30)
    assert (await Reaper(store, backend, OPTIONS).run_pass()).reclaimed == 0  # age limit off
    aged = replace(OPTIONS, max_age=3600)
    summary = await Reaper(store, backend, aged).run_pass()
    assert (summary.candidates, summary.reclaimed, summary.kept_busy) == (2, 1, 1)
    assert agones.delete_counts().get(old.server) == 1


async def test_an_orphan_is_deleted_after_the_grace_period_not_before(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    orphan = await allocated(backend, None, "lost@example.com", time.time())  # no mapping
    young = await Reaper(store, backend, OPTIONS).run_pass()
    assert young.orphans_deleted == 0
    assert orphan.server not in agones.delete_counts()
    grown = await Reaper(store, backend, await past_grace(backend, orphan.server)).run_pass()
    assert grown.orphans_deleted == 1
    assert agones.delete_counts().get(orphan.server) == 1


async def test_an_allocation_in_flight_is_not_an_orphan(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    pending = await allocated(backend, None, "slow@example.com", time.time())
    await store.acquire_lock(pending.email, "allocating-replica", 30)
    summary = await Reaper(store, backend, await past_grace(backend, pending.server)).run_pass()
    assert summary.orphans_deleted == 0
    assert pending.server not in agones.delete_counts()


async def test_a_mapping_whose_gameserver_is_gone_is_dropped(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    session = await allocated(backend, store, "ghost@example.com", time.time())
    assert agones.delete(session.server)
    agones.wait_until(lambda views: all(v.name != session.server for v in views), 10)
    summary = await Reaper(store, backend, OPTIONS).run_pass()
    assert summary.stale_mappings_dropped == 1
    assert await store.get(session.email) is None


async def test_a_local_webui_without_a_mapping_is_stopped(
    store: SessionStore, tmp_path: Path
) -> None:
    script = tiny_webui(tmp_path)
    command = f"{sys.executable} {script} {{port}}"
    local = LocalBackend(command, tmp_path, max_sessions=2, start_timeout=20)
    await local.start()
    try:
        placement = await local.allocate(person("forgotten@example.com"), no_progress)
        pid = placement.handle["pid"]
        summary = await Reaper(store, local, replace(OPTIONS, orphan_grace=0.01)).run_pass()
        assert summary.orphans_deleted == 1
        assert await local.inventory() == []
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    finally:
        await local.close()


async def test_activity_during_earlier_releases_saves_a_later_session(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    first = await allocated(backend, store, "first@example.com", LONG_AGO)
    second = await allocated(backend, store, "second@example.com", LONG_AGO)
    release = backend.release

    async def slow_release(session: Session) -> None:
        # While the first DELETE is under way, the other person comes back.
        other = second if session.email == first.email else first
        await store.touch({other.email: time.time()})
        await release(session)

    backend.release = slow_release  # type: ignore[method-assign]
    one_at_a_time = replace(OPTIONS, concurrency=1)
    summary = await Reaper(store, backend, one_at_a_time).run_pass()
    backend.release = release  # type: ignore[method-assign]
    assert (summary.candidates, summary.reclaimed, summary.kept_active) == (2, 1, 1)
    assert sum(agones.delete_counts().get(s.server, 0) for s in (first, second)) == 1


async def test_an_unmapped_gameserver_with_work_running_is_not_an_orphan(
    agones: FakeAgones, store: SessionStore, backend: AgonesBackend
) -> None:
    working = await allocated(backend, None, "failover@example.com", time.time())
    await store.hold_busy([working.email], "replica-1", time.time() + 30)
    summary = await Reaper(store, backend, await past_grace(backend, working.server)).run_pass()
    assert summary.orphans_deleted == 0
    assert working.server not in agones.delete_counts()
