"""Activity without a Redis round trip per request.

Requests are counted in this process. Every `interval` seconds one pipeline writes the latest
activity of everyone who did something, renews a busy lease for everyone whose work (a
generation, an open stream) has lasted longer than `busy_after`, drops the leases of work
that ended, and adds the busy time seen since the last write to the usage ledger. Paths
matching the idle-exempt patterns (heartbeats, progress polling) count as neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable

from allocator.settings import RETURN_AFTER
from allocator.store import SessionStore, StoreUnavailable
from allocator.usage import UsageBook

log = logging.getLogger(__name__)


def compile_patterns(patterns: Iterable[str]) -> re.Pattern[str]:
    """Shell-style path patterns (`/gradio_api/heartbeat/*`) as one regular expression."""
    parts = [fnmatch.translate(pattern) for pattern in patterns if pattern]
    return re.compile("|".join(parts) if parts else r"(?!)")


class ActivityTracker:
    def __init__(
        self,
        store: SessionStore,
        exempt_patterns: Iterable[str],
        interval: float,
        busy_after: float,
        lease_ttl: float,
        return_after: float = RETURN_AFTER,
    ) -> None:
        self._store = store
        self._usage = UsageBook(store)
        self._exempt = compile_patterns(exempt_patterns)
        self._interval = interval
        self._busy_after = busy_after
        self._lease_ttl = lease_ttl
        self._return_after = return_after
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pending: dict[str, float] = {}
        self._busy_since: dict[str, float] = {}
        self._busy_counted: dict[str, float] = {}  # email → busy time counted up to here
        self._busy_seconds: dict[str, float] = {}  # not yet written to the usage ledger
        self._in_flight: dict[str, int] = {}
        self._leased: set[str] = set()
        self._written: dict[str, float] = {}  # email → when its activity was last written
        self._returning: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def is_exempt(self, path: str) -> bool:
        return self._exempt.fullmatch(path) is not None

    def begin(self, email: str, recorded: float = 0.0) -> asyncio.Task[None] | None:
        """A request or stream started; call `end` exactly once when it finishes. Someone
        coming back after a pause has their activity written at once: the answer is that
        write, for the caller to await before forwarding (a pass that runs meanwhile, in any
        replica, then sees them active instead of taking their WebUI from under the request).
        `recorded`: activity the store has for them anyway (their mapping's creation)."""
        now = time.time()
        returning = None
        if now - max(self._written.get(email, 0.0), recorded) > self._return_after:
            returning = self._write_soon(email, now)
        self._pending[email] = now
        count = self._in_flight.get(email, 0)
        if count == 0:
            self._busy_since[email] = self._busy_counted[email] = now
        self._in_flight[email] = count + 1
        return returning

    def end(self, email: str) -> None:
        now = time.time()
        self._pending[email] = now
        count = self._in_flight[email] - 1
        if count:
            self._in_flight[email] = count
        else:
            del self._in_flight[email]
            del self._busy_since[email]
            self._count_busy(email, self._busy_counted.pop(email), now)

    def _count_busy(self, email: str, since: float, now: float) -> None:
        if now > since:
            self._busy_seconds[email] = self._busy_seconds.get(email, 0.0) + now - since

    def _write_soon(self, email: str, now: float) -> asyncio.Task[None] | None:
        self._written[email] = now  # one write per return, however many requests follow
        try:
            task = asyncio.get_running_loop().create_task(self._write(email, now))
        except RuntimeError:  # no event loop (a synchronous caller): the next flush writes it
            return None
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)
        return task

    async def _write(self, email: str, now: float) -> None:
        try:
            await self._store.touch({email: now})
        except StoreUnavailable:
            self._written.pop(email, None)  # the next flush (or request) tries again

    async def returns_written(self) -> None:
        """Wait until the writes already started for people who came back have landed."""
        if self._returning:
            await asyncio.gather(*self._returning, return_exceptions=True)

    def last_seen(self, email: str) -> float | None:
        """Activity seen here but not yet written (the status page adds it)."""
        return self._pending.get(email)

    def is_busy(self, email: str) -> bool:
        return email in self._in_flight

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="activity-flush")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.returns_written()
        with contextlib.suppress(StoreUnavailable):
            await self.flush(final=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except StoreUnavailable as exc:
                log.warning("could not write activity, will retry: %s", exc)

    async def flush(self, final: bool = False) -> None:
        now = time.time()
        pending, self._pending = self._pending, {}
        try:
            await self._store.touch(pending)
        except StoreUnavailable:
            for email, stamp in pending.items():  # keep the newest for the next try
                self._pending[email] = max(stamp, self._pending.get(email, 0.0))
            raise
        self._written.update(dict.fromkeys(pending, now))
        self._forget_written(now)
        await self._flush_leases(now, final)
        await self._flush_busy_time(now)

    def _forget_written(self, now: float) -> None:
        """Entries older than the return threshold mean the same as none: keep the map small."""
        stale = [
            email for email, stamp in self._written.items() if now - stamp > self._return_after
        ]
        for email in stale:
            del self._written[email]

    async def _flush_busy_time(self, now: float) -> None:
        """Busy time so far, of work that ended and of work still running (counted up to now)."""
        for email, since in self._busy_counted.items():  # flushes may overlap: never back
            self._count_busy(email, since, now)
            self._busy_counted[email] = max(since, now)
        seconds, self._busy_seconds = self._busy_seconds, {}
        try:
            await self._usage.add_busy(seconds, now)
        except StoreUnavailable:
            for email, value in seconds.items():  # counted on the next try
                self._busy_seconds[email] = self._busy_seconds.get(email, 0.0) + value
            raise

    async def _flush_leases(self, now: float, final: bool) -> None:
        cutoff = now - self._busy_after
        busy = set() if final else {e for e, t in self._busy_since.items() if t <= cutoff}
        ended = self._leased - busy
        if busy:
            await self._store.hold_busy(busy, self.holder, now + self._lease_ttl)
        if ended:
            await self._store.release_busy(ended, self.holder)
        self._leased = busy
