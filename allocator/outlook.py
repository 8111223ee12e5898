"""Estimates for people in the queue: when might the N-th GPU free up?

Two bases, either of which may be missing. Idle sessions: one idle since T is given back at T
plus the reclaim timeout (the shorter pressure timeout while people wait), unless it is used
again or busy. Turnover: how many WebUIs were given back over the last half hour. The
estimate for position N is the sooner of the N-th idle deadline and N / turnover; None when
neither basis exists, never a made-up number. Computed at most every few seconds per replica.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from allocator.settings import Settings
from allocator.store import SessionStore
from allocator.types import QueueSpot
from allocator.waitqueue import WaitQueue

REFRESH_SECONDS = 2.0
TURNOVER_SECONDS = 1800.0
MIN_TURNOVER = 3  # fewer give-backs than this in the window is no basis for a rate
LOOK_AHEAD = 8  # idle sessions read beyond the queue's length (some turn out busy)


@dataclass(frozen=True, slots=True)
class Outlook:
    deadlines: tuple[float, ...]  # seconds from `at` until idle sessions are given back
    rate: float | None  # give-backs per second, recently
    starting: int  # new WebUIs on their way
    at: float
    covers: int = 0  # positions the deadlines were read for

    def eta(self, position: int, now: float) -> int | None:
        passed = now - self.at
        candidates = []
        if len(self.deadlines) >= position:
            candidates.append(max(0.0, self.deadlines[position - 1] - passed))
        if self.rate:
            candidates.append(position / self.rate)
        return round(min(candidates)) if candidates else None


class QueueOutlook:
    def __init__(self, queue: WaitQueue, store: SessionStore, settings: Settings) -> None:
        self._queue = queue
        self._store = store
        self._settings = settings
        self._latest: Outlook | None = None

    async def spot(self, email: str, asking: bool = True) -> QueueSpot | None:
        """Their place (noting that they still ask, when `asking`), None if not queued."""
        now = time.time()
        found = await self._queue.spot(email, now if asking else None)
        if found is None:
            return None
        position, length = found
        outlook = await self.outlook(length, now)
        return QueueSpot(position, length, outlook.eta(position, now), outlook.starting)

    async def outlook(self, length: int, now: float) -> Outlook:
        latest = self._latest
        stale = latest is None or now - latest.at > REFRESH_SECONDS or length > latest.covers
        if latest is None or stale:
            latest = self._latest = await self._compute(length, now)
        return latest

    async def _compute(self, length: int, now: float) -> Outlook:
        after = self._settings.reclaim_after(queued=True)
        idle = await self._store.idle(now, limit=length + LOOK_AHEAD)
        busy = await self._store.busy_among([email for email, _ in idle], now)
        deadlines = tuple(
            max(0.0, stamp + after - now) for email, stamp in idle if email not in busy
        )
        freed = await self._queue.freed_since(now - TURNOVER_SECONDS)
        rate = len(freed) / TURNOVER_SECONDS if len(freed) >= MIN_TURNOVER else None
        return Outlook(deadlines, rate, await self._queue.starting(), now, length)
