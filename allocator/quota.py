"""Quota: allocated GPU hours per person per UTC day (SDA_DAILY_GPU_HOURS; 0 = off).

Past it a person gets no new WebUI until the next UTC day. A running one is not cut: the
cruiser gives it back at its next quiet moment (cruiser/reaper.py). Admins are exempt, and so
is everyone in SDA_QUOTA_EXEMPT.
"""

from __future__ import annotations

from allocator.events import Event, EventLog, duration
from allocator.ledger import resets_at
from allocator.settings import Settings
from allocator.types import Progress, State
from allocator.usage import UsageBook


class Quota:
    def __init__(
        self,
        limit: float,
        exempt: frozenset[str],
        usage: UsageBook,
        events: EventLog | None = None,
    ) -> None:
        self.limit = limit  # allocated seconds per person per UTC day; 0: off
        self._exempt = exempt
        self._usage = usage
        self._events = events  # where a refusal is told (once per person per day here)
        self._refused: dict[str, float] = {}  # email → when their refusal ends (midnight)

    @classmethod
    def from_settings(
        cls, settings: Settings, usage: UsageBook, events: EventLog | None = None
    ) -> Quota:
        exempt = frozenset(settings.admins) | frozenset(settings.quota_exempt)
        return cls(settings.daily_gpu_hours * 3600, exempt, usage, events)

    def applies_to(self, email: str) -> bool:
        return self.limit > 0 and email not in self._exempt

    async def refusal(self, email: str, now: float) -> Progress | None:
        """Why this person gets no new WebUI now, or None when they may have one. A refusal
        holds until midnight (without a WebUI their usage cannot fall), so this process asks
        the store once per person per day, and records the event once."""
        if not self.applies_to(email):
            return None
        if now < self._refused.get(email, 0.0):
            return over_quota(self.limit, now)
        if await self._usage.allocated_today(email, now) < self.limit:
            return None
        self._refused = {e: end for e, end in self._refused.items() if end > now}
        self._refused[email] = resets_at(now)
        if self._events is not None:
            await self._events.record(email, self.event(now))
        return over_quota(self.limit, now)

    async def used_up(self, email: str, now: float) -> bool:
        """Whether this person's running WebUI is past today's quota (it goes when quiet)."""
        if not self.applies_to(email):
            return False
        return await self._usage.allocated_today(email, now) >= self.limit

    def over(self, used: dict[str, float]) -> list[str]:
        """Of these people's allocated seconds today, who is past the quota."""
        return [
            email
            for email, seconds in used.items()
            if self.applies_to(email) and seconds >= self.limit
        ]

    def event(self, now: float) -> Event:
        return Event(at=now, kind="over_quota", seconds=self.limit)


def over_quota(limit: float, now: float) -> Progress:
    hours = f"{limit / 3600:g}"
    left = duration(resets_at(now) - now)
    message = (
        f"You have used your {hours} GPU hours for today. You can have a WebUI again at "
        f"00:00 UTC, in {left}. Your pictures stay available meanwhile."
    )
    return Progress(State.OVER_QUOTA, message, now)
