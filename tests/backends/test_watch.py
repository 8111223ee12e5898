"""The GameServer watch shares the event loop with everyone's requests: a burst of events
that arrived in one read is handled one event per turn of the loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

from allocator.backends.agones.client import KubeApi
from allocator.backends.agones.watch import GameServerWatch
from tests.support.turns import LoopTurns

BURST = 20


class BurstingApi:
    """A list with nothing in it, then one stream whose events are all there at once."""

    def __init__(self) -> None:
        self.streams = 0

    async def list_gameservers(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def watch_gameservers(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        self.streams += 1
        if self.streams > 1:
            await asyncio.Event().wait()  # the next stream stays open and quiet
        for n in range(BURST):
            yield {"type": "MODIFIED", "object": {"metadata": {"name": f"gs-{n}"}}}


async def test_a_burst_of_events_lets_other_work_run_between_them() -> None:
    seen_at: list[int] = []  # the loop's turn when each event was handled
    done = asyncio.Event()
    async with LoopTurns() as turns:

        def handler(kind: str, gameserver: dict[str, Any]) -> None:
            seen_at.append(turns.count)
            if len(seen_at) == BURST:
                done.set()

        watch = GameServerWatch(cast(KubeApi, BurstingApi()), "label", handler)
        watch.start()
        try:
            await asyncio.wait_for(done.wait(), 30)
        finally:
            await watch.stop()
    assert len(set(seen_at)) == BURST  # another turn between every two events
