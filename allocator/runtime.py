"""Runtime: every long-lived part of a running allocator, built from the settings in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from allocator import metrics
from allocator.activity import ActivityTracker
from allocator.allocation import Allocations
from allocator.backends import create_backend
from allocator.cache import SessionCache
from allocator.headers import Withheld
from allocator.identity import create_identity
from allocator.identity.dev import COOKIE_NAME
from allocator.proxy import HttpForwarder
from allocator.sessions import Sessions
from allocator.settings import Settings
from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Backend, Identity
from allocator.upstream import UpstreamPool
from allocator.wsproxy import WebSocketForwarder, create_client

log = logging.getLogger(__name__)

GAUGE_SECONDS = 15.0


@dataclass
class Core:
    """What the CLI needs too: settings, store, backend and allocations (no proxy)."""

    settings: Settings
    store: SessionStore
    backend: Backend
    cache: SessionCache
    allocations: Allocations

    @classmethod
    def build(cls, settings: Settings) -> Core:
        store = SessionStore.from_url(settings.redis_url, settings.redis_ca_cert)
        return cls.from_parts(settings, store, create_backend(settings))

    @classmethod
    def from_parts(cls, settings: Settings, store: SessionStore, backend: Backend) -> Core:
        cache = SessionCache(store, settings.cache_ttl, settings.store_outage_grace)
        allocations = Allocations(store, backend, cache, settings)
        backend.on_gone(allocations.forget_gone)
        return cls(settings, store, backend, cache, allocations)

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
        )
        return cls(
            core=core,
            identity=identity,
            sessions=Sessions(core.cache, core.allocations, settings.allocation_wait),
            tracker=tracker,
            http=HttpForwarder(pool, withheld),
            websockets=WebSocketForwarder(create_client(settings), withheld, settings.ws_max_size),
        )

    @property
    def settings(self) -> Settings:
        return self.core.settings

    async def start(self) -> None:
        await self.core.backend.start()
        await self.identity.start()
        await self.tracker.start()
        self._tasks.append(asyncio.create_task(self._count_sessions(), name="session-gauge"))
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
            CruiseOptions.from_settings(settings),
            settings.cruise_interval,
            before_pass=self.tracker.flush,  # this process's latest activity counts
        )

    async def _count_sessions(self) -> None:
        while True:
            with contextlib.suppress(StoreUnavailable):
                metrics.ACTIVE_SESSIONS.set(await self.core.store.count())
            await asyncio.sleep(GAUGE_SECONDS)
