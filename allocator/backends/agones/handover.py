"""Waiting for a person's previous WebUI pod to hand over before their next one starts.

A pod being deleted (released, reclaimed) still works on its way out: its sidecar reads the
WebUI's settings one last time and delivers the pictures still pending, then the pod goes. A
person who asks for a WebUI again at once would get a new pod whose sidecar gives the WebUI the
settings kept *before* that last look, and the change just made would be lost. So an allocation
first waits, bounded, until the person's pods that are stopping are gone.

What is stopping is learnt from the GameServer watch (every replica sees a deletion within
moments) and, on the replica that deletes, at once. An entry older than `FORGET_AFTER` is not
waited for (a missed DELETED event must not hold anyone up for long).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from allocator.backends.agones.gameservers import is_gone, owner

HANDOVER_WAIT = 20.0
"""At most this long for the previous pod: the sidecar's last look takes under 3 s, and a
preStop hook holds the WebUI 5 s; pictures still being written may take longer, and are
delivered all the same."""
FORGET_AFTER = 120.0


class Handovers:
    def __init__(self, wait: float = HANDOVER_WAIT, clock: Callable[[], float] = time.monotonic):
        self._wait = wait
        self._clock = clock
        self._stopping: dict[str, dict[str, float]] = {}  # slug -> {GameServer: since}
        self._changed = asyncio.Condition()
        self._notifying: set[asyncio.Task[None]] = set()

    def stopping(self, slug: str, name: str) -> None:
        self._stopping.setdefault(slug, {}).setdefault(name, self._clock())

    def observe(self, kind: str, gameserver: dict[str, Any]) -> None:
        """A watch event: note a person's pod that is stopping, or gone."""
        slug, _ = owner(gameserver)
        name = str((gameserver.get("metadata") or {}).get("name", ""))
        if not slug or not name:
            return
        if kind == "DELETED":
            self.gone(slug, name)
        elif is_gone(gameserver):
            self.stopping(slug, name)

    def waiting_for(self, slug: str) -> list[str]:
        """The person's pods still stopping; those noted too long ago are forgotten."""
        since = self._stopping.get(slug, {})
        now = self._clock()
        for name in [name for name, noted in since.items() if now - noted >= FORGET_AFTER]:
            self.gone(slug, name)
        return list(self._stopping.get(slug, {}))

    async def handed_over(self, slug: str) -> list[str]:
        """Wait until the person's stopping pods are gone, for at most the wait; the names
        still stopping then (empty: all handed over)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: not self.waiting_for(slug)), self._wait
                )
        return self.waiting_for(slug)

    def gone(self, slug: str, name: str) -> None:
        """The pod is no more (or was never deleted after all)."""
        names = self._stopping.get(slug)
        if names is None or names.pop(name, None) is None:
            return
        if not names:
            del self._stopping[slug]
        task = asyncio.get_running_loop().create_task(self._notify())
        self._notifying.add(task)  # held: the loop keeps only a weak reference
        task.add_done_callback(self._notifying.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
