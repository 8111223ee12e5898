"""Usage: every allocated second is counted once, per UTC day, whoever counts it and however
often; busy time comes from the activity tracker; reports add it up for people and admins."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from allocator.activity import ActivityTracker
from allocator.ledger import STATS, day_key, day_of, day_start
from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Placement, Session
from allocator.usage import ACCRUAL_LEASE, UsageBook
from allocator.usage_report import ReportError, as_csv, parse_since, usage_report

MIDNIGHT = day_start(day_of(time.time()))  # today's start: in the past, its keys kept 90 days
EMAIL = "ann@example.com"


@pytest.fixture
def store(any_store: SessionStore) -> SessionStore:
    return any_store


def session(email: str, allocated_at: float, server: str = "gs-1") -> Session:
    placement = Placement(server, "10.0.0.1", 7860, {})
    return Session(email, email.split("@")[0], "static", placement, allocated_at)


async def allocated_on(store: SessionStore, day_offset: int, email: str = EMAIL) -> float:
    """Allocated seconds on today + `day_offset` (UTC)."""
    day = day_of(MIDNIGHT) + timedelta(days=day_offset)
    rows = await UsageBook(store).days(day, day)
    return sum(row.allocated for row in rows if row.email == email)


async def test_each_second_is_counted_once_however_often_and_by_whom(store: SessionStore) -> None:
    start = MIDNIGHT + 60
    await store.save(session(EMAIL, start), start)
    book, other_replica = UsageBook(store), UsageBook(store)
    assert await book.accrue([EMAIL], start + 100) == {EMAIL: 100.0}
    assert await other_replica.accrue([EMAIL], start + 150) == {EMAIL: 150.0}
    assert await book.accrue([EMAIL], start + 150) == {EMAIL: 150.0}
    # A replica whose clock is behind adds nothing and does not move the mark back.
    assert await book.accrue([EMAIL], start + 120) == {EMAIL: 150.0}
    assert await book.accrue([EMAIL], start + 160) == {EMAIL: 160.0}
    assert (await book.totals()).allocated == pytest.approx(160.0)


async def test_dropping_a_mapping_counts_its_time_up_to_the_drop(store: SessionStore) -> None:
    start = time.time() - 300
    await store.save(session(EMAIL, start), start)
    await UsageBook(store).accrue([EMAIL], start + 100)
    before = time.time()
    assert await store.drop(EMAIL, "gs-1")
    after = time.time()
    used = (await UsageBook(store).totals()).allocated  # all days: midnight may lie between
    assert before - start <= used <= after - start
    assert await store.get(EMAIL) is None
    # Nothing more is counted for a session that is gone, and dropping it again adds nothing.
    assert not await store.drop(EMAIL, "gs-1")
    await UsageBook(store).accrue([EMAIL], after + 500)
    assert (await UsageBook(store).totals()).allocated == used


async def test_a_drop_for_another_server_counts_nothing(store: SessionStore) -> None:
    start = time.time() - 300
    await store.save(session(EMAIL, start), start)
    assert not await store.drop(EMAIL, "gs-other")
    assert (await UsageBook(store).totals()).allocated == 0


async def test_time_across_midnight_goes_to_both_days(store: SessionStore) -> None:
    start = MIDNIGHT - 90  # yesterday 23:58:30
    await store.save(session(EMAIL, start), start)
    await UsageBook(store).accrue([EMAIL], MIDNIGHT + 30)
    assert await allocated_on(store, -1) == pytest.approx(90)
    assert await allocated_on(store, 0) == pytest.approx(30)


async def test_a_long_gap_goes_to_the_oldest_day_it_may_write_and_nothing_is_lost(
    store: SessionStore,
) -> None:
    start = MIDNIGHT - 5 * 86_400  # nobody counted for five days
    await store.save(session(EMAIL, start), start)
    await UsageBook(store).accrue([EMAIL], MIDNIGHT + 60)
    assert await allocated_on(store, -2) == pytest.approx(4 * 86_400)  # days -5 to -2
    assert await allocated_on(store, -1) == pytest.approx(86_400)
    assert await allocated_on(store, 0) == pytest.approx(60)
    assert (await UsageBook(store).totals()).allocated == pytest.approx(5 * 86_400 + 60)


async def test_a_found_again_webui_is_not_charged_for_the_time_nobody_knew_of_it(
    store: SessionStore,
) -> None:
    allocated_long_ago = MIDNIGHT - 3600
    await store.save(session(EMAIL, allocated_long_ago), MIDNIGHT + 10)  # re-attached
    assert await UsageBook(store).accrue([EMAIL], MIDNIGHT + 70) == {EMAIL: 60.0}


async def test_a_day_of_usage_expires_after_the_days_kept(store: SessionStore) -> None:
    kept = SessionStore(store.client, usage_days=3)
    start = MIDNIGHT + 10
    await kept.save(session(EMAIL, start), start)
    await UsageBook(kept).accrue([EMAIL], start + 50)
    expires_at = await store.client.expiretime(day_key(day_of(start)))
    assert expires_at == MIDNIGHT + 86_400 + 3 * 86_400


def clock_moves_past(stamp: float) -> None:
    """Until time.time() shows a later value (a coarse clock may repeat one): a tick of the
    clock, not a wait for the machine."""
    while time.time() <= stamp:
        pass


async def test_busy_time_is_what_the_tracker_saw_in_flight(store: SessionStore) -> None:
    tracker = ActivityTracker(store, [], interval=60, busy_after=60, lease_ttl=60)
    start = time.time()
    await store.save(session(EMAIL, start), start)
    tracker.begin(EMAIL)
    tracker.begin(EMAIL)  # two requests at once are one busy stretch
    clock_moves_past(time.time())  # after the begin
    await tracker.flush()  # counted up to here while still running
    tracker.end(EMAIL)
    tracker.end(EMAIL)
    ended = time.time()
    await tracker.flush()
    busy = await UsageBook(store).days(day_of(ended), day_of(ended))
    seconds = sum(row.busy for row in busy)
    assert 0 < seconds <= ended - start
    assert (await UsageBook(store).totals()).busy == pytest.approx(seconds)


async def test_busy_time_waits_for_the_store_and_is_not_lost(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = ActivityTracker(store, [], interval=60, busy_after=60, lease_ttl=60)
    began = time.time()
    tracker.begin(EMAIL)
    clock_moves_past(time.time())  # after the begin
    tracker.end(EMAIL)
    ended = time.time()
    written = UsageBook.add_busy

    async def store_fails(*args: object) -> None:
        raise StoreUnavailable("ConnectionError: gone")

    monkeypatch.setattr(UsageBook, "add_busy", store_fails)
    with pytest.raises(StoreUnavailable):
        await tracker.flush()  # activity was written, the busy time was not
    monkeypatch.setattr(UsageBook, "add_busy", written)
    await tracker.flush()
    busy = (await UsageBook(store).totals()).busy
    assert 0 < busy <= ended - began


async def test_the_report_adds_up_people_days_and_the_running_sessions(
    store: SessionStore,
) -> None:
    now = time.time()
    await store.save(session("big@example.com", now - 7200, "gs-1"), now - 7200)
    await store.save(session("small@example.com", now - 600, "gs-2"), now - 600)
    await UsageBook(store).add_busy({"big@example.com": 30.0}, now)
    report = await usage_report(UsageBook(store), day_of(now) - timedelta(days=6), now)
    assert [person.email for person in report.people] == ["big@example.com", "small@example.com"]
    big = report.people[0]  # the report covers the week: yesterday's part counts too
    assert big.allocated_seconds == pytest.approx(7200, abs=5)
    assert big.busy_seconds == 30.0
    assert report.allocated_seconds == pytest.approx(
        sum(p.allocated_seconds for p in report.people)
    )
    lines = as_csv(report).splitlines()
    assert lines[0] == "day,email,allocated_seconds,busy_seconds"
    assert len(lines) == 1 + len(report.days)


async def test_an_email_that_looks_like_a_formula_is_not_one_in_the_csv(
    store: SessionStore,
) -> None:
    now = time.time()
    await UsageBook(store).add_busy({"=cmd|'/c calc'!a@example.com": 5.0}, now)
    report = await usage_report(UsageBook(store), day_of(now), now)
    assert ",'=cmd|" in as_csv(report)


def test_since_must_be_a_date_not_in_the_future_and_is_clamped_to_what_is_kept() -> None:
    now = time.time()
    today = day_of(now)
    assert parse_since(None, now, 90) == today - timedelta(days=6)
    assert parse_since("2000-01-01", now, 90) == today - timedelta(days=90)
    with pytest.raises(ReportError, match="YYYY-MM-DD"):
        parse_since("last week", now, 90)
    with pytest.raises(ReportError, match="after today"):
        parse_since((today + timedelta(days=1)).isoformat(), now, 90)


async def test_a_store_that_does_not_answer_is_reported_not_crashed() -> None:
    dead = SessionStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable):
        await UsageBook(dead).accrue([EMAIL], time.time())
    with pytest.raises(StoreUnavailable):
        await UsageBook(dead).totals()
    await dead.close()


async def test_totals_carry_reclaims_and_the_last_pass(store: SessionStore) -> None:
    book = UsageBook(store)
    await book.count_reclaims({"idle": 2, "admin": 1})
    await book.count_reclaims({"idle": 1})
    await book.record_pass(1234.5, failures=2)
    totals = await book.totals()
    assert totals.reclaims == {"idle": 3, "admin": 1}
    assert (totals.last_pass, totals.last_failures) == (1234.5, 2)
    assert await store.client.exists(STATS)


async def test_a_full_count_runs_once_per_interval_however_many_replicas_ask(
    store: SessionStore,
) -> None:
    start = MIDNIGHT + 10
    await store.save(session(EMAIL, start), start)
    replicas = [UsageBook(store) for _ in range(3)]
    due = [await replica.accrue_all_if_due(start + 100, every=60) for replica in replicas]
    assert due == [True, False, False]
    assert (await replicas[0].totals()).allocated == pytest.approx(100)
    await store.client.delete(ACCRUAL_LEASE)  # the interval has passed
    assert await replicas[2].accrue_all_if_due(start + 130, every=60)
    assert (await replicas[0].totals()).allocated == pytest.approx(130)
