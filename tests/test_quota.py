"""Quota: a refusal costs the store one look per person per day in a process and is recorded
once; the queue's dispatcher never allocates for someone past the quota."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from allocator.allocation import Allocations
from allocator.cache import SessionCache
from allocator.settings import load_settings
from allocator.slugs import slug_for
from allocator.store import SessionStore
from allocator.types import Person, Progress, State
from allocator.waitqueue import WaitQueue
from tests.support.accounting import add_used_today
from tests.support.recording import RecordingBackend

ANN = Person("ann@example.com", slug_for("ann@example.com"))
BOSS = Person("boss@example.com", slug_for("boss@example.com"))
FRIEND = Person("friend@example.com", slug_for("friend@example.com"))


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    opened = SessionStore.from_url("memory")
    yield opened
    await opened.close()


def allocations_for(store: SessionStore, backend: RecordingBackend) -> Allocations:
    settings = load_settings(
        backend="static", static_target="127.0.0.1:1", identity="header", daily_gpu_hours=2,
        admins=BOSS.email, quota_exempt=FRIEND.email,
    )  # fmt: skip
    return Allocations(store, backend, SessionCache(store, 2.0, 60.0), settings)


async def test_past_the_quota_no_allocation_one_look_and_one_event(store: SessionStore) -> None:
    backend = RecordingBackend(hold=False)
    allocations = allocations_for(store, backend)
    await add_used_today(store.client, ANN.email, 2 * 3600)
    looked: list[str] = []
    original = allocations.usage.allocated_today

    async def counted(email: str, now: float) -> float:
        looked.append(email)
        return await original(email, now)

    allocations.usage.allocated_today = counted  # type: ignore[method-assign]
    for _ in range(5):
        outcome = await allocations.ensure(ANN, wait=5)
        assert isinstance(outcome, Progress) and outcome.state is State.OVER_QUOTA
        assert "00:00 UTC" in outcome.message
    assert looked == [ANN.email]
    assert backend.allocated == []
    assert [event.kind for event in await allocations.events.recent(ANN.email)] == ["over_quota"]


async def test_admins_and_the_exempt_have_no_quota(store: SessionStore) -> None:
    backend = RecordingBackend(hold=False)
    allocations = allocations_for(store, backend)
    for person in (BOSS, FRIEND):
        await add_used_today(store.client, person.email, 10 * 3600)
        assert not isinstance(await allocations.ensure(person, wait=30), Progress)
    assert len(backend.allocated) == 2


async def test_under_the_quota_a_webui_as_usual(store: SessionStore) -> None:
    backend = RecordingBackend(hold=False)
    allocations = allocations_for(store, backend)
    await add_used_today(store.client, ANN.email, 2 * 3600 - 60)
    assert not isinstance(await allocations.ensure(ANN, wait=30), Progress)


async def test_the_dispatcher_takes_someone_past_the_quota_out_of_the_queue(
    store: SessionStore,
) -> None:
    backend = RecordingBackend(hold=False)
    allocations = allocations_for(store, backend)
    queue = WaitQueue(store)
    await queue.join(ANN.email, time.time())
    await add_used_today(store.client, ANN.email, 2 * 3600)  # e.g. the quota was lowered meanwhile
    assert await allocations.serve_queued(ANN, heads=1) == "over_quota"
    assert await queue.waiting() == []
    assert backend.allocated == []
