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
from allocator.types import GoneCallback, Person, Placement, ProgressCallback, Session, State

ANN = Person("ann@example.com", slug_for("ann@example.com"))


class RecordingBackend:
    """A backend whose allocations wait for the test to let them finish."""

    name = "recording"

    def __init__(self) -> None:
        self.allocated: list[str] = []
        self.released: list[str] = []
        self.proceed = asyncio.Event()

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def allocate(self, person: Person, progress: ProgressCallback) -> Placement:
        server = f"gs-{len(self.allocated) + 1}"
        self.allocated.append(server)
        await progress(State.STARTING, "starting")
        await self.proceed.wait()
        return Placement(server, "127.0.0.1", 7860)

    async def release(self, session: Session) -> None:
        self.released.append(session.server)

    async def is_alive(self, session: Session) -> bool:
        return session.server not in self.released

    def on_gone(self, callback: GoneCallback) -> None:
        self.gone = callback


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
    waiting = [asyncio.create_task(allocations.ensure(ANN, wait=5)) for _ in range(30)]
    progress = None
    for _ in range(100):  # a busy machine may take a while to run 30 tasks
        await asyncio.sleep(0.05)
        if progress := await store.get_progress(ANN.email):
            break
    assert progress is not None and progress.state is State.STARTING
    backend.proceed.set()
    outcomes = await asyncio.gather(*waiting)
    assert backend.allocated == ["gs-1"]
    assert {outcome.server for outcome in outcomes if isinstance(outcome, Session)} == {"gs-1"}


async def test_a_replica_that_lost_its_lock_gives_its_webui_back(store: SessionStore) -> None:
    backend = RecordingBackend()
    allocations = allocations_for(store, backend)
    first = asyncio.create_task(allocations.ensure(ANN, wait=5))
    await asyncio.sleep(0.1)
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
    backend = RecordingBackend()
    backend.proceed.set()
    allocations = allocations_for(store, backend)
    session = await allocations.ensure(ANN, wait=5)
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
