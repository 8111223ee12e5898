"""Watch streams: newline-delimited ``{"type": ..., "object": ...}`` over one chunked response.

Modelled on k8s.io/apiserver's cacher (``pkg/storage/cacher``): resourceVersion unset or "0"
starts with a synthetic ADDED per current match; a given resourceVersion replays the retained
changes after it, or sends one ERROR event with a 410 Expired Status and ends (the apiserver
answers 200 and reports the error in-stream, newErrWatcher); one from the future is waited for
up to 3 s, then ERROR 504 "Too large resource version". Per-watcher filtering follows
cacheWatcher.convertToWatchEvent: an object that stops matching the selectors arrives as
DELETED (its previous content at the new resourceVersion), one that starts matching as ADDED.
BOOKMARK events carry only apiVersion, kind and metadata.resourceVersion. The stream ends
cleanly at timeoutSeconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from fake_agones.errors import ApiError, too_large_resource_version
from fake_agones.objects import API_VERSION
from fake_agones.query import ListQuery
from fake_agones.store import Change, ObjectStore, clone

Json = dict[str, Any]
TOO_LARGE_WAIT = 3.0


def event_line(kind: str, obj: Json, *, typed: bool = False) -> bytes:
    encoded = json.dumps(obj, separators=(",", ":"), sort_keys=not typed)
    return f'{{"type":"{kind}","object":{encoded}}}\n'.encode()


def convert(change: Change, matches: Callable[[Json], bool]) -> tuple[str, Json] | None:
    current = change.type != "DELETED" and matches(change.obj)
    previous = change.prev is not None and matches(change.prev)
    if current:
        return ("MODIFIED" if previous else "ADDED"), change.obj
    if not previous:
        return None
    assert change.prev is not None
    gone = clone(change.prev)
    gone["metadata"]["resourceVersion"] = str(change.rv)
    return "DELETED", gone


def bookmark(rv: int) -> Json:
    return {
        "apiVersion": API_VERSION,
        "kind": "GameServer",
        "metadata": {"resourceVersion": str(rv)},
    }


class WatchStream:
    """One watch request, from its first event to the end of its stream."""

    def __init__(self, store: ObjectStore, query: ListQuery, bookmark_interval: float) -> None:
        self.store = store
        self.query = query
        self.bookmark_interval = bookmark_interval
        self.queue = store.subscribe()
        self.since = query.resource_version

    def initial(self) -> list[bytes]:
        """What precedes live changes; computed with no await since subscribing."""
        if self.since is None:
            self.since = self.store.resource_version
            objects = [obj for obj in self.store.view() if self.query.matches(obj)]
            return [event_line("ADDED", obj) for obj in objects]
        if self.since > self.store.resource_version:
            return []
        lines = []
        for change in self.store.since(self.since):
            event = convert(change, self.query.matches)
            if event is not None:
                lines.append(event_line(*event))
        return lines

    async def serve(self, request: web.Request) -> web.StreamResponse:
        try:
            try:
                lines = self.initial()
            except ApiError as error:
                lines = [event_line("ERROR", error.status(), typed=True)]
                return await self._send_only(request, lines)
            response = await self._open(request)
            for line in lines:
                await response.write(line)
            await self._follow(response)
            await response.write_eof()
            return response
        except ConnectionError:
            return web.StreamResponse()
        finally:
            self.store.unsubscribe(self.queue)

    async def _open(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        return response

    async def _send_only(self, request: web.Request, lines: list[bytes]) -> web.StreamResponse:
        response = await self._open(request)
        for line in lines:
            await response.write(line)
        await response.write_eof()
        return response

    async def _follow(self, response: web.StreamResponse) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.query.timeout
        ahead = self.since is not None and self.since > self.store.resource_version
        if ahead and not await self._caught_up(min(TOO_LARGE_WAIT, self.query.timeout)):
            assert self.since is not None
            error = too_large_resource_version(self.since, self.store.resource_version)
            await response.write(event_line("ERROR", error.status(), typed=True))
            return
        next_bookmark = loop.time() + self.bookmark_interval
        while True:
            wake = min(deadline, next_bookmark) if self.query.bookmarks else deadline
            wait = wake - loop.time()
            if wait <= 0:
                if loop.time() >= deadline:
                    return
                await response.write(event_line("BOOKMARK", bookmark(self.store.resource_version)))
                next_bookmark = loop.time() + self.bookmark_interval
                continue
            try:
                change = await asyncio.wait_for(self.queue.get(), wait)
            except TimeoutError:
                continue
            if change is None:
                return
            await self._deliver(response, change)

    async def _deliver(self, response: web.StreamResponse, change: Change) -> None:
        if self.since is not None and change.rv <= self.since:
            return
        event = convert(change, self.query.matches)
        if event is not None:
            await response.write(event_line(*event))

    async def _caught_up(self, within: float) -> bool:
        assert self.since is not None
        try:
            async with asyncio.timeout(within):
                while self.store.resource_version < self.since:
                    await self.store.changed()
        except TimeoutError:
            return False
        return True
