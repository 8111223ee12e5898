"""Events: each person's short history, newest first, bounded, a repeated "kept" folded into
one, written in sentences a person understands; a store that fails loses an event, never a
request."""

from __future__ import annotations

import time

import pytest

from allocator.events import KEEP, Event, EventLog, describe, duration
from allocator.store import SessionStore, StoreUnavailable

EMAIL = "ann@example.com"


@pytest.fixture
def store(any_store: SessionStore) -> SessionStore:
    return any_store


async def test_events_come_back_newest_first_and_only_the_last_ones_are_kept(
    store: SessionStore,
) -> None:
    log = EventLog(store)
    for n in range(KEEP + 5):
        await log.record(EMAIL, Event(1000.0 + n, "allocated", f"gs-{n}", seconds=2.0))
    recent = await log.recent(EMAIL)
    assert len(recent) == KEEP
    assert [event.server for event in recent[:2]] == [f"gs-{KEEP + 4}", f"gs-{KEEP + 3}"]
    assert await log.recent("nobody@example.com") == []


async def test_the_cruiser_keeping_a_session_again_and_again_is_one_event(
    store: SessionStore,
) -> None:
    log = EventLog(store)
    await log.record(EMAIL, Event(1000.0, "allocated", "gs-1"))
    for at, why in ((1100.0, "busy"), (1200.0, "active"), (1300.0, "busy")):
        await log.record(EMAIL, Event(at, "kept", "gs-1", why))  # pass after pass
    await log.record(EMAIL, Event(1400.0, "reclaimed", "gs-1", "idle", seconds=900))
    await log.record(EMAIL, Event(1500.0, "kept", "gs-2", "busy"))  # a later session: new
    recent = await log.recent(EMAIL)
    assert [(e.kind, e.reason, e.at) for e in recent] == [
        ("kept", "busy", 1500.0),
        ("reclaimed", "idle", 1400.0),
        ("kept", "busy", 1300.0),
        ("allocated", "", 1000.0),
    ]


async def test_an_unreadable_entry_is_skipped_not_fatal(store: SessionStore) -> None:
    await store.client.lpush(f"sda:events:{EMAIL}", "|{not json")
    await store.client.lpush(f"sda:events:{EMAIL}", '|{"at": 1, "kind": "queued", "extra": 1}')
    await EventLog(store).record(EMAIL, Event(2000.0, "queued", position=3))
    assert [e.position for e in await EventLog(store).recent(EMAIL)] == [3]


async def test_events_expire_with_the_usage_retention(store: SessionStore) -> None:
    kept_two_days = SessionStore(store.client, usage_days=2)
    await EventLog(kept_two_days).record(EMAIL, Event(time.time(), "queued"))
    ttl = await store.client.ttl(f"sda:events:{EMAIL}")
    assert 2 * 86_400 - 60 < ttl <= 2 * 86_400


async def test_a_store_that_does_not_answer_loses_the_event_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = SessionStore.from_url("redis://127.0.0.1:1/0")
    log = EventLog(dead)
    await log.record(EMAIL, Event(time.time(), "queued"))  # does not raise
    log.record_soon(EMAIL, Event(time.time(), "queued"))
    await log.settled()
    assert "could not record 1 event" in caplog.text
    with pytest.raises(StoreUnavailable):
        await log.recent(EMAIL)
    await dead.close()


def test_every_event_reads_as_a_sentence_with_its_time_and_reason() -> None:
    at = time.time() - 3600 if time.gmtime().tm_hour else time.time()  # today, never tomorrow
    clock = time.strftime("%H:%M", time.gmtime(at))
    idle = describe(Event(at, "reclaimed", "gs-1", "idle", seconds=900))
    assert idle == f"Your WebUI was given back at {clock} UTC after 15 minutes without activity."
    assert "while others waited" in describe(Event(at, "reclaimed", "", "pressure", seconds=300))
    assert "longest a session may last (12 hours)" in describe(
        Event(at, "reclaimed", "", "max_age", seconds=12 * 3600)
    )
    assert "today's GPU hours" in describe(Event(at, "reclaimed", "", "over_quota"))
    assert describe(Event(at, "reclaimed", "", "released")).startswith("You gave your WebUI")
    assert describe(Event(at, "reclaimed", "", "admin")).startswith("An administrator")
    assert "without a record" in describe(Event(at, "reclaimed", "", "orphan"))
    assert "found gone" in describe(Event(at, "reclaimed", "gs-1", "stale"))
    assert "a generation or stream was running" in describe(Event(at, "kept", "", "busy"))
    assert "you were active" in describe(Event(at, "kept", "", "active"))
    assert describe(Event(at, "restarted", "gs-1", "refused")).endswith(
        "stopped answering; the next visit starts a new one."
    )
    assert "was gone" in describe(Event(at, "restarted", "gs-1", "vanished"))
    assert "number 3" in describe(Event(at, "queued", position=3))
    ready = describe(Event(at, "allocated", "gs-1", seconds=42, waited=300))
    assert ready == (
        f"Your WebUI gs-1 was ready at {clock} UTC, 42 seconds after you asked "
        "(after 5 minutes in the queue)."
    )
    assert "today's 4 GPU hours" in describe(Event(at, "over_quota", seconds=4 * 3600))
    yesterday = describe(Event(at - 86_400, "reattached", "gs-1"))
    assert time.strftime("%Y-%m-%d", time.gmtime(at - 86_400)) in yesterday


def test_durations_read_naturally() -> None:
    assert [duration(s) for s in (1, 45, 89, 90, 900, 7100, 7200, 7260)] == [
        "1 second",
        "45 seconds",
        "89 seconds",
        "2 minutes",
        "15 minutes",
        "118 minutes",
        "2 hours",
        "2 hours 1 minute",
    ]
