"""SessionCache: the hot path's view of the store, a few seconds stale at most.

While the store is unreachable, people it knew keep being served from here for
`outage_grace` seconds; everyone else gets a clear 503.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Session

STORE_RETRY_SECONDS = 1.0  # after a failure, lookups skip the store this long


@dataclass(slots=True)
class _Entry:
    session: Session
    fetched: float


class SessionCache:
    def __init__(self, store: SessionStore, ttl: float, outage_grace: float) -> None:
        self._store = store
        self._ttl = ttl
        self._grace = outage_grace
        self._entries: dict[str, _Entry] = {}
        self._prune_at = 1024
        self._store_down_until = 0.0

    async def lookup(self, email: str) -> Session | None:
        now = time.monotonic()
        entry = self._entries.get(email)
        if entry is not None and now - entry.fetched < self._ttl:
            return entry.session
        try:
            if now < self._store_down_until:  # don't wait on a store that just failed
                raise StoreUnavailable("the store failed moments ago")
            session = await self._store.get(email)
        except StoreUnavailable:
            self._store_down_until = max(self._store_down_until, now + STORE_RETRY_SECONDS)
            if entry is not None and now - entry.fetched < self._grace:
                return entry.session
            raise
        if session is None:
            self._entries.pop(email, None)
        else:
            self.put(session, now)
        return session

    def put(self, session: Session, now: float | None = None) -> None:
        self._entries[session.email] = _Entry(session, now or time.monotonic())
        if len(self._entries) > self._prune_at:
            self._prune()

    def forget(self, email: str) -> None:
        self._entries.pop(email, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _prune(self) -> None:
        cutoff = time.monotonic() - max(self._ttl, self._grace)
        self._entries = {e: v for e, v in self._entries.items() if v.fetched >= cutoff}
        self._prune_at = max(1024, 2 * len(self._entries))
