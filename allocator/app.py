"""The ASGI application: identity → session → forward, for every path outside `/_allocator/`.

Paths under `/_allocator/` go to the control app (pages, status, sign-in, admin API).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
import weakref
from urllib.parse import quote

from allocator import metrics, pages
from allocator.checks import RequestChecks
from allocator.control import build_control
from allocator.proxy import ClientGone, ResponseCut, UpstreamBroken, UpstreamRefused
from allocator.runtime import Runtime
from allocator.settings import Settings, load_settings
from allocator.store import StoreUnavailable
from allocator.types import ASGIApp, Person, Progress, Receive, Scope, Send, Session, State

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_allocator"
HEALTH_PATHS = frozenset({"/_allocator/healthz", "/_allocator/readyz"})  # load balancers' probes
WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013
WS_INTERNAL_ERROR = 1011
GC_GEN0_THRESHOLD = 50_000  # fewer, larger young collections: a shorter latency tail
NOT_ANSWERING = "Your WebUI is running but not answering right now; trying again shortly."
NO_SESSION = "You have no WebUI right now. Reload the page to get one."
STORE_DOWN = "Sessions cannot be looked up right now. Please try again in a minute."

running: weakref.WeakSet[AllocatorApp] = weakref.WeakSet()


def create_app() -> AllocatorApp:
    """The uvicorn factory: settings from the environment (the CLI put its flags there)."""
    return AllocatorApp(load_settings())


class AllocatorApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime.build(settings)
        self.control: ASGIApp = build_control(self.runtime)
        self.checks = RequestChecks(settings)
        running.add(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope["path"]
        problem = None if path in HEALTH_PATHS else self.checks.refusal(scope)
        if problem is not None:
            await self._refuse(scope, send, *problem)
        elif path.startswith(CONTROL_PREFIX):
            await self.control(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, status: int, reason: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
        else:
            await pages.send_error(scope, send, status, "Request refused", reason)

    # -- HTTP -----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        person = await self.runtime.identity.identify(scope)
        if person is None:
            await self._challenge(scope, send)
            return
        tracker = self.runtime.tracker
        # Heartbeats and progress polls neither count as activity nor start a WebUI: an open
        # tab must not get a new one back right after a release or a reclaim.
        exempt = tracker.is_exempt(scope["path"])
        session = await self._session(scope, send, person, allocate=not exempt)
        if session is None:
            return
        if not exempt:
            tracker.begin(person.email)
        try:
            status = await self.runtime.http.forward(scope, receive, send, session, person, exempt)
            metrics.count_response(status)
        except (UpstreamRefused, UpstreamBroken) as exc:
            await self._recover(scope, send, person, session, exc, allocate=not exempt)
        except ResponseCut as exc:  # the browser sees a cut-off response, never a complete one
            metrics.UPSTREAM_ERRORS.labels(cause="cut").inc()
            log.warning(
                "WebUI %s of %s broke off a response: %s", session.server, person.email, exc
            )
        except ClientGone:
            pass
        finally:
            if not exempt:
                tracker.end(person.email)

    async def _session(
        self, scope: Scope, send: Send, person: Person, allocate: bool
    ) -> Session | None:
        """The person's session; otherwise answers with progress (or a store error) and None."""
        try:
            session = await self.runtime.core.cache.lookup(person.email)
            if session is not None:
                return session
            if allocate:
                outcome = await self.runtime.core.allocations.ensure(
                    person, self.settings.allocation_wait, looked=True
                )
            else:
                outcome = Progress(State.NONE, NO_SESSION, time.time())
        except StoreUnavailable as exc:
            log.warning("store unavailable for %s: %s", person.email, exc)
            await pages.send_error(
                scope, send, 503, "Temporarily unavailable", STORE_DOWN, [(b"retry-after", b"10")]
            )
            return None
        if isinstance(outcome, Progress):
            await pages.send_progress(scope, send, outcome)
            return None
        return outcome

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
            outcome = await self.runtime.core.allocations.recover(person, session, allocate)
        except StoreUnavailable:
            outcome = None
        if outcome is not None:
            await pages.send_progress(scope, send, outcome)
        elif cause == "refused":
            await pages.send_progress(
                scope, send, Progress(State.STARTING, NOT_ANSWERING, time.time())
            )
        else:
            message = "Your WebUI did not answer this request. Try again in a moment."
            await pages.send_error(scope, send, 502, "Your WebUI did not answer", message)

    async def _challenge(self, scope: Scope, send: Send) -> None:
        login = self.runtime.identity.login_path
        if login and pages.wants_html(scope) and scope["method"] == "GET":
            target = scope["path"] + (
                "?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else ""
            )
            location = f"{login}?next={quote(target, safe='')}".encode()
            headers = [(b"location", location), (b"content-length", b"0"), *pages.SECURITY_HEADERS]
            await send({"type": "http.response.start", "status": 303, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            metrics.count_response(303)
            return
        message = "Sign in first." if login else "No verified identity came with this request."
        extra = [(b"www-authenticate", b'Cookie realm="sd-allocator"')] if login else []
        await pages.send_error(scope, send, 401, "Not signed in", message, extra)

    # -- WebSocket ------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        person = await self.runtime.identity.identify(scope)
        if person is None:
            await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
            return
        try:
            session = await self.runtime.core.cache.lookup(person.email)
        except StoreUnavailable:
            session = None
        if session is None:
            await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER})
            return
        tracker = self.runtime.tracker
        exempt = tracker.is_exempt(scope["path"])
        if not exempt:
            tracker.begin(person.email)
        try:
            await self.runtime.websockets.forward(scope, receive, send, session, person)
        except UpstreamRefused:
            metrics.UPSTREAM_ERRORS.labels(cause="refused").inc()
            await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER})
            with contextlib.suppress(StoreUnavailable):
                await self.runtime.core.allocations.recover(person, session, allocate=not exempt)
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
                gc.collect()
                gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
                gc.freeze()  # long-lived objects out of the collector's way: a shorter p99 tail
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
