"""The GameServers, one global resourceVersion, and the watch history.

Like etcd behind kube-apiserver: every write takes the next revision (shared by every kind,
so a Fleet status update also moves it); a write that changes nothing is not a write; for a
custom resource without a status subresource any change outside ``metadata`` bumps
``metadata.generation``. Like the apiserver's watch cache (k8s.io/apiserver
``pkg/storage/cacher/watch_cache.go``): a bounded ring of recent changes; a watch may resume
from any resourceVersion not older than the oldest retained change minus one, else it gets
410 Expired "too old resource version: X (Y)".
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from fake_agones.errors import expired

Json = dict[str, Any]
Key = tuple[str, str]
T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """One write. ``obj`` is the object after it (for DELETED: its last state, new RV)."""

    type: str
    obj: Json
    prev: Json | None
    rv: int


class ObjectStore:
    def __init__(self, history_size: int = 1000) -> None:
        self._objects: dict[Key, Json] = {}
        self._rv = 0
        self._history: deque[Change] = deque(maxlen=max(1, history_size))
        self._oldest = 1
        self._watchers: set[asyncio.Queue[Change | None]] = set()
        self._listeners: list[Callable[[Change], None]] = []
        self._changed = asyncio.Event()

    @property
    def resource_version(self) -> int:
        return self._rv

    def next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def get(self, namespace: str, name: str) -> Json | None:
        found = self._objects.get((namespace, name))
        return clone(found) if found is not None else None

    def items(self, namespace: str | None = None) -> list[Json]:
        return [clone(obj) for obj in self.view(namespace)]

    def view(self, namespace: str | None = None) -> list[Json]:
        """The stored objects themselves, sorted: to read at once, never to change or keep."""
        return [
            obj
            for key, obj in sorted(self._objects.items())
            if namespace is None or key[0] == namespace
        ]

    def create(self, obj: Json) -> Json:
        obj = clone(obj)
        rv = self.next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        self._objects[_key(obj)] = obj
        self._record(Change("ADDED", obj, None, rv))
        return clone(obj)

    def update(self, namespace: str, name: str, mutate: Callable[[Json], None]) -> Json | None:
        """Apply ``mutate`` to a copy; store it as a new revision unless nothing changed."""
        prev = self._objects.get((namespace, name))
        if prev is None:
            return None
        new = clone(prev)
        mutate(new)
        if new == prev:
            return clone(prev)
        if {k: v for k, v in new.items() if k != "metadata"} != {
            k: v for k, v in prev.items() if k != "metadata"
        }:
            new["metadata"]["generation"] = prev["metadata"].get("generation", 0) + 1
        rv = self.next_rv()
        new["metadata"]["resourceVersion"] = str(rv)
        self._objects[(namespace, name)] = new
        self._record(Change("MODIFIED", new, prev, rv))
        return clone(new)

    def remove(self, namespace: str, name: str) -> None:
        prev = self._objects.pop((namespace, name), None)
        if prev is None:
            return
        rv = self.next_rv()
        last = clone(prev)
        last["metadata"]["resourceVersion"] = str(rv)
        self._record(Change("DELETED", last, prev, rv))

    def _record(self, change: Change) -> None:
        if len(self._history) == self._history.maxlen:
            self._oldest = self._history[1].rv if len(self._history) > 1 else change.rv
        self._history.append(change)
        for queue in self._watchers:
            queue.put_nowait(change)
        for listener in tuple(self._listeners):  # one may remove itself
            listener(change)
        self._changed.set()
        self._changed = asyncio.Event()

    # --- watching -----------------------------------------------------------------------

    def since(self, rv: int) -> list[Change]:
        """Changes after ``rv``, or 410 Expired when the history no longer reaches back."""
        if rv < self._oldest - 1:
            raise expired(f"too old resource version: {rv} ({self._oldest - 1})")
        return [change for change in self._history if change.rv > rv]

    def subscribe(self) -> asyncio.Queue[Change | None]:
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self._watchers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change | None]) -> None:
        self._watchers.discard(queue)

    def close_watchers(self) -> int:
        for queue in self._watchers:
            queue.put_nowait(None)
        closed = len(self._watchers)
        self._watchers.clear()
        return closed

    def set_history_size(self, size: int) -> None:
        kept = list(self._history)[-max(1, size) :]
        if len(kept) < len(self._history):
            self._oldest = kept[0].rv
        self._history = deque(kept, maxlen=max(1, size))

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Change], None]) -> None:
        """For listeners that live shorter than the store (a pod's SDK server)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def changed(self) -> None:
        await self._changed.wait()


def clone(value: T) -> T:
    """A deep copy of plain JSON data; several times faster than copy.deepcopy."""
    return cast(T, _clone(value))


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clone(item) for item in value]
    return value


def _key(obj: Json) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]
