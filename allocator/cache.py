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
        if entry is not None and now < self._store_down_until:
            # Known people don't wait on a store that failed a moment ago.
            return self._stale(entry, now, StoreUnavailable("the store failed moments ago"))
        try:
            session = await self._store.get(email)
        except StoreUnavailable as exc:
            self._store_down_until = now + STORE_RETRY_SECONDS
            return self._stale(entry, now, exc)
        if session is None:
            self._entries.pop(email, None)
        else:
            self.put(session, now)
        return session

    def _stale(self, entry: _Entry | None, now: float, error: StoreUnavailable) -> Session:
        """The last known session while the store is away, within the grace period."""
        if entry is not None and now - entry.fetched < self._grace:
            return entry.session
        raise error

    def put(self, session: Session, now: float | None = None) -> None:
        self._entries[session.email] = _Entry(session, now or time.monotonic())
        if len(self._entries) > self._prune_at:
            self._prune()

    def forget(self, email: str) -> None:
        self._entries.pop(email, None)

    def _prune(self) -> None:
        cutoff = time.monotonic() - max(self._ttl, self._grace)
        self._entries = {e: v for e, v in self._entries.items() if v.fetched >= cutoff}
        self._prune_at = max(1024, 2 * len(self._entries))
