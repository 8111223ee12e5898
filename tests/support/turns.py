"""Turns of the event loop, for tests of code that shares the loop fairly. A turn is not
time: `one_turn()` lets every task that is ready run once, however fast the machine is."""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import Generator


async def one_turn() -> None:
    """Let every other ready task run once: this task steps aside and is queued behind them
    (what asyncio does for a zero-second sleep; no time is involved)."""
    await _step_aside()


@types.coroutine
def _step_aside() -> Generator[None, None, None]:
    yield  # a bare yield: the task re-queues itself at the end of the loop's ready queue


class LoopTurns:
    """Counts the turns of the running loop by taking one itself every turn."""

    def __init__(self) -> None:
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.create_task(self._run())
        await one_turn()  # counting from now on
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            self.count += 1
            await one_turn()
