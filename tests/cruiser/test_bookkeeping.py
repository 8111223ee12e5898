"""What a cruiser pass leaves in the store besides reclaims: the pass itself (for the "not
running / failing" alerts), each person's events, the store-wide counts; and that none of it
is written by the quick pressure passes or a dry run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from allocator.events import EventLog
from allocator.store import SessionStore
from allocator.types import Placement, Session
from allocator.usage import UsageBook
from cruiser.reaper import CruiseOptions, Reaper
from tests.support.recording import RecordingBackend

TIMEOUT = 900.0
OPTIONS = CruiseOptions(idle_timeout=TIMEOUT, reconcile=False)


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    opened = SessionStore.from_url("memory")
    yield opened
    await opened.close()


async def saved(store: SessionStore, email: str, idle_for: float, server: str) -> Session:
    now = time.time()
    placement = Placement(server, "10.0.0.1", 7860, {})
    session = Session(email, email.split("@")[0], "recording", placement, now - idle_for)
    await store.save(session, now - idle_for)
    return session


class BrokenInventory(RecordingBackend):
    async def inventory(self) -> list[Session]:
        raise RuntimeError("a bug in reconciliation")


async def test_a_pass_that_crashes_is_recorded_as_failing(store: SessionStore) -> None:
    with pytest.raises(RuntimeError):
        await Reaper(store, BrokenInventory(), replace(OPTIONS, reconcile=True)).run_pass()
    totals = await UsageBook(store).totals()
    assert totals.last_pass is not None and totals.last_failures == 1


async def test_a_pass_records_itself_the_reclaims_and_their_reasons(store: SessionStore) -> None:
    await saved(store, "idle@example.com", 2 * TIMEOUT, "gs-1")
    before = time.time()
    summary = await Reaper(store, RecordingBackend(), OPTIONS).run_pass()
    assert summary.reclaimed == 1
    totals = await UsageBook(store).totals()
    assert totals.reclaims == {"idle": 1}
    assert totals.last_pass is not None and totals.last_pass >= before
    assert totals.last_failures == 0
    [event] = await EventLog(store).recent("idle@example.com")
    assert (event.kind, event.reason, event.server) == ("reclaimed", "idle", "gs-1")


async def test_pressure_passes_and_dry_runs_write_no_bookkeeping(store: SessionStore) -> None:
    session = await saved(store, "busy@example.com", 2 * TIMEOUT, "gs-1")
    await store.hold_busy([session.email], "a-generation", time.time() + 600)
    quick = replace(OPTIONS, bookkeeping=False, quiet=True)
    for options in (quick, replace(OPTIONS, dry_run=True)):
        assert (await Reaper(store, RecordingBackend(), options).run_pass()).kept_busy == 1
    assert (await UsageBook(store).totals()).last_pass is None
    assert await EventLog(store).recent(session.email) == []
    assert (await Reaper(store, RecordingBackend(), OPTIONS).run_pass()).kept_busy == 1
    assert [e.reason for e in await EventLog(store).recent(session.email)] == ["busy"]


class HangingRelease(RecordingBackend):
    def __init__(self) -> None:
        super().__init__()
        self.releasing = asyncio.Event()

    async def release(self, session: Session) -> None:
        self.releasing.set()
        await asyncio.Event().wait()  # until cancelled


async def test_a_pass_cancelled_at_shutdown_is_neither_a_pass_nor_a_failure(
    store: SessionStore,
) -> None:
    await saved(store, "idle@example.com", 2 * TIMEOUT, "gs-1")
    backend = HangingRelease()
    running = asyncio.create_task(Reaper(store, backend, OPTIONS).run_pass())
    await backend.releasing.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert (await UsageBook(store).totals()).last_pass is None
