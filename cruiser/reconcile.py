"""Reconciler: make the backend and the store agree, both ways.

- An orphan is a WebUI the backend runs for someone (an Agones GameServer with our label, a
  local process) that no mapping names, for instance because the response to its allocation
  was lost. Once older than the grace period (longer than any allocation takes) it is
  released, under the person's allocation lock so a concurrent allocation cannot re-attach it
  in the middle.
- A stale mapping names a WebUI the backend no longer runs. It is dropped after the backend
  confirms, for that one WebUI, that it is gone.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING

from allocator import metrics
from allocator.events import Event, EventLog
from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Backend, BackendError, Session
from allocator.usage import UsageBook
from cruiser.summary import Summary

if TYPE_CHECKING:
    from cruiser.reaper import CruiseOptions

log = logging.getLogger(__name__)

LOCK_SECONDS = 60.0


class Reconciler:
    def __init__(self, store: SessionStore, backend: Backend, options: CruiseOptions) -> None:
        self._store = store
        self._backend = backend
        self._options = options

    async def run(self, summary: Summary) -> None:
        try:
            running = await self._backend.inventory()
        except BackendError as exc:
            log.warning("reconciliation skipped: %s", exc)
            summary.fail("", "", str(exc))
            return
        for session in running:
            await self._check_orphan(session, summary)
        servers = {session.server for session in running}
        for email, backend, server in await self._store.mapped_servers():
            if backend == self._backend.name and server not in servers:
                mapped = await self._store.get(email)  # the whole record, for these few
                if mapped is not None and mapped.server == server:
                    await self._check_stale(mapped, summary)

    async def _check_orphan(self, running: Session, summary: Summary) -> None:
        if time.time() - running.allocated_at < self._options.orphan_grace:
            return
        mapped = await self._store.get(running.email)
        if mapped is not None and mapped.server == running.server:
            return
        token = uuid.uuid4().hex
        if not await self._store.acquire_lock(running.email, token, LOCK_SECONDS):
            return  # an allocation for this person is under way: look again next pass
        try:
            mapped = await self._store.get(running.email)
            if mapped is not None and mapped.server == running.server:
                return
            if await self._store.busy_now(running.email, time.time()):
                # Work still runs on it (its mapping was lost, e.g. Redis failed over): the
                # next request re-attaches it; deleting it would cut that work off.
                log.warning("unmapped %s of %s is busy; kept", running.server, running.email)
                return
            if self._options.dry_run:
                log.info("dry run: would delete orphan %s of %s", running.server, running.email)
                return
            await self._backend.release(running)
            summary.orphans_deleted += 1
            metrics.RECLAIMED.labels(reason="orphan").inc()
            await self._tell(running, "orphan")
            log.warning("deleted orphan %s of %s (no mapping)", running.server, running.email)
        except BackendError as exc:
            summary.fail(running.email, running.server, f"orphan: {exc}")
        finally:
            await self._store.release_lock(running.email, token)

    async def _check_stale(self, mapped: Session, summary: Summary) -> None:
        if await self._backend.is_alive(mapped):
            return  # allocated after the inventory was taken, or the inventory missed it
        if self._options.dry_run:
            log.info("dry run: would drop stale mapping %s of %s", mapped.server, mapped.email)
            return
        if await self._store.drop(mapped.email, mapped.server):
            summary.stale_mappings_dropped += 1
            metrics.RECLAIMED.labels(reason="stale").inc()
            await self._tell(mapped, "stale")
            log.warning("dropped stale mapping %s of %s", mapped.server, mapped.email)

    async def _tell(self, session: Session, reason: str) -> None:
        """The person's event and the store-wide count; neither may stop reconciliation."""
        await EventLog(self._store).record(
            session.email, Event(time.time(), "reclaimed", session.server, reason)
        )
        with contextlib.suppress(StoreUnavailable):
            await UsageBook(self._store).count_reclaims({reason: 1})
