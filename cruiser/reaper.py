"""Reaper: one pass that gives back WebUIs nobody uses, and never one in use.

Candidates come from the store's activity index (idle longer than the timeout; cost grows
with the idle count, not the total) and, when a maximum age is set, its allocation index.
Each is re-checked and claimed atomically in Redis right before its release: activity that
arrived during the pass, a busy lease (a generation, an open stream) or another pass's claim
keeps it. The WebUI is released first and the mapping removed after, so a failed release
leaves the session for the next pass. Then both directions are reconciled (see reconcile.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from allocator import metrics
from allocator.settings import Settings
from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Backend, BackendError
from cruiser.reconcile import Reconciler
from cruiser.summary import Summary

log = logging.getLogger(__name__)

IDLE, MAX_AGE = "idle", "max_age"


@dataclass(frozen=True)
class CruiseOptions:
    idle_timeout: float
    max_age: float = 0.0  # 0: off
    concurrency: int = 16
    orphan_grace: float = 600.0
    reconcile: bool = True
    dry_run: bool = False
    claim_ttl: float = 120.0  # longer than any one release may take

    @classmethod
    def from_settings(cls, settings: Settings, dry_run: bool = False) -> CruiseOptions:
        return cls(
            idle_timeout=settings.idle_timeout,
            max_age=settings.max_session_age,
            concurrency=settings.cruise_concurrency,
            orphan_grace=settings.orphan_grace,
            dry_run=dry_run,
            claim_ttl=max(120.0, 4 * settings.kube_timeout),
        )


class Reaper:
    def __init__(self, store: SessionStore, backend: Backend, options: CruiseOptions) -> None:
        self._store = store
        self._backend = backend
        self._options = options
        self._token = uuid.uuid4().hex  # this pass's claims; another pass has its own

    async def run_pass(self) -> Summary:
        began = time.monotonic()
        summary = Summary(dry_run=self._options.dry_run)
        try:
            await self._reap(summary)
            if self._options.reconcile:
                reconciler = Reconciler(self._store, self._backend, self._options)
                await reconciler.run(summary)
        finally:
            summary.seconds = time.monotonic() - began
            metrics.CRUISE_SECONDS.observe(summary.seconds)
            if summary.failed:
                metrics.CRUISE_FAILURES.inc(summary.failed)
        log.info("cruise pass: %s", summary.line())
        return summary

    async def _reap(self, summary: Summary) -> None:
        now = time.time()
        cutoff = now - self._options.idle_timeout
        candidates = {email: IDLE for email, _ in await self._store.idle(cutoff)}
        if self._options.max_age > 0:
            for email, _ in await self._store.allocated_before(now - self._options.max_age):
                candidates[email] = MAX_AGE
        summary.candidates = len(candidates)
        limit = asyncio.Semaphore(self._options.concurrency)

        async def one(email: str, reason: str) -> None:
            async with limit:
                await self._reap_one(email, reason, cutoff, summary)

        await asyncio.gather(*(one(email, reason) for email, reason in candidates.items()))

    async def _reap_one(self, email: str, reason: str, cutoff: float, summary: Summary) -> None:
        session = await self._store.get(email)
        if session is None:
            await self._store.drop(email)  # an index entry without a mapping: tidy it
            return
        outcome = await self._store.claim_reap(
            session, cutoff, time.time(), self._token, self._options.claim_ttl, reason == MAX_AGE
        )
        if outcome == "active":
            summary.kept_active += 1
        elif outcome == "busy":
            summary.kept_busy += 1
        if outcome != "ok":
            return
        if self._options.dry_run:
            summary.would_reclaim += 1
            log.info("dry run: would reclaim %s of %s (%s)", session.server, email, reason)
            await self._store.release_reap(email, self._token)
            return
        try:
            await self._backend.release(session)
        except (BackendError, OSError) as exc:
            log.warning("could not reclaim %s of %s: %s", session.server, email, exc)
            summary.fail(email, session.server, str(exc))
            await self._store.release_reap(email, self._token)
            return
        await self._store.drop(email, session.server)
        await self._store.release_reap(email, self._token)
        summary.reclaimed += 1
        metrics.RECLAIMED.labels(reason=reason).inc()
        log.info("reclaimed %s of %s (%s)", session.server, email, reason)


async def cruise_once(store: SessionStore, backend: Backend, options: CruiseOptions) -> Summary:
    """One pass; a store that cannot be reached is a failed pass, not a crash."""
    try:
        return await Reaper(store, backend, options).run_pass()
    except StoreUnavailable as exc:
        log.warning("cruise pass stopped: store unavailable: %s", exc)
        summary = Summary(dry_run=options.dry_run)
        summary.fail("", "", f"store unavailable: {exc}")
        return summary
