"""Reaper: one pass that gives back WebUIs nobody uses, and never one in use.

Candidates come from the store's activity index (idle longer than the timeout, or the shorter
pressure timeout while people wait for a GPU; cost grows with the idle count, not the total),
when a maximum age is set its allocation index, and with a daily quota (quota.py) the people
past it, given back once quiet for `quota_quiet` (judged after counting every session's time
so far: usage.py). Each reclaim and "kept" goes to the person's events (events.py), and each
pass leaves its time in the store for the "cruiser not running" alert.
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
from collections import Counter
from dataclasses import dataclass

from allocator import metrics
from allocator.events import Event, EventLog
from allocator.ledger import day_of
from allocator.quota import Quota
from allocator.settings import Settings, reclaim_after
from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Backend, BackendError, Session
from allocator.usage import UsageBook
from allocator.waitqueue import WaitQueue
from cruiser.reconcile import Reconciler
from cruiser.summary import Summary

log = logging.getLogger(__name__)

IDLE, PRESSURE, MAX_AGE, OVER_QUOTA = "idle", "pressure", "max_age", "over_quota"
BATCH = 500  # candidates read per round trip


@dataclass(frozen=True, slots=True)
class Candidate:
    """Why a session may go: `cutoff`, activity after it keeps the session (None: only a busy
    lease does); `seconds`, its idle time or age, for the person's event."""

    reason: str
    cutoff: float | None
    seconds: float


@dataclass(frozen=True)
class CruiseOptions:
    idle_timeout: float
    max_age: float = 0.0  # 0: off
    concurrency: int = 16
    orphan_grace: float = 600.0
    reconcile: bool = True
    dry_run: bool = False
    claim_ttl: float = 120.0  # longer than any one release may take
    pressure_idle_timeout: float = 0.0  # while people are queued; 0: off
    quiet: bool = False  # a pass that gave nothing back logs at debug level
    bookkeeping: bool = True  # count usage, judge quotas, record the pass (not pressure passes)
    quota_seconds: float = 0.0  # allocated per person per UTC day; 0: off
    quota_exempt: frozenset[str] = frozenset()
    quota_quiet: float = 90.0  # past the quota: given back after this long without a request

    @classmethod
    def from_settings(
        cls, settings: Settings, backend: Backend, dry_run: bool = False
    ) -> CruiseOptions:
        return cls(
            idle_timeout=settings.idle_timeout,
            pressure_idle_timeout=settings.pressure_idle_timeout,
            max_age=settings.max_session_age,
            concurrency=settings.cruise_concurrency,
            orphan_grace=settings.orphan_grace,
            dry_run=dry_run,
            claim_ttl=max(120.0, 4 * backend.release_timeout),
            quota_seconds=settings.daily_gpu_hours * 3600,
            quota_exempt=frozenset(settings.admins) | frozenset(settings.quota_exempt),
            quota_quiet=settings.quota_quiet,
        )


