"""Usage reports and event lists as the admin API, the admin page and the CLI give them."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

from pydantic import BaseModel

from allocator.events import Event
from allocator.ledger import day_of
from allocator.usage import UsageBook

DEFAULT_DAYS = 7  # a report without `since`: the last week, today included


class ReportError(ValueError):
    """A report that cannot be made from what was asked; the message says why."""


class DayRow(BaseModel):
    day: date
    email: str
    allocated_seconds: float
    busy_seconds: float


class PersonTotal(BaseModel):
    email: str
    allocated_seconds: float
    busy_seconds: float


class UsageReport(BaseModel):
    since: date
    until: date
    allocated_seconds: float  # everyone, the whole range
    busy_seconds: float
    people: list[PersonTotal]  # most allocated first
    days: list[DayRow]  # by day, then email


class EventOut(BaseModel):
    at: float
    kind: str
    reason: str | None = None
    server: str | None = None
    seconds: float | None = None
    waited_seconds: float | None = None
    position: int | None = None
    message: str


def parse_since(text: str | None, now: float, keep_days: int) -> date:
    """`since` as YYYY-MM-DD; none: DEFAULT_DAYS back. Never before what is kept, never after
    today."""
    today = day_of(now)
    if not text:
        return today - timedelta(days=DEFAULT_DAYS - 1)
    try:
        since = date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"since={text!r}: use a date like 2026-12-01 (YYYY-MM-DD)") from None
    if since > today:
        raise ReportError(f"since={text}: that is after today ({today.isoformat()}, UTC)")
    return max(since, today - timedelta(days=keep_days))


async def usage_report(usage: UsageBook, since: date, now: float) -> UsageReport:
    """From `since` to today; sessions running now are counted up to a minute ago at most."""
    await usage.accrue_all_if_due(now)
    until = day_of(now)
    rows = await usage.days(since, until)
    people: dict[str, list[float]] = {}
    for row in rows:
        pair = people.setdefault(row.email, [0.0, 0.0])
        pair[0] += row.allocated
        pair[1] += row.busy
    totals = sorted(
        (PersonTotal(email=e, allocated_seconds=a, busy_seconds=b) for e, (a, b) in people.items()),
        key=lambda person: (-person.allocated_seconds, person.email),
    )
    return UsageReport(
        since=since,
        until=until,
        allocated_seconds=sum(person.allocated_seconds for person in totals),
        busy_seconds=sum(person.busy_seconds for person in totals),
        people=totals,
        days=[
            DayRow(day=r.day, email=r.email, allocated_seconds=r.allocated, busy_seconds=r.busy)
            for r in rows
        ],
    )


def as_csv(report: UsageReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["day", "email", "allocated_seconds", "busy_seconds"])
    for row in report.days:
        writer.writerow(
            [row.day.isoformat(), _safe_cell(row.email), f"{row.allocated_seconds:.0f}",
             f"{row.busy_seconds:.0f}"]
        )  # fmt: skip
    return out.getvalue()


def _safe_cell(text: str) -> str:
    """A spreadsheet must not run an email that starts like a formula (=, +, -, @)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def event_out(event: Event) -> EventOut:
    return EventOut(
        at=event.at,
        kind=event.kind,
        reason=event.reason or None,
        server=event.server or None,
        seconds=event.seconds,
        waited_seconds=event.waited,
        position=event.position,
        message=event.message,
    )


def hours(seconds: float) -> str:
    """2.5 h, 0.25 h: how the page and the CLI show GPU time."""
    return f"{seconds / 3600:.2f} h"
