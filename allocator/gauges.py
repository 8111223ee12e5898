"""Gauges every replica refreshes from the store: sessions, GPU time, reclaims by reason, the
last cruiser pass and whether the store answers. Also where the running sessions' allocated
time is counted about once a minute (by whichever replica comes first), so the figures move
while nobody's session ends, wherever the cruiser runs."""

from __future__ import annotations

import asyncio
import logging
import time

from allocator import metrics
from allocator.store import SessionStore, StoreUnavailable
from allocator.usage import UsageBook

log = logging.getLogger(__name__)

GAUGE_SECONDS = 15.0


class StoreGauges:
    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._usage = UsageBook(store)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug here must not end the gauges for the process's life
                log.exception("store gauges not refreshed")
            await asyncio.sleep(GAUGE_SECONDS)

    async def refresh(self) -> None:
        try:
            metrics.ACTIVE_SESSIONS.set(await self._store.count())
            await self._usage.accrue_all_if_due(time.time())
            totals = await self._usage.totals()
        except StoreUnavailable as exc:
            metrics.STORE_UP.set(0)
            log.debug("store gauges not refreshed: %s", exc)
            return
        metrics.STORE_UP.set(1)
        metrics.GPU_ALLOCATED_SECONDS.labels(scope="store").set(totals.allocated)
        metrics.GPU_BUSY_SECONDS.labels(scope="store").set(totals.busy)
        for reason, count in totals.reclaims.items():
            metrics.RECLAIMS.labels(reason=reason).set(count)
        if totals.last_pass is not None:
            metrics.CRUISE_LAST_PASS.set(totals.last_pass)
        metrics.CRUISE_LAST_FAILURES.set(totals.last_failures)
