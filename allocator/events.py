"""Events: a short history per person of what happened to their WebUI, and why.

  sda:events:<email>  list  newest first, at most KEEP entries, "tag|json"; expires
                            SDA_USAGE_DAYS after the last one

The cruiser keeping a session repeats every pass: such an event carries a tag, and one with
the same tag as the newest entry replaces it (its time moves on) instead of piling up.
Recording is best effort: a store that does not answer loses the event, never the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

from allocator.ledger import DAY
from allocator.store import SessionStore, StoreUnavailable, translate_errors

log = logging.getLogger(__name__)

KEEP = 30
Kind = Literal["allocated", "reattached", "restarted", "kept", "reclaimed", "queued", "over_quota"]

_RECORD = """
local tag = ARGV[2]
if tag ~= '' then
  local head = redis.call('LINDEX', KEYS[1], 0)
  if head and string.sub(head, 1, #tag + 1) == tag .. '|' then
    redis.call('LSET', KEYS[1], 0, ARGV[1])
    redis.call('EXPIRE', KEYS[1], ARGV[4])
    return 0
  end
end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[3]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. `reason`: for reclaimed, idle | pressure | max_age |
    over_quota | released | admin | orphan | stale; for kept, busy | active; for restarted,
    refused | vanished. `seconds`: how long the allocation took (allocated), the idle time or
    age (reclaimed), the quota (over_quota); `waited`: time in the queue before it."""

    at: float
    kind: Kind
    server: str = ""
    reason: str = ""
    seconds: float | None = None
    waited: float | None = None
    position: int | None = None

    @property
    def tag(self) -> str:
        """Events that replace a newest one of the same kind instead of adding another: the
        cruiser keeping a session pass after pass (busy or active, alternating) is one."""
        return self.kind if self.kind in ("kept", "over_quota") else ""

    @property
    def message(self) -> str:
        return describe(self)


def _key(email: str) -> str:
    return f"sda:events:{email}"


class EventLog:
    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._redis = store.client
        self._record = self._redis.register_script(_RECORD)
        self._pending: set[asyncio.Task[None]] = set()

    async def record(self, email: str, event: Event) -> None:
        await self.record_many([(email, event)])

    def record_soon(self, email: str, event: Event) -> None:
        """Record without holding up the caller (a person's first answer after allocating)."""
        task = asyncio.get_running_loop().create_task(self.record(email, event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settled(self) -> None:
        """Wait until what `record_soon` started has landed (or failed)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def record_many(self, events: list[tuple[str, Event]]) -> None:
        """Best effort, one round trip: a store that does not answer loses these events."""
        if not events:
            return
        expires = self._store.usage_days * DAY
        try:
            async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
                for email, event in events:
                    entry = f"{event.tag}|{json.dumps(_encode(event))}"
                    args: list[str | int] = [entry, event.tag, KEEP, expires]
                    await self._record(keys=[_key(email)], args=args, client=pipe)
                await pipe.execute()
        except StoreUnavailable as exc:
            log.warning("could not record %d event(s): %s", len(events), exc)

    async def recent(self, email: str) -> list[Event]:
        """Newest first."""
        async with translate_errors():
            entries = await self._redis.lrange(_key(email), 0, KEEP - 1)
        return [event for entry in entries if (event := _decode(str(entry))) is not None]


def _encode(event: Event) -> dict[str, object]:
    return {name: value for name, value in asdict(event).items() if value not in (None, "")}


def _decode(entry: str) -> Event | None:
    try:
        data = json.loads(entry.partition("|")[2])
        return Event(**data)
    except (ValueError, TypeError):
        log.warning("an unreadable event was skipped")
        return None


def clock(stamp: float) -> str:
    """14:03 UTC (with the date when it is not today)."""
    moment = datetime.fromtimestamp(stamp, UTC)
    if moment.date() == datetime.fromtimestamp(time.time(), UTC).date():
        return moment.strftime("%H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float) -> str:
    """45 seconds, 15 minutes, 2 hours 10 minutes."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return _plural(round(seconds), "second")
    minutes = round(seconds / 60)
    if minutes < 120:
        return _plural(minutes, "minute")
    hours, rest = divmod(minutes, 60)
    return _plural(hours, "hour") + (f" {_plural(rest, 'minute')}" if rest else "")


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def describe(event: Event) -> str:
    """The sentence a person reads on their session page."""
    at = clock(event.at)
    if event.kind == "allocated":
        took = f", {duration(event.seconds)} after you asked" if event.seconds is not None else ""
        queue = f" (after {duration(event.waited)} in the queue)" if event.waited else ""
        return f"Your WebUI {event.server} was ready at {at}{took}{queue}."
    if event.kind == "reattached":
        return f"Your running WebUI {event.server} was found again at {at}."
    if event.kind == "restarted":
        why = "stopped answering" if event.reason == "refused" else "was gone"
        return f"At {at} your WebUI {event.server} {why}; the next visit starts a new one."
    if event.kind == "kept":
        why = "a generation or stream was running" if event.reason == "busy" else "you were active"
        return f"Your WebUI was kept at {at}: {why}."
    if event.kind == "queued":
        place = f" as number {event.position}" if event.position else ""
        return f"All GPUs were busy at {at}: you joined the queue{place}."
    if event.kind == "over_quota":
        hours = f"{(event.seconds or 0) / 3600:g}"
        return f"At {at} you had used today's {hours} GPU hours; no new WebUI until 00:00 UTC."
    return _reclaimed(event, at)


def _reclaimed(event: Event, at: str) -> str:
    given = f"Your WebUI was given back at {at}"
    seconds = event.seconds or 0.0
    reasons = {
        "idle": f"{given} after {duration(seconds)} without activity.",
        "pressure": f"{given} after {duration(seconds)} without activity, while others waited "
        "for a GPU.",
        "max_age": f"{given}: it reached the longest a session may last ({duration(seconds)}).",
        "over_quota": f"{given} at its first quiet moment after you used today's GPU hours.",
        "released": f"You gave your WebUI back at {at}.",
        "admin": f"An administrator gave your WebUI back at {at}.",
        "orphan": f"{given}: it ran without a record of whose it was.",
        "stale": f"Your WebUI {event.server} was found gone at {at}; its record was removed.",
    }
    return reasons.get(event.reason, f"{given}.")
