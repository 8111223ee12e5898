"""Pacer: a few waiting callers go on per turn of the event loop, in the order they came.

One event loop serves everyone's requests. When 50 people arrive at once, their allocations'
replies (Redis, the Kubernetes API) come back in bunches, and each continuation runs for a
fraction of a millisecond: run back to back, they hold the requests of people already working
for 10 ms and more. An allocation waiting its turn here lets the loop take in other requests
between every few of them; the allocations themselves lose only a turn of the loop each.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Pacer:
    def __init__(self, per_turn: int) -> None:
        self._per_turn = per_turn
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release_scheduled = False

    async def turn(self) -> None:
        """Return once it is this caller's turn (a turn of the loop later at the soonest)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run several): nothing of the old counts
            self._loop, self._waiting, self._release_scheduled = loop, deque(), False
        future = loop.create_future()
        self._waiting.append(future)
        self._schedule_release(loop)
        await future

    def _schedule_release(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._release_scheduled:
            self._release_scheduled = True
            loop.call_soon(self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._release_scheduled = False
        released = 0
        while self._waiting and released < self._per_turn:
            future = self._waiting.popleft()
            if not future.done():  # a caller cancelled while waiting takes no place
                future.set_result(None)
                released += 1
        if self._waiting:
            self._schedule_release(loop)
