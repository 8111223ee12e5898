"""WaitQueue: who waits for a GPU, in the order they came, the same for every replica.

A person joins when starting an allocation finds people already waiting (admission is part of
`SessionStore.begin_allocation`, one atomic step) or when their attempt finds no capacity
(`join`). The dispatcher (dispatch.py) serves the head; a saved session leaves the queue in
the same step as the save. Here: places, leaving, abandonment, the operators' view, and what
estimates are built from (recent give-backs, WebUIs on their way). Layout: store.py.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import cast

from allocator.store import (
    QUEUE,
    QUEUE_JOINED,
    QUEUE_KEYS,
    QUEUE_SEEN,
    QUEUE_TICKETS,
    SessionStore,
    lock_key,
    progress_key,
    translate_errors,
)
from allocator.types import State

FREED = "sda:queue:freed"
CAPACITY = "sda:queue:capacity"
TURN = "sda:queue:dispatch"
QUEUE_TOKEN = "queue:"  # allocation locks taken for a queued person start with this
TURNOVER_WINDOW = 3600.0  # give-backs older than this are forgotten

# A person's own attempt (ARGV[3] empty) joins, or keeps their place, and counts as asking.
# The dispatcher's attempt for a queued person (ARGV[3] its lock token) changes nothing if
# that allocation was ended meanwhile (they left) and never counts as their asking.
_JOIN = """
if ARGV[3] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[3] then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[4]), ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
elseif ARGV[3] == '' then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
return redis.call('ZRANK', KEYS[1], ARGV[1]) + 1
"""
# Leaving also ends an allocation the dispatcher started for them: without its lock the
# allocation's save fails and its WebUI is given back (allocation.py, `_save`).
_LEAVE = """
local was = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local holder = redis.call('GET', KEYS[4])
if holder and string.sub(holder, 1, string.len(ARGV[2])) == ARGV[2] then
  redis.call('DEL', KEYS[4])