class Reaper:
    def __init__(self, store: SessionStore, backend: Backend, options: CruiseOptions) -> None:
        self._store = store
        self._backend = backend
        self._options = options
        self._token = uuid.uuid4().hex  # this pass's claims; another pass has its own
        self._usage = UsageBook(store)
        self._events = EventLog(store)
        self._quota = Quota(options.quota_seconds, options.quota_exempt, self._usage)

    async def run_pass(self) -> Summary:
        began = time.monotonic()
        summary = Summary(dry_run=self._options.dry_run)
        ended = "crashed"
        try:
            await self._reap(summary)
            if self._options.reconcile:
                reconciler = Reconciler(self._store, self._backend, self._options)
                await reconciler.run(summary)
            ended = "done"
        except asyncio.CancelledError:  # shutdown: neither a pass nor a failure
            ended = "cancelled"
            raise
        finally:
            summary.seconds = time.monotonic() - began
            metrics.CRUISE_SECONDS.observe(summary.seconds)
            if summary.failed:
                metrics.CRUISE_FAILURES.inc(summary.failed)
            if self._options.bookkeeping and not self._options.dry_run and ended != "cancelled":
                await self._record_pass(summary.failed + (ended == "crashed"))
        quiet = self._options.quiet and not (summary.reclaimed or summary.failed)
        log.log(logging.DEBUG if quiet else logging.INFO, "cruise pass: %s", summary.line())
        return summary

    async def _record_pass(self, failures: int) -> None:
        """For the "cruiser not running or failing" alerts, whichever process runs passes; a
        pass that ended in an error counts as a failure."""
        try:
            await self._usage.record_pass(time.time(), failures)
        except StoreUnavailable as exc:
            log.warning("could not record the cruise pass: %s", exc)

    async def _reap(self, summary: Summary) -> None:
        now = time.time()
        options = self._options
        if options.pressure_idle_timeout > 0:
            summary.queued = await WaitQueue(self._store).unserved()
        after = reclaim_after(options.idle_timeout, options.pressure_idle_timeout, summary.queued)
        cutoff, idle_cutoff = now - after, now - options.idle_timeout
        candidates = {
            email: Candidate(IDLE if stamp <= idle_cutoff else PRESSURE, cutoff, now - stamp)
            for email, stamp in await self._store.idle(cutoff)
        }
        if self._options.max_age > 0:
            for email, _ in await self._store.allocated_before(now - self._options.max_age):
                candidates[email] = Candidate(MAX_AGE, None, self._options.max_age)
        if options.bookkeeping and options.quota_seconds > 0:
            for email in self._quota.over(await self._used_today(now)):
                quiet_since = now - options.quota_quiet
                candidates.setdefault(email, Candidate(OVER_QUOTA, quiet_since, 0.0))
        summary.candidates = len(candidates)
        emails = list(candidates)
        for start in range(0, len(emails), BATCH):
            await self._reap_batch(emails[start : start + BATCH], candidates, summary)

    async def _used_today(self, now: float) -> dict[str, float]:
        """Every session's allocated time today, counted up to now first (a dry run counts
        nothing: it reads what is counted already). Not known: no quota judged this pass,
        the idle still go."""
        try:
            if not self._options.dry_run:
                return await self._usage.accrue_all(now)
            today = day_of(now)
            running = set(await self._store.emails())
            rows = await self._usage.days(today, today)
            return {row.email: row.allocated for row in rows if row.email in running}
        except StoreUnavailable as exc:
            log.warning("quotas not judged this pass: %s", exc)
            return {}

    async def _reap_batch(
        self, emails: list[str], candidates: dict[str, Candidate], summary: Summary
    ) -> None:
        found = await self._store.get_many(emails)
        for email in (email for email, session in found.items() if session is None):
            await self._store.forget_unmapped(email)
        sessions = [session for session in found.values() if session is not None]
        # Claimed right before their release, as many as are released at once: activity that
        # arrives while earlier releases run still saves a session.
        step = self._options.concurrency
        for start in range(0, len(sessions), step):
            await self._reap_chunk(sessions[start : start + step], candidates, summary)

    async def _reap_chunk(
        self, sessions: list[Session], candidates: dict[str, Candidate], summary: Summary
    ) -> None:
        """Claims in one round trip, releases in parallel, drops in one round trip."""
        cutoffs = [(session, candidates[session.email].cutoff) for session in sessions]
        now = time.time()
        outcomes = await self._store.claim_reaps(cutoffs, now, self._token, self._options.claim_ttl)
        claimed, kept = [], []
        for session, outcome in zip(sessions, outcomes, strict=True):
            summary.kept_active += outcome == "active"
            summary.kept_busy += outcome == "busy"
            if outcome in ("active", "busy"):
                kept.append((session.email, Event(now, "kept", session.server, outcome)))
            if outcome == "ok":
                claimed.append(session)
        if self._options.bookkeeping and not self._options.dry_run:
            await self._events.record_many(kept)
        if self._options.dry_run:
            summary.would_reclaim += len(claimed)
            for session in claimed:
                log.info("dry run: would reclaim %s of %s", session.server, session.email)
            await self._store.finish_reaps(claimed, self._token, dropped=False)
            return
        released, failed = await self._release_all(claimed, summary)
        await self._store.finish_reaps(released, self._token, dropped=True)
        await self._store.finish_reaps(failed, self._token, dropped=False)
        await self._tell(released, candidates)
        summary.reclaimed += len(released)
        if released:  # the queue moves on; estimates learn the turnover
            await WaitQueue(self._store).record_freed(time.time(), len(released))

    async def _tell(self, released: list[Session], candidates: dict[str, Candidate]) -> None:
        """Metrics, logs, the store-wide counts and each person's event."""
        events, now = [], time.time()
        for session in released:
            why = candidates[session.email]
            metrics.RECLAIMED.labels(reason=why.reason).inc()
            log.info("reclaimed %s of %s (%s)", session.server, session.email, why.reason)
            event = Event(now, "reclaimed", session.server, why.reason, seconds=why.seconds)
            events.append((session.email, event))
        await self._events.record_many(events)
        try:
            await self._usage.count_reclaims(Counter(candidates[s.email].reason for s in released))
        except StoreUnavailable as exc:  # only the store-wide count misses them
            log.warning("could not count %d reclaim(s): %s", len(released), exc)

    async def _release_all(
        self, sessions: list[Session], summary: Summary
    ) -> tuple[list[Session], list[Session]]:
        """Release through the backend, at most `concurrency` at once: (released, failed)."""
        limit = asyncio.Semaphore(self._options.concurrency)

        async def release(session: Session) -> bool:
            async with limit:
                try:
                    await self._backend.release(session)
                    return True
                except (BackendError, OSError) as exc:
                    log.warning(
                        "could not reclaim %s of %s: %s", session.server, session.email, exc
                    )
                    summary.fail(session.email, session.server, str(exc))
                    return False

        done = await asyncio.gather(*(release(session) for session in sessions))
        released = [s for s, ok in zip(sessions, done, strict=True) if ok]
        failed = [s for s, ok in zip(sessions, done, strict=True) if not ok]
        return released, failed


async def cruise_once(store: SessionStore, backend: Backend, options: CruiseOptions) -> Summary:
    """One pass; a store that cannot be reached is a failed pass, not a crash."""
    try:
        return await Reaper(store, backend, options).run_pass()
    except StoreUnavailable as exc:
        log.warning("cruise pass stopped: store unavailable: %s", exc)
        summary = Summary(dry_run=options.dry_run)
        summary.fail("", "", f"store unavailable: {exc}")
        return summary
