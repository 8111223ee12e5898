"""GameServerWatch: follows our GameServers through the Kubernetes watch API.

It lists once for a resourceVersion, then watches from there; a stream that ends (server
timeout, network, a silent connection) is resumed from the last version seen, and a version the
server no longer has (410 Gone) starts over with a fresh list, which also reports as DELETED
every GameServer that vanished while nobody was watching. It runs as a task on the event loop
(its stream read by aiohttp, a line per event) and hands each event to the handler there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from allocator.backends.agones.client import KubeApi, KubeError

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict[str, Any]], None]  # (ADDED|MODIFIED|DELETED, object)
WATCH_SECONDS = 240  # the server ends each stream after this; we resume at once
# With bookmarks (about one a minute) a stream is never silent this long unless it is dead.
READ_TIMEOUT = 90.0
LIST_SECONDS = 30.0  # every GameServer of ours, after a 410: longer than one call
RETRY_SECONDS = (0.5, 1, 2, 5, 10, 30)
GONE = 410
SHORT_STREAM_SECONDS = 1.0  # a stream ending sooner is treated as a failure (backoff)


class ShortStream(Exception):
    """The stream ended at once: something is wrong, so wait before the next."""


class GameServerWatch:
    def __init__(self, kube: KubeApi, label_selector: str, handler: EventHandler) -> None:
        self._kube = kube
        self._selector = label_selector
        self._handler = handler
        self._task: asyncio.Task[None] | None = None
        self._version: str | None = None  # the last resourceVersion seen
        self._known: dict[str, dict[str, Any]] = {}  # name → last object, for relists

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gameserver-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failures = 0
        while True:
            began = time.monotonic()
            try:
                if self._version is None:
                    await self._list()
                    began = time.monotonic()
                await self._follow()
                if time.monotonic() - began < SHORT_STREAM_SECONDS:
                    raise ShortStream("the watch stream ended at once")
                failures = 0
            except KubeError as exc:
                if exc.status == GONE:
                    log.info("GameServer watch expired; listing again")
                    self._version = None
                elif exc.status == 0 and time.monotonic() - began >= SHORT_STREAM_SECONDS:
                    log.info("GameServer watch stream broke (%s); resuming", exc)
                    failures = 0  # it worked for a while: resume at once, as after its end
                else:
                    failures = await self._pause(exc, failures)
            except ShortStream as exc:
                failures = await self._pause(exc, failures)
            except Exception as exc:  # a watch that ends would stop seeing gone GameServers
                log.exception("GameServer watch: unexpected error")
                failures = await self._pause(exc, failures)

    async def _pause(self, exc: BaseException, failures: int) -> int:
        delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
        log.warning("GameServer watch failed (%s); retrying in %s s", exc, delay)
        await asyncio.sleep(delay)
        return failures + 1

    async def _list(self) -> None:
        listing = await self._kube.list_gameservers(self._selector, seconds=LIST_SECONDS)
        items = {item["metadata"]["name"]: item for item in listing.get("items", [])}
        for name in set(self._known) - set(items):  # deleted while nobody watched
            self._deliver("DELETED", self._known[name])
        for item in items.values():
            self._deliver("ADDED", item)
            await asyncio.sleep(0)  # as for the events of a stream (`_follow`)
        self._version = str(listing["metadata"]["resourceVersion"])

    async def _follow(self) -> None:
        """Stream events from the last version until the server ends the stream."""
        assert self._version is not None
        events = self._kube.watch_gameservers(
            self._selector, self._version, WATCH_SECONDS, READ_TIMEOUT
        )
        async for event in events:
            kind, obj = str(event.get("type")), event.get("object") or {}
            self._version = str(obj.get("metadata", {}).get("resourceVersion") or self._version)
            if kind != "BOOKMARK":
                self._deliver(kind, obj)
            # One event per turn of the loop: the events of 50 allocations come in one read,
            # and handling them all at once would hold everyone's requests for milliseconds.
            await asyncio.sleep(0)

    def _deliver(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj.get("metadata", {}).get("name", "")
        if kind == "DELETED":
            self._known.pop(name, None)
        else:
            self._known[name] = obj
        try:
            self._handler(kind, obj)
        except Exception:  # one bad event must not end the watch or lose its place
            log.exception("GameServer watch: handling a %s event of %s failed", kind, name)
