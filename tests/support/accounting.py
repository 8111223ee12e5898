"""Driving time-based accounting in tests without waiting for time: one cruiser pass now, a
person's last activity set back, GPU time already used today."""

from __future__ import annotations

import time
from datetime import timedelta

import redis.asyncio as redis

from allocator.ledger import ALLOCATED, day_key, day_of, resets_at
from cruiser.reaper import CruiseOptions, cruise_once
from cruiser.summary import Summary
from tests.support.inprocess import InProcessAllocator


def cruise(allocator: InProcessAllocator) -> Summary:
    """One cruiser pass on the allocator's own store and backend, as its in-process one runs,
    after its tracker wrote the activity it saw."""
    runtime = allocator.runtime
    options = CruiseOptions.from_settings(runtime.settings, runtime.core.backend)

    async def one_pass() -> Summary:
        await runtime.tracker.flush()
        return await cruise_once(runtime.core.store, runtime.core.backend, options)

    return allocator.call(one_pass())


def last_active(allocator: InProcessAllocator, email: str, seconds_ago: float) -> None:
    """As if the person's last request was `seconds_ago` (after the tracker wrote what it saw)."""
    runtime = allocator.runtime

    async def rewind() -> None:
        await runtime.tracker.flush()
        await runtime.core.store.client.zadd("sda:activity", {email: time.time() - seconds_ago})

    allocator.call(rewind())


async def add_used_today(client: redis.Redis, email: str, seconds: float) -> None:
    """As if the person's earlier WebUIs today had been allocated this long (and tomorrow
    too: a test that runs past midnight UTC finds the same)."""
    today = day_of(time.time())
    for day in (today, today + timedelta(days=1)):
        await client.hincrbyfloat(day_key(day), ALLOCATED + email, seconds)


def used_today(allocator: InProcessAllocator, email: str, seconds: float) -> None:
    """`add_used_today` in the allocator's own store."""
    allocator.call(add_used_today(allocator.runtime.core.store.client, email, seconds))


def next_midnights() -> tuple[float, float]:
    """The next UTC midnight now and a day later: what a test spanning midnight may see."""
    upcoming = resets_at(time.time())
    return upcoming, upcoming + 86_400
