"""GameServerWatch: follows our GameServers through the Kubernetes watch API.

It lists once for a resourceVersion, then watches from there; a stream that ends (server
timeout, network, a silent connection) is resumed from the last version seen, and a version the
server no longer has (410 Gone) starts over with a fresh list, which also reports as DELETED
every GameServer that vanished while nobody was watching. It runs on its own thread because
the official client's watch blocks, and hands each event to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from allocator.backends.agones.client import AGONES, KubeApi

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict[str, Any]], None]  # (ADDED|MODIFIED|DELETED, object)
WATCH_SECONDS = 240  # the server ends each stream after this; we resume at once
# With bookmarks (about one a minute) a stream is never silent this long unless it is dead.
READ_TIMEOUT = (10, 90)
RETRY_SECONDS = (0.5, 1, 2, 5, 10, 30)
GONE = 410
SHORT_STREAM_SECONDS = 1.0  # a stream ending sooner is treated as a failure (backoff)


class GameServerWatch:
    def __init__(self, kube: KubeApi, label_selector: str, handler: EventHandler) -> None:
        self._kube = kube
        self._selector = label_selector
        self._handler = handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None
        self._version: str | None = None  # the last resourceVersion seen
        self._known: dict[str, dict[str, Any]] = {}  # name → last object, for relists

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="gameserver-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._watch is not None:
            self._watch.stop()

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                if self._version is None:
                    self._list()
                began = time.monotonic()
                self._follow()
                if time.monotonic() - began < SHORT_STREAM_SECONDS:
                    raise ValueError("the watch stream ended at once")
                failures = 0
            except ApiException as exc:
                if exc.status != GONE:
                    failures = self._pause(exc, failures)
                    continue
                log.info("GameServer watch expired; listing again")
                self._version = None
            except urllib3.exceptions.ReadTimeoutError:
                log.info("GameServer watch was silent too long; resuming")
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                failures = self._pause(exc, failures)
            except Exception as exc:  # a thread that dies would stop seeing gone GameServers
                log.exception("GameServer watch: unexpected error")
                failures = self._pause(exc, failures)

    def _pause(self, exc: BaseException, failures: int) -> int:
        delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
        log.warning("GameServer watch failed (%s); retrying in %s s", _short(exc), delay)
        self._stopped.wait(delay)
        return failures + 1

    def _list(self) -> None:
        listing: dict[str, Any] = self._kube.objects.list_namespaced_custom_object(  # type: ignore[assignment]
            *AGONES,
            self._kube.namespace,
            "gameservers",
            label_selector=self._selector,
            _request_timeout=30,
        )
        items = {item["metadata"]["name"]: item for item in listing.get("items", [])}
        for name in set(self._known) - set(items):  # deleted while nobody watched
            self._deliver("DELETED", self._known[name])
        for item in items.values():
            self._deliver("ADDED", item)
        self._version = str(listing["metadata"]["resourceVersion"])

    def _follow(self) -> None:
        """Stream events from the last version until the server ends the stream."""
        self._watch = watch.Watch()
        stream = self._watch.stream(
            self._kube.objects.list_namespaced_custom_object,
            *AGONES,
            self._kube.namespace,
            "gameservers",
            label_selector=self._selector,
            resource_version=self._version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=READ_TIMEOUT,
        )
        # The client raises ApiException(410) itself for an ERROR event saying Gone.
        for event in stream:
            if self._stopped.is_set():
                break
            kind, obj = event["type"], event["raw_object"]
            self._version = str(obj.get("metadata", {}).get("resourceVersion") or self._version)
            if kind != "BOOKMARK":
                self._deliver(kind, obj)

    def _deliver(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj.get("metadata", {}).get("name", "")
        if kind == "DELETED":
            self._known.pop(name, None)
        else:
            self._known[name] = obj
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._handler, kind, obj)


def _short(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
