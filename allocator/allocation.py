"""Allocations: at most one allocation per person across every replica, and its progress.

The first request for a person without a session takes a Redis lock (with expiry, renewed
while the backend works) and allocates in a background task of this process. Every other
request for that person, here or in another replica, waits a little for the result and
otherwise gets the progress (allocating, starting, all GPUs busy, failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from allocator import metrics
from allocator.cache import SessionCache
from allocator.settings import Settings
from allocator.store import SessionStore, StoreUnavailable
from allocator.types import (
    AllocationFailed,
    Backend,
    NoCapacity,
    Person,
    Progress,
    Session,
    State,
)

log = logging.getLogger(__name__)

FINDING = "Finding a WebUI for you."
ALL_BUSY = (
    "All GPUs are busy. Your WebUI starts as soon as one is free; this page refreshes by itself."
)
RESTARTED = "Your previous WebUI stopped, so you are getting a new one. Saved images are kept."
POLL_SECONDS = 0.2


class Allocations:
    def __init__(
        self, store: SessionStore, backend: Backend, cache: SessionCache, settings: Settings
    ) -> None:
        self._store = store
        self._backend = backend
        self._cache = cache
        self._settings = settings
        self._tasks: dict[str, asyncio.Task[Session | None]] = {}

    async def ensure(
        self, person: Person, wait: float, restarted: bool = False
    ) -> Session | Progress:
        """The person's session, allocating one if needed; progress if not ready within `wait`."""
        session = await self._store.get(person.email)
        if session is not None:
            self._cache.put(session)
            return session
        return await self.allocate_or_wait(person, wait, restarted)

    async def allocate_or_wait(
        self, person: Person, wait: float, restarted: bool = False
    ) -> Session | Progress:
        """For someone just found without a mapping: start their allocation (or join the one
        in flight, here or in another replica) and wait up to `wait` for its result.

        After a restart the person is told, even when the new WebUI is ready at once: the
        answer is then a READY progress (a page that says so and reloads), not the session."""
        email = person.email
        deadline = time.monotonic() + wait
        while True:
            progress = await self._store.get_progress(email)
            restarted = restarted or (progress is not None and progress.restarted)
            task = self._tasks.get(email)
            if task is None and not self._settled(progress):
                task = await self._start(person, restarted)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (task is None and self._settled(progress)):
                return progress or Progress(State.ALLOCATING, FINDING, time.time(), restarted)
            session: Session | None = None
            if task is not None:
                await asyncio.wait({task}, timeout=remaining)
                if task.done() and not task.cancelled():
                    session = task.result()
            else:  # a mapping appeared meanwhile, or another replica is allocating
                session = await self._store.get(email)
                if session is None:
                    await asyncio.sleep(min(POLL_SECONDS, remaining))
            if session is not None:
                self._cache.put(session)
                return _told(session, restarted)

    async def reattach(self, person: Person) -> Session | None:
        """The person's own WebUI, still running though the store lost its mapping (Redis
        flushed or failed over), recorded again; None when they have none. Never starts one.
        Under the allocation lock, as the cruiser's orphan check is: it cannot delete the
        WebUI between our look and our save, and an allocation in flight is left alone."""
        email, token = person.email, uuid.uuid4().hex
        if not await self._store.acquire_lock(email, token, self._settings.allocation_lock_ttl):
            return None  # an allocation is in flight: its result is theirs when it lands
        saved = False
        try:
            mapped = await self._store.get(email)
            if mapped is not None:
                self._cache.put(mapped)
                return mapped
            running = await self._backend.find_running(person)
            if running is None:
                return None
            saved = await self._store.save(running, time.time(), lock_token=token)
            if not saved:
                return None
            self._cache.put(running)
            metrics.ALLOCATIONS.labels(result="reattached").inc()
            log.info("re-attached %s to %s", email, running.server)
            return running
        finally:
            if not saved:  # a save releases the lock itself
                await self._store.release_lock(email, token)

    def _settled(self, progress: Progress | None) -> bool:
        """A recent failure or 'no capacity' that should be shown, not retried yet."""
        if progress is None:
            return False
        age = time.time() - progress.since
        if progress.state is State.NO_CAPACITY:
            return age < self._settings.no_capacity_retry
        if progress.state is State.FAILED:
            return age < self._settings.failure_retry
        return False

    async def _start(self, person: Person, restarted: bool) -> asyncio.Task[Session | None] | None:
        token = uuid.uuid4().hex
        first = Progress(State.ALLOCATING, FINDING, time.time(), restarted)
        began = await self._store.begin_allocation(
            person.email, token, self._settings.allocation_lock_ttl, first, self._progress_ttl
        )
        if began != "ok":
            return None  # a mapping appeared, or another replica is allocating
        if person.email in self._tasks:  # raced with ourselves between the await points
            await self._store.release_lock(person.email, token)
            return self._tasks[person.email]
        task = asyncio.create_task(self._allocate(person, token, restarted), name="allocate")
        self._tasks[person.email] = task
        return task

    async def _allocate(self, person: Person, token: str, restarted: bool) -> Session | None:
        started = time.monotonic()
        keeper = asyncio.create_task(self._keep_lock(person.email, token))
        result = "error"
        saved: Session | None = None
        try:

            async def progress(state: State, message: str) -> None:
                await self._report(person, state, message, restarted)

            placement = await self._backend.allocate(person, progress)
            session = Session(person.email, person.slug, self._backend.name, placement, time.time())
            if await self._save(session, token):
                result, saved = "ok", session
            else:
                result = "lock_lost"
        except NoCapacity:
            result = "no_capacity"
            await self._report(person, State.NO_CAPACITY, ALL_BUSY, restarted)
        except AllocationFailed as exc:
            result = "failed"
            log.warning("allocation for %s failed: %s", person.email, exc)
            await self._report(person, State.FAILED, str(exc), restarted)
        except StoreUnavailable as exc:
            log.warning("allocation for %s stopped, store unavailable: %s", person.email, exc)
        except Exception:
            log.exception("allocation for %s failed unexpectedly", person.email)
            await self._report(person, State.FAILED, "Something went wrong; try again.", restarted)
        finally:
            keeper.cancel()
            metrics.ALLOCATIONS.labels(result=result).inc()
            metrics.ALLOCATION_SECONDS.observe(time.monotonic() - started)
            self._tasks.pop(person.email, None)
            if saved is None:  # a save releases the lock itself
                with contextlib.suppress(StoreUnavailable):
                    await self._store.release_lock(person.email, token)
        return saved

    async def _save(self, session: Session, token: str) -> bool:
        """Record the allocation, unless this replica's lock was lost meanwhile (then the
        WebUI is given back, unless the winner recorded that very one)."""
        # On StoreUnavailable the WebUI is kept: it may be this person's re-attached one, still
        # in use, or the save may have landed; unrecorded, reconciliation finds it later.
        saved = await self._store.save(session, time.time(), lock_token=token)
        if saved:
            self._cache.put(session)
            log.info("allocated %s for %s", session.server, session.email)
            return True
        winner = await self._store.get(session.email)
        log.warning(
            "allocation lock for %s was lost; not recording %s", session.email, session.server
        )
        if winner is None or winner.server != session.server:
            await self._backend.release(session)
        return False

    @property
    def _progress_ttl(self) -> float:
        return self._settings.start_timeout + self._settings.allocation_lock_ttl

    async def _report(self, person: Person, state: State, message: str, restarted: bool) -> None:
        progress = Progress(state, message, time.time(), restarted)
        with contextlib.suppress(StoreUnavailable):
            await self._store.set_progress(person.email, progress, self._progress_ttl)

    async def _keep_lock(self, email: str, token: str) -> None:
        ttl = self._settings.allocation_lock_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if not await self._store.renew_lock(email, token, ttl):
                    log.warning("allocation lock for %s was lost while allocating", email)
                    return
            except StoreUnavailable as exc:
                log.warning("could not renew allocation lock for %s: %s", email, exc)

    async def release(self, email: str) -> bool:
        """Give the person's WebUI back now; False when they had none."""
        session = await self._store.get(email)
        if session is None:
            return False
        await self._backend.release(session)
        await self._store.drop(email, session.server)
        await self._store.clear_progress(email)  # given back on purpose: no stale notice
        self._cache.forget(email)
        log.info("released %s of %s", session.server, email)
        return True

    async def recover(
        self, person: Person, session: Session, allocate: bool = True
    ) -> Progress | None:
        """The WebUI refused or failed a request. None if it still exists (just not answering);
        otherwise the mapping is dropped and, when `allocate`, a new allocation started."""
        if await self._backend.is_alive(session):
            return None
        self._cache.forget(person.email)
        if await self._store.drop(person.email, session.server):
            log.warning("WebUI %s of %s is gone", session.server, person.email)
            metrics.RESTARTS.inc()
            with contextlib.suppress(Exception):
                await self._backend.release(session)
        if not allocate:
            return Progress(State.NONE, RESTARTED, time.time(), restarted=True)
        outcome = await self.ensure(person, self._settings.allocation_wait, restarted=True)
        if isinstance(outcome, Session):  # another request re-allocated already
            return Progress(State.READY, RESTARTED, time.time(), restarted=True)
        return outcome

    async def forget_gone(self, email: str, server: str) -> None:
        """The backend saw `server` vanish: drop its mapping now, tell the person next time."""
        self._cache.forget(email)
        try:
            if await self._store.being_reaped(email):
                return  # the cruiser gave it back; that is not news to report as a restart
            if await self._store.drop(email, server):
                metrics.RESTARTS.inc()
                gone = Progress(State.NONE, RESTARTED, time.time(), restarted=True)
                await self._store.set_progress(email, gone, self._settings.idle_timeout)
        except StoreUnavailable as exc:
            log.warning("could not drop the mapping of vanished %s: %s", server, exc)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _told(session: Session, restarted: bool) -> Session | Progress:
    """After a restart, the first answer says so (and reloads into the new WebUI)."""
    if restarted:
        return Progress(State.READY, RESTARTED, time.time(), restarted=True)
    return session
