"""Gauges every replica refreshes from the store: sessions, GPU time, reclaims by reason, the
last cruiser pass and whether the store answers. Also where a replica counts the running
sessions' allocated time now and then, so the figures move while nobody's session ends, even
when the cruiser runs elsewhere (a Cloud Function's metrics are never scraped)."""

from __future__ import annotations

import asyncio
import logging
import time

from allocator import metrics
from allocator.store import SessionStore, StoreUnavailable
from allocator.usage import UsageBook

log = logging.getLogger(__name__)

GAUGE_SECONDS = 15.0
ACCRUE_SECONDS = 60.0


class StoreGauges:
    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._usage = UsageBook(store)
        self._accrued = float("-inf")  # monotonic time of the last accrual

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(GAUGE_SECONDS)

    async def refresh(self) -> None:
        try:
            metrics.ACTIVE_SESSIONS.set(await self._store.count())
            if time.monotonic() - self._accrued >= ACCRUE_SECONDS:
                await self._usage.accrue_all(time.time())
                self._accrued = time.monotonic()
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
