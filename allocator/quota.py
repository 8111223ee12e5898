"""Quota: allocated GPU hours per person per UTC day (SDA_DAILY_GPU_HOURS; 0 = off).

Past it a person gets no new WebUI until the next UTC day. A running one is not cut: the
cruiser gives it back at its next quiet moment (cruiser/reaper.py). Admins are exempt, and so
is everyone in SDA_QUOTA_EXEMPT.
"""

from __future__ import annotations

from allocator.events import Event, duration
from allocator.ledger import resets_at
from allocator.settings import Settings
from allocator.types import Progress, State
from allocator.usage import UsageBook


class Quota:
    def __init__(self, limit: float, exempt: frozenset[str], usage: UsageBook) -> None:
        self.limit = limit  # allocated seconds per person per UTC day; 0: off
        self._exempt = exempt
        self._usage = usage

    @classmethod
    def from_settings(cls, settings: Settings, usage: UsageBook) -> Quota:
        exempt = frozenset(settings.admins) | frozenset(settings.quota_exempt)
        return cls(settings.daily_gpu_hours * 3600, exempt, usage)

    def applies_to(self, email: str) -> bool:
        return self.limit > 0 and email not in self._exempt

    async def refusal(self, email: str, now: float) -> Progress | None:
        """Why this person gets no new WebUI now, or None when they may have one."""
        if not self.applies_to(email):
            return None
        if await self._usage.allocated_today(email, now) < self.limit:
            return None
        return over_quota(self.limit, now)

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
