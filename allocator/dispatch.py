"""Dispatcher: hands freed GPUs to the queue's head, in order, whichever replica sees it.

Every replica runs one. While anyone waits, each wakes about once a second (at once when this
process saw a GPU freed or someone queued) and tries to take the turn: a short Redis lock, so
one replica at a time decides. The one deciding drops the abandoned, reclaims sessions idle
past the pressure timeout, asks the backend how many WebUIs are free and starts allocations
for exactly that many heads, in queue order, minus those already running for heads. Heads are
allocated for whether or not they are polling; their next request finds the WebUI.
When the backend cannot tell how many are free, the head alone is tried, after a give-back
anywhere or every SDA_NO_CAPACITY_RETRY seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from allocator import metrics
from allocator.allocation import Allocations
from allocator.settings import Settings
from allocator.slugs import slug_for
from allocator.store import StoreUnavailable
from allocator.types import Backend, BackendError, Person
from allocator.waitqueue import Head, WaitQueue

log = logging.getLogger(__name__)

WAITING_TICK = 1.0  # seconds between looks while anyone waits
IDLE_TICK = 5.0  # ... and while nobody does (a join in this process wakes it at once)
TURN_TTL = 60.0  # longer than one turn takes (reclaims included)
HEAD_WINDOW = 64  # heads looked at per turn
STARTING_TTL = 15.0

PressurePass = Callable[[], Awaitable[None]]


class Dispatcher:
    def __init__(
        self,
        queue: WaitQueue,
        backend: Backend,
        allocations: Allocations,
        settings: Settings,
        pressure_pass: PressurePass | None = None,
    ) -> None:
        self._queue = queue
        self._backend = backend
        self._allocations = allocations
        self._settings = settings
        self._pressure_pass = pressure_pass
        self._wake = asyncio.Event()
        self._waiting = False
        self._probed_at = 0.0  # when the head was last tried on a backend that cannot count
        self._reattach_checked = 0.0  # when the head was last looked for a WebUI of their own
        self.turns = 0  # turns this replica decided (tests wait for them)
        allocations.on_change = self.poke

    def poke(self) -> None:
        """Something changed here (a give-back, someone queued): look now."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            tick = WAITING_TICK if self._waiting else IDLE_TICK
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)
            self._wake.clear()
            try:
                await self.turn()
            except StoreUnavailable as exc:
                log.debug("queue not served this time: store unavailable: %s", exc)
            except Exception:
                log.exception("serving the queue failed")

    async def turn(self) -> None:
        """One look at the queue; decides only if no other replica is deciding right now."""
        length = await self._queue.length()
        metrics.QUEUE_LENGTH.set(length)
        self._waiting = length > 0
        if not length:
            return
        token = uuid.uuid4().hex
        if not await self._queue.take_turn(token, TURN_TTL):
            return
        try:
            self.turns += 1
            await self._drop_abandoned()
            await self._reclaim_under_pressure()
            await self._serve()
        finally:
            await self._queue.end_turn(token)

    async def _drop_abandoned(self) -> None:
        now = time.time()
        silence = self._settings.queue_abandon
        for email, joined in await self._queue.drop_abandoned(now - silence):
            metrics.QUEUE_WAIT_SECONDS.labels(outcome="abandoned").observe(now - joined)
            log.info("%s lost their place in the queue: no request for %.0f s", email, silence)

    async def _reclaim_under_pressure(self) -> None:
        """A failed pass must not keep the queue from being served."""
        if self._pressure_pass is None or self._settings.pressure_idle_timeout <= 0:
            return
        try:
            await self._pressure_pass()
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("reclaiming under pressure failed; serving the queue all the same")

    async def _serve(self) -> None:
        capacity = await self._backend.capacity()
        await self._queue.set_starting(capacity.starting, STARTING_TTL)
        heads = await self._queue.heads(HEAD_WINDOW)
        room = await self._room(capacity.free, heads)
        if room <= 0:
            await self._reattach_head(heads)
            return
        started = 0
        for rank, head in enumerate(heads):
            if started == room:
                return
            if head.allocating:
                continue
            person = Person(head.email, slug_for(head.email))
            # Only while still among the first rank + 1: nobody behind is served first.
            began = await self._allocations.serve_queued(person, rank + 1)
            if began == "ok":
                started += 1
            elif began not in ("exists", "over_quota"):  # something runs for them: next turn
                return

    async def _room(self, free: int | None, heads: list[Head]) -> int:
        """How many more heads to start allocating for. A backend's free count already
        leaves out WebUIs handed out to allocations under way (claimed), not the ones about
        to be."""
        if free is not None:
            return free - sum(head.allocating and not head.claimed for head in heads)
        if any(head.allocating for head in heads):
            return 0
        last_freed = await self._queue.freed_since(self._probed_at)
        now = time.time()
        if last_freed or now - self._probed_at >= self._settings.no_capacity_retry:
            self._probed_at = now
            return 1
        return 0

    async def _reattach_head(self, heads: list[Head]) -> None:
        """The head may still have their own WebUI from an allocation whose result was never
        recorded (a replica stopped in between): give it back to them rather than wait for a
        free one. Looked for at most every SDA_NO_CAPACITY_RETRY seconds."""
        if not heads or heads[0].allocating:
            return
        now = time.time()
        if now - self._reattach_checked < self._settings.no_capacity_retry:
            return
        self._reattach_checked = now
        email = heads[0].email
        try:
            found = await self._allocations.reattach(Person(email, slug_for(email)))
        except BackendError as exc:
            log.debug("could not look for %s's own WebUI: %s", email, exc)
            return
        if found is not None:
            log.info("gave %s their own running WebUI back from the queue", email)
