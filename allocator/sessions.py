"""Sessions: the request path's one question, "which WebUI serves this person right now?".

A page load or API call may start an allocation (and waits a little for it); a heartbeat
never does; a WebSocket re-attaches the person's own still-running WebUI when the store lost
its mapping, but never starts one. Raises StoreUnavailable when the store cannot answer.
"""

from __future__ import annotations

import time

from allocator.allocation import Allocations
from allocator.cache import SessionCache
from allocator.types import Person, Progress, Session, State

NO_SESSION = "You have no WebUI right now. Reload the page to get one."


class Sessions:
    def __init__(self, cache: SessionCache, allocations: Allocations, wait: float) -> None:
        self._cache = cache
        self._allocations = allocations
        self._wait = wait

    async def for_request(self, person: Person, allocate: bool) -> Session | Progress:
        """The person's session, or what is happening instead (after waiting up to
        SDA_ALLOCATION_WAIT for an allocation this request started or joined)."""
        session = await self._cache.lookup(person.email)
        if session is not None:
            return session
        if not allocate:
            return Progress(State.NONE, NO_SESSION, time.time())
        return await self._allocations.allocate_or_wait(person, self._wait)

    async def for_websocket(self, person: Person) -> Session | None:
        session = await self._cache.lookup(person.email)
        if session is not None:
            return session
        return await self._allocations.reattach(person)

    async def after_failure(
        self, person: Person, session: Session, allocate: bool
    ) -> Progress | None:
        """The WebUI refused or broke a request: None while it still exists; otherwise its
        mapping is gone and the answer says what happens next."""
        return await self._allocations.recover(person, session, allocate)