end
return was
"""
# Silent since the cutoff, and nothing being allocated for them right now.
_ABANDON = """
local seen = redis.call('ZSCORE', KEYS[2], ARGV[1])
if seen and tonumber(seen) > tonumber(ARGV[2]) then return 0 end
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local joined = redis.call('ZSCORE', KEYS[3], ARGV[1]) or ARGV[2]
local was = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if was == 0 then return 0 end
return joined
"""
_END_TURN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Waiting:
    """One queued person as operators see them."""

    email: str
    position: int
    joined: float
    seen: float


@dataclass(frozen=True, slots=True)
class Head:
    """One of the first in the queue, whether an allocation runs for them already, and
    whether that allocation has taken its WebUI from the backend yet (a backend's count of
    free WebUIs no longer includes it then)."""

    email: str
    allocating: bool
    claimed: bool = False


def _claimed(progress: str | None) -> bool:
    """A STARTING progress: the backend has handed the WebUI out and it is starting."""
    return bool(progress) and json.loads(progress or "{}").get("state") == State.STARTING.value


class WaitQueue:
    def __init__(self, store: SessionStore) -> None:
        self._redis = store.client
        self._join = self._redis.register_script(_JOIN)
        self._leave = self._redis.register_script(_LEAVE)
        self._abandon = self._redis.register_script(_ABANDON)
        self._end_turn = self._redis.register_script(_END_TURN)

    async def join(self, email: str, now: float, lock_token: str = "") -> int:
        """Queue `email` (keeping their place if queued already); their position. With
        `lock_token` (the dispatcher's attempt for them): only while that allocation still
        holds its lock, else nothing happens and the answer is 0."""
        keys = [*QUEUE_KEYS, QUEUE_TICKETS, lock_key(email)]
        async with translate_errors():
            return int(await self._join(keys=keys, args=[email, now, lock_token]))

    async def spot(self, email: str, now: float | None = None) -> tuple[int, int] | None:
        """(position, queue length) if queued, else None; with `now`, they are still asking."""
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            if now is not None:
                pipe.zadd(QUEUE_SEEN, {email: now}, xx=True)
            pipe.zrank(QUEUE, email)
            pipe.zcard(QUEUE)
            *_, rank, length = await pipe.execute()
        return None if rank is None else (int(rank) + 1, int(length))

    async def length(self) -> int:
        async with translate_errors():
            return int(await self._redis.zcard(QUEUE))

    async def heads(self, count: int = -1) -> list[Head]:
        """The first `count` queued (all by default), in order, and how far an allocation
        for each has come."""
        async with translate_errors():
            emails = cast(
                list[str], await self._redis.zrange(QUEUE, 0, count - 1 if count > 0 else -1)
            )
            if not emails:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for email in emails:
                    pipe.exists(lock_key(email))
                    pipe.get(progress_key(email))
                found = await pipe.execute()
        return [
            Head(email, bool(found[2 * i]), _claimed(found[2 * i + 1]))
            for i, email in enumerate(emails)
        ]

    async def unserved(self) -> int:
        """How many wait without an allocation under way for them (pressure applies)."""
        return sum(not head.allocating for head in await self.heads())

    async def leave(self, email: str) -> bool:
        """Take `email` out of the queue (and end an allocation started for them there)."""
        keys = [*QUEUE_KEYS, lock_key(email)]
        async with translate_errors():
            return bool(await self._leave(keys=keys, args=[email, QUEUE_TOKEN]))

    async def drop_abandoned(self, cutoff: float) -> list[tuple[str, float]]:
        """Remove everyone who has not asked since `cutoff`: who was removed, and when they
        had joined."""
        async with translate_errors():
            silent = cast(list[str], await self._redis.zrangebyscore(QUEUE_SEEN, "-inf", cutoff))
            if not silent:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for email in silent:
                    keys = [*QUEUE_KEYS, lock_key(email)]
                    await self._abandon(keys=keys, args=[email, cutoff], client=pipe)
                removed = await pipe.execute()
        return [
            (email, float(joined))
            for email, joined in zip(silent, removed, strict=True)
            if joined not in (0, "0")
        ]

    async def joined_at(self, email: str) -> float | None:
        async with translate_errors():
            joined = await self._redis.zscore(QUEUE_JOINED, email)
        return None if joined is None else float(joined)

    async def waiting(self) -> list[Waiting]:
        """Everyone queued, first first."""
        async with translate_errors():
            emails = cast(list[str], await self._redis.zrange(QUEUE, 0, -1))
            if not emails:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zmscore(QUEUE_JOINED, emails)
                pipe.zmscore(QUEUE_SEEN, emails)
                joined, seen = await pipe.execute()
        return [
            Waiting(email, index + 1, float(j or 0.0), float(s or 0.0))
            for index, (email, j, s) in enumerate(zip(emails, joined, seen, strict=True))
        ]

    # -- what estimates are built from ----------------------------------------------------

    async def record_freed(self, now: float, count: int = 1) -> None:
        """`count` WebUIs were given back just now."""
        if count <= 0:
            return
        members = {f"{now:.6f}:{uuid.uuid4().hex[:8]}": now for _ in range(count)}
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(FREED, members)
            pipe.zremrangebyscore(FREED, "-inf", now - TURNOVER_WINDOW)
            await pipe.execute()

    async def freed_since(self, since: float) -> list[float]:
        """When WebUIs were given back since `since`, oldest first."""
        async with translate_errors():
            found = await self._redis.zrangebyscore(FREED, since, "+inf", withscores=True)
        return [float(stamp) for _, stamp in cast(list[tuple[str, float]], found)]

    async def set_starting(self, count: int, ttl: float) -> None:
        async with translate_errors():
            await self._redis.set(CAPACITY, json.dumps({"starting": count}), px=int(ttl * 1000))

    async def starting(self) -> int:
        async with translate_errors():
            raw = await self._redis.get(CAPACITY)
        return int(json.loads(raw).get("starting", 0)) if raw else 0

    # -- one replica at a time decides for the queue --------------------------------------

    async def take_turn(self, token: str, ttl: float) -> bool:
        async with translate_errors():
            return bool(await self._redis.set(TURN, token, nx=True, px=int(ttl * 1000)))

    async def end_turn(self, token: str) -> None:
        async with translate_errors():
            await self._end_turn(keys=[TURN], args=[token])
