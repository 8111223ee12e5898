"""Usage: allocated and busy GPU-seconds per person per UTC day (layout in ledger.py).

Allocated time is counted by `accrue` and by the drop of a mapping: every session about once
a minute (`accrue_all_if_due`, whichever replica comes first), one person when they look at
their own, everyone when the cruiser judges quotas. Busy time (a request or stream in flight)
is counted by each replica's activity tracker when it writes activity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import cast

from allocator import ledger
from allocator.ledger import ACCRUE_FUNCTION, ALLOCATED, BUSY, STATS, day_key, day_of
from allocator.store import SessionStore, session_key, translate_errors

_ACCRUE = (
    ACCRUE_FUNCTION
    + """
local added = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  added = accrue(KEYS[1], ARGV[1], 2, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
end
return {tostring(added), redis.call('HGET', KEYS[4], 'a:' .. ARGV[1]) or '0'}
"""
)
MAX_REPORT_DAYS = 3660
CHUNK = 2_000  # sessions accrued per round trip
ACCRUE_EVERY = 60.0  # a full accrual at most this often, across every replica and cruiser
ACCRUAL_LEASE = "sda:accrual"


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One person's usage on one UTC day, in seconds."""

    day: date
    email: str
    allocated: float
    busy: float


@dataclass(frozen=True, slots=True)
class Totals:
    """Store-wide figures for the metrics (every replica reads the same)."""

    allocated: float
    busy: float
    reclaims: dict[str, int]
    last_pass: float | None
    last_failures: int


@dataclass(frozen=True, slots=True)
class Own:
    """What a person sees of their own usage: allocated and busy seconds."""

    today_allocated: float
    today_busy: float
    week_allocated: float
    week_busy: float


class UsageBook:
    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._redis = store.client
        self._accrue = self._redis.register_script(_ACCRUE)

    async def accrue(self, emails: list[str], now: float) -> dict[str, float]:
        """Count these sessions' allocated time up to `now`, one round trip: each person's
        allocated seconds today afterwards (0 for someone without a mapping)."""
        if not emails:
            return {}
        keys_tail = ledger.window_keys(now)
        args_tail = ledger.window_args(now, self._store.usage_days)
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for email in emails:
                keys = [session_key(email), *keys_tail]
                await self._accrue(keys=keys, args=[email, *args_tail], client=pipe)
            replies = await pipe.execute()
        return {email: float(reply[1]) for email, reply in zip(emails, replies, strict=True)}

    async def accrue_all(self, now: float) -> dict[str, float]:
        """`accrue` for every session in the store, CHUNK per round trip."""
        emails = await self._store.emails()
        used: dict[str, float] = {}
        for start in range(0, len(emails), CHUNK):
            used |= await self.accrue(emails[start : start + CHUNK], now)
        return used

    async def accrue_all_if_due(self, now: float, every: float = ACCRUE_EVERY) -> bool:
        """`accrue_all`, unless a replica or cruiser did within `every` seconds: the cost is
        one pass over the sessions per interval, however many replicas ask."""
        async with translate_errors():
            due = await self._redis.set(ACCRUAL_LEASE, repr(now), nx=True, px=int(every * 1000))
        if due:
            await self.accrue_all(now)
        return bool(due)

    async def add_busy(self, seconds: Mapping[str, float], now: float) -> None:
        """Busy seconds that ended (or were counted) by `now`, to today's figures."""
        seconds = {email: value for email, value in seconds.items() if value > 0}
        if not seconds:
            return
        today = day_of(now)
        key = day_key(today)
        expires = int(ledger.day_start(today)) + ledger.DAY * (1 + self._store.usage_days)
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for email, value in seconds.items():
                pipe.hincrbyfloat(key, BUSY + email, value)
            pipe.expireat(key, expires)
            pipe.hincrbyfloat(STATS, ledger.GPU_BUSY, sum(seconds.values()))
            await pipe.execute()

    async def days(self, first: date, last: date) -> list[DayUsage]:
        """Everyone's usage from `first` to `last` (UTC days, both included), by day and email."""
        count = (last - first).days + 1
        if count <= 0:
            return []
        wanted = [first + timedelta(days=offset) for offset in range(min(count, MAX_REPORT_DAYS))]
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for day in wanted:
                pipe.hgetall(day_key(day))
            found = cast(list[dict[str, str]], await pipe.execute())
        rows: list[DayUsage] = []
        for day, fields in zip(wanted, found, strict=True):
            rows.extend(_rows(day, fields))
        return rows

    async def own(self, email: str, now: float) -> Own:
        """Today and this ISO week (from Monday, UTC), the running session included."""
        await self.accrue([email], now)
        today = day_of(now)
        monday = today - timedelta(days=today.weekday())
        rows = await self._days_of(email, monday, today)
        todays = [row for row in rows if row.day == today]
        return Own(
            today_allocated=sum(row.allocated for row in todays),
            today_busy=sum(row.busy for row in todays),
            week_allocated=sum(row.allocated for row in rows),
            week_busy=sum(row.busy for row in rows),
        )

    async def _days_of(self, email: str, first: date, last: date) -> list[DayUsage]:
        wanted = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for day in wanted:
                pipe.hmget(day_key(day), [ALLOCATED + email, BUSY + email])
            found = await pipe.execute()
        return [
            _day_usage(day, email, float(allocated or 0), float(busy or 0))
            for day, (allocated, busy) in zip(wanted, found, strict=True)
        ]

    async def allocated_today(self, email: str, now: float) -> float:
        """Allocated seconds today, the running session (if any) counted up to `now`."""
        return (await self.accrue([email], now))[email]

    async def count_reclaims(self, counts: Mapping[str, int]) -> None:
        """WebUIs given back, by reason, to the store-wide counts (one round trip)."""
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for reason, count in counts.items():
                pipe.hincrby(STATS, ledger.RECLAIMS + reason, count)
            if len(pipe):
                await pipe.execute()

    async def record_pass(self, now: float, failures: int) -> None:
        """A cruiser pass ended (what the "cruiser not running" alert watches)."""
        mapping: dict[str, str | int | float] = {
            ledger.LAST_PASS: now,
            ledger.LAST_FAILURES: failures,
        }
        async with translate_errors():
            await self._redis.hset(STATS, mapping=mapping)  # type: ignore[arg-type]

    async def totals(self) -> Totals:
        async with translate_errors():
            fields = cast(dict[str, str], await self._redis.hgetall(STATS))
        last = fields.get(ledger.LAST_PASS)
        return Totals(
            allocated=float(fields.get(ledger.GPU_ALLOCATED, 0)),
            busy=float(fields.get(ledger.GPU_BUSY, 0)),
            reclaims={
                name.removeprefix(ledger.RECLAIMS): int(value)
                for name, value in fields.items()
                if name.startswith(ledger.RECLAIMS)
            },
            last_pass=float(last) if last else None,
            last_failures=int(fields.get(ledger.LAST_FAILURES, 0)),
        )


def _rows(day: date, fields: dict[str, str]) -> list[DayUsage]:
    figures: dict[str, list[float]] = {}
    for name, value in fields.items():
        kind, _, email = name.partition(":")
        if email and kind in ("a", "b"):
            pair = figures.setdefault(email, [0.0, 0.0])
            pair[0 if kind == "a" else 1] += float(value)
    return [_day_usage(day, email, pair[0], pair[1]) for email, pair in sorted(figures.items())]


def _day_usage(day: date, email: str, allocated: float, busy: float) -> DayUsage:
    """Busy within allocated: work on two replicas (or workers) at once is counted by both."""
    return DayUsage(day, email, allocated, min(busy, allocated) if allocated else busy)
