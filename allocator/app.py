"""The ASGI application: identity → session → forward, for every path outside `/_allocator/`.

Paths under `/_allocator/` go to the control app (pages, status, sign-in, admin API).
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref

from allocator import metrics, replies
from allocator.checks import WS_POLICY_VIOLATION, RequestChecks
from allocator.control import build_control
from allocator.proxy import ClientGone, ResponseCut, UpstreamBroken, UpstreamRefused
from allocator.runtime import Runtime
from allocator.settings import Settings, load_settings
from allocator.store import StoreUnavailable
from allocator.types import (
    ASGIApp,
    BackendError,
    Person,
    Progress,
    Receive,
    Scope,
    Send,
    Session,
    State,
)

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_allocator"
WS_TRY_AGAIN_LATER = 1013
WS_INTERNAL_ERROR = 1011
NOT_ANSWERING = "Your WebUI is running but not answering right now; trying again shortly."
DID_NOT_ANSWER = "Your WebUI did not answer this request. Try again in a moment."

running: weakref.WeakSet[AllocatorApp] = weakref.WeakSet()


def create_app() -> AllocatorApp:
    """The uvicorn factory: settings from the environment (the CLI put its flags there)."""
    return AllocatorApp(load_settings())


class AllocatorApp:
    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.runtime = runtime or Runtime.build(settings)
        self.control: ASGIApp = build_control(self.runtime)
        self._checked = RequestChecks(self._route, settings)
        running.add(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self._checked(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith(CONTROL_PREFIX):
            await self.control(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self._websocket(scope, receive, send)

    # -- HTTP -----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        person = await self.runtime.identity.identify(scope)
        if person is None:
            await replies.challenge(scope, self.runtime.identity.login_path).send(send)
            return
        tracker = self.runtime.tracker
        # Heartbeats and progress polls neither count as activity nor start a WebUI: an open
        # tab must not get a new one back right after a release or a reclaim.
        exempt = tracker.is_exempt(scope["path"])
        try:
            found = await self.runtime.sessions.for_request(person, allocate=not exempt)
        except StoreUnavailable as exc:
            log.warning("store unavailable for %s: %s", person.email, exc)
            await replies.store_down(scope).send(send)
            return
        if isinstance(found, Progress):
            await replies.waiting(scope, found).send(send)
            return
        # Saving a new mapping recorded activity: a first request has no write to wait for.
        returning = None if exempt else tracker.begin(person.email, found.allocated_at)
        try:
            if returning is not None:
                await returning  # a person back after a pause: recorded before anything else
            status = await self.runtime.http.forward(scope, receive, send, found, person, exempt)
            metrics.count_response(status)
        except (UpstreamRefused, UpstreamBroken) as exc:
            await self._recover(scope, send, person, found, exc, allocate=not exempt)
        except ResponseCut as exc:  # the browser sees a cut-off response, never a complete one
            metrics.UPSTREAM_ERRORS.labels(cause="cut").inc()
            log.warning("WebUI %s of %s broke off a response: %s", found.server, person.email, exc)
        except ClientGone:
            pass
        finally:
            if not exempt:
                tracker.end(person.email)

    async def _recover(
        self,
        scope: Scope,
        send: Send,
        person: Person,
        session: Session,
        error: Exception,
        allocate: bool,
    ) -> None:
        """The WebUI refused or failed: if it is gone, drop it (and start a new one)."""
        cause = "refused" if isinstance(error, UpstreamRefused) else "broken"
        metrics.UPSTREAM_ERRORS.labels(cause=cause).inc()
        log.warning("WebUI %s of %s failed (%s): %s", session.server, person.email, cause, error)
        try:
            outcome = await self.runtime.sessions.after_failure(person, session, allocate)
        except StoreUnavailable:
            outcome = None
        if outcome is None and cause == "refused":
            outcome = Progress(State.STARTING, NOT_ANSWERING, time.time())
        if outcome is not None:
            await replies.waiting(scope, outcome).send(send)
        else:
            reply = replies.error(scope, 502, "Your WebUI did not answer", DID_NOT_ANSWER)
            await reply.send(send)

    # -- WebSocket ------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        person = await self.runtime.identity.identify(scope)
        if person is None:
            await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
            return
        try:
            session = await self.runtime.sessions.for_websocket(person)
        except (StoreUnavailable, BackendError) as exc:
            log.warning("no session for %s's WebSocket: %s", person.email, exc)
            session = None
        if session is None:
            await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER})
            return
        tracker = self.runtime.tracker
        exempt = tracker.is_exempt(scope["path"])
        returning = None if exempt else tracker.begin(person.email, session.allocated_at)
        try:
            if returning is not None:
                await returning
            await self.runtime.websockets.forward(scope, receive, send, session, person)
        except UpstreamRefused:
            metrics.UPSTREAM_ERRORS.labels(cause="refused").inc()
            await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER})
            # Drop the mapping if the WebUI is gone; a WebSocket never starts a new one.
            with contextlib.suppress(StoreUnavailable):
                await self.runtime.sessions.after_failure(person, session, allocate=False)
        except UpstreamBroken as exc:
            metrics.UPSTREAM_ERRORS.labels(cause="broken").inc()
            log.info("WebSocket to %s failed: %s", session.server, exc)
            await send({"type": "websocket.close", "code": WS_INTERNAL_ERROR})
        finally:
            if not exempt:
                tracker.end(person.email)

    # -- lifespan -------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
