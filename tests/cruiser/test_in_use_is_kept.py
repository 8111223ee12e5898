"""Active and busy sessions are never reclaimed, at any idle timeout the settings accept.

A separate cruiser (its own store connection and backend, as `sd-allocator cruise --once`
runs) passes again and again while one person keeps sending requests and another has one
request in flight for longer than twice the idle timeout; only the idle person goes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from allocator.runtime import Core
from cruiser.reaper import CruiseOptions, cruise_once
from tests.support.inprocess import InProcessAllocator, settings_for
from tests.support.origin import Origin
from tests.support.processes import RedisServer, header_for

IDLE_TIMEOUT = 4.0  # the activity timing scales itself to it (no SDA_ACTIVITY_INTERVAL given)
STEADY, BUSY, IDLE = "steady@x.com", "busy@x.com", "idle@x.com"


async def test_active_and_busy_are_never_reclaimed_at_a_short_idle_timeout(
    origin: Origin, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path, **origin.settings(redis_url=redis_server.url, idle_timeout=str(IDLE_TIMEOUT))
    )
    with InProcessAllocator(settings) as allocator:
        async with httpx.AsyncClient(base_url=allocator.url, timeout=120) as http:
            for email in (STEADY, BUSY, IDLE):
                assert (await http.get("/echo", headers=header_for(email))).status_code == 200
            held = asyncio.create_task(http.get("/hold/busy-work", headers=header_for(BUSY)))
            busy_since = time.time()
            stop = asyncio.Event()

            async def keep_going() -> None:
                while not stop.is_set():
                    await http.get("/echo", headers=header_for(STEADY))
                    await asyncio.sleep(0.5)  # the person's pace (the workload), not a wait

            steady = asyncio.create_task(keep_going())
            cruiser = Core.build(settings)
            try:
                passes = await cruise_until_idle_is_gone(cruiser, busy_since + 2 * IDLE_TIMEOUT)
            finally:
                stop.set()
                await cruiser.close()
            origin.open_gate("busy-work")
            assert (await held).status_code == 200
            await steady
    assert passes >= 2 * IDLE_TIMEOUT  # about four passes a second


async def cruise_until_idle_is_gone(cruiser: Core, not_before: float) -> int:
    """Passes until the idle session is reclaimed and the busy request has lasted twice the
    idle timeout; the people in use must keep their sessions after every single pass."""
    options = CruiseOptions.from_settings(cruiser.settings, cruiser.backend)
    passes = 0
    while True:
        await cruise_once(cruiser.store, cruiser.backend, options)
        passes += 1
        kept = await cruiser.store.get_many([STEADY, BUSY, IDLE])
        assert kept[STEADY] is not None, f"the active person was reclaimed (pass {passes})"
        assert kept[BUSY] is not None, f"the busy person was reclaimed (pass {passes})"
        if kept[IDLE] is None and time.time() >= not_before:
            return passes
        await asyncio.sleep(0.25)  # the cruiser's pace; a tight loop would starve the proxy
