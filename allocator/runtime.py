"""Runtime: every long-lived part of a running allocator, built from the settings in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from allocator.activity import ActivityTracker
from allocator.allocation import Allocations
from allocator.backends import create_backend
from allocator.cache import SessionCache
from allocator.dispatch import Dispatcher
from allocator.gauges import StoreGauges
from allocator.headers import Withheld
from allocator.identity import create_identity
from allocator.identity.dev import COOKIE_NAME
from allocator.outlook import QueueOutlook
from allocator.proxy import HttpForwarder
from allocator.sessions import Sessions
from allocator.settings import Settings
from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Backend, Identity
from allocator.upstream import UpstreamPool
from allocator.waitqueue import WaitQueue
from allocator.wsproxy import WebSocketForwarder, create_client

log = logging.getLogger(__name__)


@dataclass
class Core:
    """What the CLI needs too: settings, store, backend and allocations (no proxy)."""

    settings: Settings
    store: SessionStore
    backend: Backend
    cache: SessionCache
    allocations: Allocations
    queue: WaitQueue
    outlook: QueueOutlook

    @classmethod
    def build(cls, settings: Settings) -> Core:
        store = SessionStore.from_url(
            settings.redis_url, settings.redis_ca_cert, settings.usage_days
        )
        return cls.from_parts(settings, store, create_backend(settings))

    @classmethod
    def from_parts(cls, settings: Settings, store: SessionStore, backend: Backend) -> Core:
        cache = SessionCache(store, settings.cache_ttl, settings.store_outage_grace)
        queue = WaitQueue(store)
        outlook = QueueOutlook(queue, store, settings)
        allocations = Allocations(store, backend, cache, settings, queue, outlook)
        backend.on_gone(allocations.forget_gone)
        return cls(settings, store, backend, cache, allocations, queue, outlook)

    async def close(self) -> None:
        await self.allocations.close()
        await self.backend.close()
        await self.store.close()


@dataclass
class Runtime:
    core: Core
    identity: Identity
    sessions: Sessions
    tracker: ActivityTracker
    http: HttpForwarder
    websockets: WebSocketForwarder
    dispatcher: Dispatcher
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        return cls.from_parts(Core.build(settings), create_identity(settings))

    @classmethod
    def from_parts(cls, core: Core, identity: Identity) -> Runtime:
        """A runtime around parts made elsewhere (tests: a recording backend, memory store)."""
        settings = core.settings
        # Our cookie in every mode; IAP's bearer token when behind IAP.
        withheld = Withheld(COOKIE_NAME.encode(), bearer=settings.identity == "iap")
        pool = UpstreamPool(
            settings.upstream_connect_timeout, settings.upstream_read_timeout or None
        )
        tracker = ActivityTracker(
            core.store,
            settings.idle_exempt_paths,
            settings.activity_period,
            settings.busy_delay,
            settings.busy_lease_ttl,
            settings.return_after,  # back after this long: written before the request goes on
        )
        return cls(
            core=core,
            identity=identity,
            sessions=Sessions(core.cache, core.allocations, settings.allocation_wait),
            tracker=tracker,
            http=HttpForwarder(pool, withheld, badge_on=settings.badge == "on"),
            websockets=WebSocketForwarder(create_client(settings), withheld, settings.ws_max_size),
            dispatcher=Dispatcher(
                core.queue, core.backend, core.allocations, settings, _pressure_pass(core, tracker)
            ),
        )

    @property
    def settings(self) -> Settings:
        return self.core.settings

    async def start(self) -> None:
        await self.core.backend.start()
        await self.identity.start()
        await self.tracker.start()
        gauges = StoreGauges(self.core.store)
        self._tasks.append(asyncio.create_task(gauges.run(), name="store-gauges"))
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="queue-dispatcher"))
        if self.settings.cruise_in_process:
            self._tasks.append(asyncio.create_task(self._cruise(), name="cruiser"))
        try:
            await self.core.store.ping()
        except StoreUnavailable as exc:
            log.warning("the session store is not reachable yet: %s", exc)

    async def begin_shutdown(self) -> None:
        """Before connections drain: WebSockets close with 1001, idle streams end."""
        self.http.closing.set()
        closed = await self.websockets.close_all()
        if closed:
            log.info("closed %d WebSocket(s) for shutdown", closed)

    async def close(self) -> None:
        await self.begin_shutdown()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.tracker.close()
        await self.identity.close()
        self.http.pool.close()
        await self.websockets.client.close()
        await self.core.close()

    async def _cruise(self) -> None:
        from cruiser.loop import cruise_forever
        from cruiser.reaper import CruiseOptions

        settings = self.settings
        log.info("cruiser runs in this process every %.0f s", settings.cruise_interval)
        await cruise_forever(
            self.core.store,
            self.core.backend,
            CruiseOptions.from_settings(settings, self.core.backend),
            settings.cruise_interval,
            before_pass=self.tracker.flush,  # this process's latest activity counts
        )


def _pressure_pass(core: Core, tracker: ActivityTracker) -> Callable[[], Awaitable[None]]:
    """A reclaim-only cruiser pass for while people wait (the dispatcher runs it every turn):
    sessions idle past the pressure timeout go at once, not at the cruiser's next pass."""
    from cruiser.reaper import CruiseOptions, cruise_once

    options = replace(
        CruiseOptions.from_settings(core.settings, core.backend),
        reconcile=False,
        quiet=True,
        bookkeeping=False,
    )

    async def run() -> None:
        await tracker.flush()  # this process's latest activity counts
        await cruise_once(core.store, core.backend, options)

    return run
