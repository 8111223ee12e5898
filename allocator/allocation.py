"""Allocations: at most one allocation per person across every replica, and its progress.

The first request for a person without a session takes a Redis lock (with expiry, renewed
while the backend works) and allocates in a background task of this process. Every other
request for that person, here or in another replica, waits a little for the result and
otherwise gets the progress (allocating, starting, queued, failed).

While anyone waits for a GPU, a request does not try for itself: it joins the queue, and the
dispatcher (dispatch.py) allocates for the head (`serve_queued`). An attempt that finds no
capacity joins the queue too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from allocator import metrics
from allocator.cache import SessionCache
from allocator.events import Event, EventLog
from allocator.outlook import QueueOutlook
from allocator.pacing import Pacer
from allocator.quota import Quota
from allocator.settings import Settings
from allocator.store import SessionStore, StoreUnavailable
from allocator.types import (
    AllocationFailed,
    Backend,
    BackendError,
    NoCapacity,
    Person,
    Progress,
    Session,
    State,
)
from allocator.usage import UsageBook
from allocator.waitqueue import QUEUE_TOKEN, WaitQueue

log = logging.getLogger(__name__)

FINDING = "Finding a WebUI for you."
YOUR_TURN = "A GPU is free for you: starting your WebUI."
RESTARTED = "Your previous WebUI stopped, so you are getting a new one. Saved images are kept."
POLL_SECONDS = 0.2
CLOSE_SECONDS = 5.0
STEPS_PER_TURN = 2  # allocations that start per turn of the event loop (pacing.py)


Changed = Callable[[], None]


class Allocations:
    def __init__(
        self,
        store: SessionStore,
        backend: Backend,
        cache: SessionCache,
        settings: Settings,
        queue: WaitQueue | None = None,
        outlook: QueueOutlook | None = None,
        quota: Quota | None = None,
    ) -> None:
        self._store = store
        self._backend = backend
        self._cache = cache
        self._settings = settings
        self._queue = queue or WaitQueue(store)
        self._outlook = outlook or QueueOutlook(self._queue, store, settings)
        self.usage = UsageBook(store)
        self.events = EventLog(store)
        self.quota = quota or Quota.from_settings(settings, self.usage, self.events)
        self._tasks: dict[str, asyncio.Task[Session | None]] = {}
        self._pacer = Pacer(STEPS_PER_TURN)
        self.on_change: Changed = _nothing  # the queue may move: a GPU freed, someone queued

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
        refusal = await self.quota.refusal(email, time.time())
        if refusal is not None:
            return refusal
        deadline = time.monotonic() + wait
        while True:
            progress = await self._store.get_progress(email)
            restarted = restarted or (progress is not None and progress.restarted)
            task = self._tasks.get(email)
            if task is None and not self._settled(progress):
                began, task = await self._start(person, restarted)
                if began == "joined":  # their own WebUI may still run, its record lost
                    found = await self._still_running(person)
                    if found is not None:
                        return _told(found, restarted)
                if began in ("queued", "joined"):
                    return await self.queued(email, restarted)
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
            self.events.record_soon(email, Event(time.time(), "reattached", running.server))
            metrics.ALLOCATIONS.labels(result="reattached").inc()
            log.info("re-attached %s to %s", email, running.server)
            return running
        finally:
            if not saved:  # a save releases the lock itself
                await self._store.release_lock(email, token)

    async def _still_running(self, person: Person) -> Session | None:
        try:
            return await self.reattach(person)
        except BackendError as exc:
            log.warning("could not look for %s's own WebUI: %s", person.email, exc)
            return None

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

    async def queued(self, email: str, restarted: bool = False) -> Progress:
        """What a queued person is told: their place, and what it waits for."""
        spot = await self._outlook.spot(email)
        if spot is None:  # served or dropped between two looks: their next request tells
            return Progress(State.ALLOCATING, FINDING, time.time(), restarted)
        joined = await self._queue.joined_at(email)
        return Progress(
            State.QUEUED, self.waits_for(spot.starting), joined or time.time(), restarted, spot
        )

    def waits_for(self, starting: int) -> str:
        minutes = _minutes(self._settings.reclaim_after(queued=True))
        message = f"A GPU frees up when someone gives theirs back or is idle for {minutes}."
        if starting:
            machines = "a new GPU machine is" if starting == 1 else f"{starting} new WebUIs are"
            message += f" Meanwhile {machines} starting."
        return message

    async def serve_queued(self, person: Person, heads: int) -> str:
        """For the dispatcher: start allocating for `person`, one of the first `heads` in the
        queue. "ok", or why not: "exists" (has a WebUI: no longer waits), "over_quota" (used
        today's GPU hours meanwhile: taken out of the queue), "held" (something runs for them
        already), "not_head" (not among the first `heads` any more)."""
        email = person.email
        if email in self._tasks:
            return "held"
        if await self.quota.refusal(email, time.time()) is not None:  # the quota was lowered
            await self.leave_queue(email, "removed")
            return "over_quota"
        token = QUEUE_TOKEN + uuid.uuid4().hex
        first = Progress(State.ALLOCATING, YOUR_TURN, time.time())
        ttl = self._settings.allocation_lock_ttl
        began = await self._store.begin_allocation(
            email, token, ttl, first, self._progress_ttl, heads=heads
        )
        if began == "exists":
            await self._queue.leave(email)
        if began == "ok" and email in self._tasks:  # raced with ourselves
            await self._store.release_lock(email, token)
            return "held"
        if began == "ok":
            self._launch(person, token, restarted=False)
        return began

    async def _start(
        self, person: Person, restarted: bool
    ) -> tuple[str, asyncio.Task[Session | None] | None]:
        """Begin an allocation for a person's own request: ("ok", its task), or why not
        ("queued", "joined", "exists", "held") with the task this process already runs."""
        token = uuid.uuid4().hex
        first = Progress(State.ALLOCATING, FINDING, time.time(), restarted)
        began = await self._store.begin_allocation(
            person.email, token, self._settings.allocation_lock_ttl, first, self._progress_ttl
        )
        if began == "joined":
            self.events.record_soon(person.email, Event(time.time(), "queued"))
            self.on_change()
        if began != "ok":
            return began, None  # queued, a mapping appeared, or another replica allocates
        if person.email in self._tasks:  # raced with ourselves between the await points
            await self._store.release_lock(person.email, token)
            return "held", self._tasks[person.email]
        return began, self._launch(person, token, restarted)

    def _launch(self, person: Person, token: str, restarted: bool) -> asyncio.Task[Session | None]:
        task = asyncio.create_task(self._allocate(person, token, restarted), name="allocate")
        self._tasks[person.email] = task
        queued = token.startswith(QUEUE_TOKEN)
        task.add_done_callback(lambda ended: self._ended(ended, queued))
        return task

    def _ended(self, task: asyncio.Task[Session | None], queued: bool) -> None:
        """The queue may move when a queued person's allocation ends, or one that got no
        WebUI (no GPU free: its person queues; or it failed). One that succeeded, started
        while nobody waited, is no news for the queue."""
        if queued or task.cancelled() or task.exception() is not None or task.result() is None:
            self.on_change()

    async def _allocate(self, person: Person, token: str, restarted: bool) -> Session | None:
        started = time.monotonic()
        keeper = asyncio.create_task(self._keep_lock(person.email, token))
        result = "error"
        saved: Session | None = None
        told = False  # the progress shown says how this ended
        try:

            async def progress(state: State, message: str) -> None:
                await self._report(person, state, message, restarted)

            # In a storm, a few allocations start per turn of the loop: the requests of people
            # already working go on in between.
            await self._pacer.turn()
            placement = await self._backend.allocate(person, progress)
            session = Session(person.email, person.slug, self._backend.name, placement, time.time())
            told = True
            if await self._save(session, token, time.monotonic() - started):
                result, saved = "ok", session
            else:
                result = "lock_lost"
        except NoCapacity:
            result, told = "no_capacity", True
            await self._wait_in_queue(person, token)
        except AllocationFailed as exc:
            result, told = "failed", True
            log.warning("allocation for %s failed: %s", person.email, exc)
            await self._failed(person, str(exc), restarted)
        except StoreUnavailable as exc:
            log.warning("allocation for %s stopped, store unavailable: %s", person.email, exc)
        except Exception:
            told = True
            log.exception("allocation for %s failed unexpectedly", person.email)
            await self._failed(person, "Something went wrong; try again.", restarted)
        finally:
            keeper.cancel()
            metrics.ALLOCATIONS.labels(result=result).inc()
            metrics.ALLOCATION_SECONDS.observe(time.monotonic() - started)
            self._tasks.pop(person.email, None)
            if saved is None:  # a save releases the lock itself
                await self._abandon(person.email, token, clear_progress=not told)
        return saved

    async def _abandon(self, email: str, token: str, clear_progress: bool) -> None:
        """After an allocation that saved nothing (also when cancelled at shutdown): its lock
        goes, and so does a "starting" that would otherwise be shown for minutes."""
        with contextlib.suppress(Exception):  # StoreUnavailable, or a store closing
            if clear_progress:
                await self._store.clear_progress(email)
            await self._store.release_lock(email, token)

    async def _failed(self, person: Person, message: str, restarted: bool) -> None:
        """Show the failure; a queued person leaves the queue (one broken start does not hold
        up everyone behind them), and sees "Try again" on the failure page."""
        await self._report(person, State.FAILED, message, restarted)
        with contextlib.suppress(StoreUnavailable):
            await self.leave_queue(person.email, "failed")

    async def _wait_in_queue(self, person: Person, token: str) -> None:
        """No GPU for them now: they queue (keeping their place if queued already). When the
        dispatcher tried for them, only if they are still waiting (they may have left)."""
        from_queue = token if token.startswith(QUEUE_TOKEN) else ""
        with contextlib.suppress(StoreUnavailable):
            position = await self._queue.join(person.email, time.time(), lock_token=from_queue)
            await self._store.clear_progress(person.email)
            if position and not from_queue:
                event = Event(time.time(), "queued", position=position)
                self.events.record_soon(person.email, event)
            if position:
                log.info("no GPU free for %s: number %d in the queue", person.email, position)

    async def _save(self, session: Session, token: str, took: float) -> bool:
        """Record the allocation, unless this replica's lock was lost meanwhile (then the
        WebUI is given back, unless the winner recorded that very one)."""
        # On StoreUnavailable the WebUI is kept: it may be this person's re-attached one, still
        # in use, or the save may have landed; unrecorded, reconciliation finds it later.
        from_queue = token.startswith(QUEUE_TOKEN)
        joined = await self._queue.joined_at(session.email) if from_queue else None
        saved = await self._store.save(session, time.time(), lock_token=token)
        if saved:
            self._cache.put(session)
            log.info("allocated %s for %s", session.server, session.email)
            waited = time.time() - joined if joined is not None else None
            event = Event(time.time(), "allocated", session.server, seconds=took, waited=waited)
            self.events.record_soon(session.email, event)
            if joined is not None:
                metrics.QUEUE_SERVED.inc()
                metrics.QUEUE_WAIT_SECONDS.labels(outcome="served").observe(time.time() - joined)
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

    async def release(self, email: str, by: str = "released") -> bool:
        """Give the person's WebUI back now (`by`: "released", themselves, or "admin");
        False when they had none."""
        session = await self._store.get(email)
        if session is None:
            return False
        await self._backend.release(session)
        dropped = await self._store.drop(email, session.server)
        await self._store.clear_progress(email)  # given back on purpose: no stale notice
        self._cache.forget(email)
        log.info("released %s of %s (%s)", session.server, email, by)
        if dropped:  # else the cruiser took it meanwhile, and told them itself
            await self.events.record(email, Event(time.time(), "reclaimed", session.server, by))
            with contextlib.suppress(StoreUnavailable):
                await self.usage.count_reclaims({by: 1})
        await self.freed()
        return True

    async def leave_queue(self, email: str, outcome: str = "left") -> bool:
        """Take `email` out of the queue; False when they were not in it."""
        joined = await self._queue.joined_at(email)
        if not await self._queue.leave(email):
            return False
        if joined is not None:
            metrics.QUEUE_WAIT_SECONDS.labels(outcome=outcome).observe(time.time() - joined)
        log.info("%s left the queue (%s)", email, outcome)
        self.on_change()
        return True

    async def freed(self, count: int = 1) -> None:
        """WebUIs were given back: the queue may move, and estimates learn the turnover."""
        with contextlib.suppress(StoreUnavailable):
            await self._queue.record_freed(time.time(), count)
        self.on_change()

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
            restarted = Event(time.time(), "restarted", session.server, "refused")
            self.events.record_soon(person.email, restarted)
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
                self.events.record_soon(email, Event(time.time(), "restarted", server, "vanished"))
                gone = Progress(State.NONE, RESTARTED, time.time(), restarted=True)
                await self._store.set_progress(email, gone, self._settings.idle_timeout)
                await self.freed()
        except StoreUnavailable as exc:
            log.warning("could not drop the mapping of vanished %s: %s", server, exc)

    async def close(self) -> None:
        """Cancel the allocations under way; their records go (`_abandon`). Bounded: a task
        that does not end within CLOSE_SECONDS is left to the process's exit."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_SECONDS)
        await self.events.settled()


def _nothing() -> None:
    return None


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{round(seconds)} seconds"
    return f"{round(seconds / 60)} minutes"


def _told(session: Session, restarted: bool) -> Session | Progress:
    """After a restart, the first answer says so (and reloads into the new WebUI)."""
    if restarted:
        return Progress(State.READY, RESTARTED, time.time(), restarted=True)
    return session
