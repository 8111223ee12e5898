"""Allocations: one per person, and a replica that lost its lock never overwrites the winner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from allocator.allocation import Allocations
from allocator.cache import SessionCache
from allocator.settings import load_settings
from allocator.slugs import slug_for
from allocator.store import SessionStore
from allocator.types import (
    AllocationFailed,
    Person,
    Placement,
    Progress,
    ProgressCallback,
    Session,
    State,
)
from tests.support.recording import RecordingBackend

ANN = Person("ann@example.com", slug_for("ann@example.com"))
BEN = Person("ben@example.com", slug_for("ben@example.com"))


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    opened = SessionStore.from_url("memory")
    yield opened
    await opened.close()


def allocations_for(store: SessionStore, backend: RecordingBackend) -> Allocations:
    settings = load_settings(backend="static", static_target="127.0.0.1:1", identity="header")
    return Allocations(store, backend, SessionCache(store, 2.0, 60.0), settings)


async def test_many_waiters_one_allocation(store: SessionStore) -> None:
    backend = RecordingBackend()
    allocations = allocations_for(store, backend)
    waiting = [asyncio.create_task(allocations.ensure(ANN, wait=60)) for _ in range(30)]
    await backend.started.wait()
    progress = await store.get_progress(ANN.email)
    assert progress is not None and progress.state is State.STARTING
    backend.proceed.set()
    outcomes = await asyncio.gather(*waiting)
    assert backend.allocated == ["gs-1"]
    assert {outcome.server for outcome in outcomes if isinstance(outcome, Session)} == {"gs-1"}


async def test_a_replica_that_lost_its_lock_gives_its_webui_back(store: SessionStore) -> None:
    backend = RecordingBackend()
    allocations = allocations_for(store, backend)
    first = asyncio.create_task(allocations.ensure(ANN, wait=60))
    await backend.started.wait()
    # Redis lost the lock meanwhile (expiry during an outage); another replica took over
    # and recorded its own WebUI.
    await store._redis.delete(f"sda:lock:{ANN.email}")
    assert await store.acquire_lock(ANN.email, "other-replica", 30)
    theirs = Session(ANN.email, ANN.slug, "recording", Placement("gs-other", "10.0.0.2", 7860), 1.0)
    assert await store.save(theirs, now=1.0, lock_token="other-replica")
    backend.proceed.set()
    outcome = await first
    assert outcome == theirs
    assert backend.released == ["gs-1"]
    assert await store.get(ANN.email) == theirs


async def test_release_and_recovery(store: SessionStore) -> None:
    backend = RecordingBackend(hold=False)
    allocations = allocations_for(store, backend)
    session = await allocations.ensure(ANN, wait=60)
    assert isinstance(session, Session)
    backend.released.append(session.server)  # the WebUI died
    without = await allocations.recover(ANN, session, allocate=False)
    assert without is not None and without.state is State.NONE and without.restarted
    assert await store.get(ANN.email) is None
    again = await allocations.recover(ANN, session, allocate=True)
    assert again is not None and again.state is State.READY and again.restarted
    assert backend.allocated == ["gs-1", "gs-2"]
    assert await allocations.release(ANN.email)
    assert not await allocations.release(ANN.email)


async def test_after_a_restart_the_person_is_told_even_when_the_new_webui_is_ready_at_once(
    store: SessionStore,
) -> None:
    backend = RecordingBackend(hold=False)
    allocations = allocations_for(store, backend)
    first = await allocations.ensure(ANN, wait=60)
    assert isinstance(first, Session)
    await allocations.forget_gone(ANN.email, first.server)  # the backend saw it die
    told = await allocations.ensure(ANN, wait=60)
    assert isinstance(told, Progress) and told.state is State.READY and told.restarted
    again = await allocations.ensure(ANN, wait=60)  # and then the new WebUI, without notice
    assert isinstance(again, Session) and again.server == "gs-2"


async def test_a_lost_mapping_is_reattached_and_nothing_is_ever_allocated(
    store: SessionStore,
) -> None:
    backend = RecordingBackend(hold=False)
    allocations = allocations_for(store, backend)
    session = await allocations.ensure(ANN, wait=60)
    assert isinstance(session, Session)
    await store.drop(ANN.email)  # the store lost it; the WebUI runs on
    found = await allocations.reattach(ANN)
    assert found is not None and found.placement == session.placement
    assert found.allocated_at == backend.running[ANN.email].allocated_at  # not reset to now
    assert await store.get(ANN.email) == found
    assert await allocations.reattach(BEN) is None  # nothing running: nothing started
    assert backend.allocated == ["gs-1"]


async def test_reattaching_never_takes_over_an_allocation_in_flight(store: SessionStore) -> None:
    backend = RecordingBackend()
    allocations = allocations_for(store, backend)
    old = Placement("gs-old", "127.0.0.1", 7860)
    backend.running[ANN.email] = Session(ANN.email, ANN.slug, backend.name, old, 1.0)
    allocating = asyncio.create_task(allocations.allocate_or_wait(ANN, wait=60))
    await backend.started.wait()
    assert await allocations.reattach(ANN) is None  # the allocation's result is theirs
    backend.proceed.set()
    outcome = await allocating
    assert isinstance(outcome, Session) and outcome.server == "gs-1"


class FailingBackend(RecordingBackend):
    async def allocate(self, person: Person, progress: ProgressCallback) -> Placement:
        raise AllocationFailed("the cluster said no")


async def test_the_queue_is_looked_at_after_an_allocation_that_got_nothing_only(
    store: SessionStore,
) -> None:
    """A success started while nobody waited cannot move the queue: the dispatcher (and its
    Redis round trip) is left alone. A failure may let the next person in."""
    looks: list[str] = []
    succeeding = allocations_for(store, RecordingBackend(hold=False))
    succeeding.on_change = lambda: looks.append("after a success")
    assert isinstance(await succeeding.ensure(ANN, wait=60), Session)
    failing = allocations_for(store, FailingBackend())
    failing.on_change = lambda: looks.append("after a failure")
    outcome = await failing.ensure(BEN, wait=60)
    assert isinstance(outcome, Progress) and outcome.state is State.FAILED
    assert looks == ["after a failure"]
