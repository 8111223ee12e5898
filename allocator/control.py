"""The control app under `/_allocator/`: health, status, sign-in, release, admin API.

FastAPI here (forms, JSON, an OpenAPI document for the admin API); the proxy hot path in
`app.py` stays plain ASGI.
"""

import asyncio
import logging
import time
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from allocator import pages, replies
from allocator.checks import CROSS_SITE, NO_PROOF, same_site
from allocator.identity.dev import MAX_AGE_SECONDS, DevIdentity
from allocator.pictures_routes import add_picture_routes
from allocator.runtime import Runtime
from allocator.status import SessionStatus, describe, status_of
from allocator.store import StoreUnavailable
from allocator.types import BackendError, Person
from allocator.usage_report import event_out, hours
from allocator.usage_routes import add_usage_routes, report

log = logging.getLogger(__name__)

PREFIX = "/_allocator"
API_DOCS = (f"{PREFIX}/api/docs", f"{PREFIX}/api/openapi.json")
STATIC_FILES = {
    "style.css": "text/css",
    "queue.js": "text/javascript",
    "queue-worker.js": "text/javascript",
    "badge.js": "text/javascript",
}


class NotSignedIn(Exception):
    pass


class QueueEntry(BaseModel):
    email: str
    position: int  # 1 = next
    waited_seconds: int
    silent_seconds: int  # since their last request; SDA_QUEUE_ABANDON drops them


def build_control(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="sd-allocator",
        summary="Operator API of the Stable Diffusion WebUI allocator",
        openapi_url=f"{PREFIX}/api/openapi.json",
        docs_url=f"{PREFIX}/api/docs",
        redoc_url=None,
    )
    _install_error_pages(app, runtime)
    _add_security_headers(app)
    _add_health(app, runtime)
    _add_person_routes(app, runtime)
    add_picture_routes(app, runtime, _person_dependency(runtime))
    _add_sign_in(app, runtime)
    _add_admin(app, runtime)
    return app


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("refresh", None)
    return HTMLResponse(pages.render(template, **context), status_code=status_code)


def _wants_html(request: Request) -> bool:
    return replies.wants_html(request.scope)


def _check_origin(request: Request) -> None:
    """The allocator's own forms change state only when a page of this site sent them: the
    one Origin policy (`checks.same_site`), which here also wants the proof, not only the
    absence of another site."""
    verdict = same_site(request.scope)
    if not verdict:
        raise HTTPException(403, CROSS_SITE if verdict is False else NO_PROOF)


def _install_error_pages(app: FastAPI, runtime: Runtime) -> None:
    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        return replies.challenge(request.scope, runtime.identity.login_path).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        titles = {404: "Not found", 403: "Forbidden", 405: "Method not allowed"}
        title = titles.get(exc.status_code, "Request refused")
        detail = exc.detail if exc.status_code != 404 else f"Nothing at {request.url.path}."
        return _error(request, exc.status_code, title, str(detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(request, 422, "Invalid request", problems)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s", request.url.path, exc_info=exc)
        return _error(request, 500, "Something went wrong", "The error was logged; try again.")

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable) -> Response:
        return replies.store_down(request.scope).response()

    @app.exception_handler(BackendError)
    async def backend_down(request: Request, exc: BackendError) -> Response:
        log.warning("backend error on %s: %s", request.url.path, exc)
        message = "Your WebUI could not be given back right now. Please try again in a minute."
        return _error(request, 503, "Temporarily unavailable", message, {"Retry-After": "30"})


def _error(
    request: Request, status: int, title: str, message: str, headers: Any = None
) -> Response:
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return replies.error(request.scope, status, title, message, extra).response()


def _add_security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if request.url.path not in API_DOCS:  # Swagger UI loads its scripts from a CDN
            for name, value in pages.SECURITY_HEADERS:
                response.headers.setdefault(name.decode(), value.decode())
        return response


def _add_health(app: FastAPI, runtime: Runtime) -> None:
    @app.get(f"{PREFIX}/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get(f"{PREFIX}/readyz", include_in_schema=False)
    async def readyz() -> Response:
        problems: dict[str, str] = {}
        try:
            await asyncio.wait_for(runtime.core.store.ping(), timeout=2.0)
        except (StoreUnavailable, TimeoutError) as exc:
            problems["store"] = str(exc) or "no answer within 2 s"
        identity_problem = await runtime.identity.readiness_problem()
        if identity_problem:
            problems["identity"] = identity_problem
        status = 503 if problems else 200
        return JSONResponse({"ready": not problems, "problems": problems}, status)

    @app.get(f"{PREFIX}/static/{{name}}", include_in_schema=False)
    async def static(name: str) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise HTTPException(404)
        text = resources.files("allocator").joinpath(f"static/{name}").read_text()
        return Response(text, media_type=media_type, headers={"Cache-Control": "max-age=3600"})


def _person_dependency(runtime: Runtime) -> Any:
    async def current_person(request: Request) -> Person:
        person = await runtime.identity.identify(request.scope)
        if person is None:
            raise NotSignedIn()
        return person

    return current_person


def _add_person_routes(app: FastAPI, runtime: Runtime) -> None:
    person_dep = _person_dependency(runtime)
    CurrentPerson = Annotated[Person, Depends(person_dep)]

    @app.get(f"{PREFIX}/status", response_model=SessionStatus, tags=["person"])
    async def status(person: CurrentPerson) -> SessionStatus:
        """My session: state, server, idle time and time until it is given back."""
        return await status_of(runtime, person)

    @app.post(f"{PREFIX}/release", tags=["person"])
    async def release(request: Request, person: CurrentPerson) -> Response:
        """Give my WebUI back now; while I wait for one, leave the queue."""
        _check_origin(request)
        allocations = runtime.core.allocations
        released = await allocations.release(person.email)
        left = not released and await allocations.leave_queue(person.email)
        if _wants_html(request):
            return RedirectResponse(f"{PREFIX}/", status_code=303)
        return JSONResponse({"released": released, "left_queue": left})

    @app.post(f"{PREFIX}/keep", response_model=SessionStatus, tags=["person"])
    async def keep(request: Request, person: CurrentPerson) -> SessionStatus:
        """Count now as activity on my WebUI (the "Keep my WebUI" button); my status after."""
        _check_origin(request)
        await runtime.core.store.touch({person.email: time.time()})
        return await status_of(runtime, person)

    @app.post(f"{PREFIX}/retry", include_in_schema=False)
    async def retry(request: Request, person: CurrentPerson) -> Response:
        _check_origin(request)
        await runtime.core.store.clear_progress(person.email)
        return RedirectResponse("/", status_code=303)

    @app.get(f"{PREFIX}/", include_in_schema=False)
    async def home(request: Request, person: CurrentPerson) -> Response:
        status = await status_of(runtime, person)
        allocations = runtime.core.allocations
        quota = allocations.quota
        own = await allocations.usage.own(person.email, time.time())
        return _page(
            request,
            "home.html",
            title="Your session",
            can_sign_out=runtime.identity.login_path is not None,
            is_admin=person.email in runtime.settings.admins,
            own=own,
            hours=hours,
            quota=quota.limit if quota.applies_to(person.email) else None,
            events=[event_out(e) for e in await allocations.events.recent(person.email)],
            **status.model_dump(),
        )

    @app.get(PREFIX, include_in_schema=False)
    async def home_redirect() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=308)


def _add_sign_in(app: FastAPI, runtime: Runtime) -> None:
    identity = runtime.identity
    if not isinstance(identity, DevIdentity):
        return

    @app.get(f"{PREFIX}/login", include_in_schema=False)
    async def login_form(request: Request, next: str = "/") -> Response:
        return _page(request, "login.html", title="Sign in", next=_safe_next(next), email="")

    @app.post(f"{PREFIX}/login", include_in_schema=False)
    async def login(
        request: Request,
        email: Annotated[str, Form(max_length=320)] = "",
        next: Annotated[str, Form(max_length=2048)] = "/",
    ) -> Response:
        _check_origin(request)
        signed = identity.sign_in(email)
        if signed is None:
            error = "That does not look like an email address."
            return _page(
                request,
                "login.html",
                400,
                title="Sign in",
                error=error,
                next=_safe_next(next),
                email=email,
            )
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(
            identity.cookie_name,
            signed[1],
            max_age=MAX_AGE_SECONDS,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.post(f"{PREFIX}/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        _check_origin(request)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(identity.cookie_name, path="/")
        return response


def _safe_next(target: str) -> str:
    """Only a path on this site (no open redirect to another host)."""
    printable = all(" " < char < "\x7f" for char in target)
    if not printable or not target.startswith("/") or target[1:2] in ("/", "\\"):
        return "/"
    return target


def _add_admin(app: FastAPI, runtime: Runtime) -> None:
    person_dep = _person_dependency(runtime)

    async def admin(person: Annotated[Person, Depends(person_dep)]) -> Person:
        if person.email not in runtime.settings.admins:
            raise HTTPException(403, "Only administrators (SDA_ADMINS) may do this.")
        return person

    Admin = Annotated[Person, Depends(admin)]
    add_usage_routes(app, runtime, admin)

    async def all_sessions() -> list[SessionStatus]:
        now = time.time()
        views = await runtime.core.store.all_views(now)
        queued = await runtime.core.queue.unserved()
        return [describe(runtime, view, now, queued) for view in views]

    @app.get(f"{PREFIX}/api/sessions", response_model=list[SessionStatus], tags=["admin"])
    async def list_sessions(_: Admin) -> list[SessionStatus]:
        """Every session, oldest activity first."""
        return await all_sessions()

    @app.get(f"{PREFIX}/api/sessions/{{email}}", response_model=SessionStatus, tags=["admin"])
    async def show_session(email: str, _: Admin) -> SessionStatus:
        """One person's session."""
        view = await runtime.core.store.view(email.lower(), time.time())
        if view is None:
            raise HTTPException(404, f"{email} has no session.")
        return describe(runtime, view, time.time(), await runtime.core.queue.unserved())

    @app.delete(f"{PREFIX}/api/sessions/{{email}}", status_code=204, tags=["admin"])
    async def release_session(email: str, _: Admin) -> Response:
        """Release a person's WebUI now."""
        if not await runtime.core.allocations.release(email.lower(), by="admin"):
            raise HTTPException(404, f"{email} has no session.")
        return Response(status_code=204)

    @app.get(f"{PREFIX}/api/queue", response_model=list[QueueEntry], tags=["admin"])
    async def list_queue(_: Admin) -> list[QueueEntry]:
        """Everyone waiting for a GPU, next first."""
        return await queue_entries()

    @app.delete(f"{PREFIX}/api/queue/{{email}}", status_code=204, tags=["admin"])
    async def remove_from_queue(email: str, _: Admin) -> Response:
        """Take a person out of the queue (the ones behind move up)."""
        if not await runtime.core.allocations.leave_queue(email.lower(), "removed"):
            raise HTTPException(404, f"{email} is not in the queue.")
        return Response(status_code=204)

    async def queue_entries() -> list[QueueEntry]:
        now = time.time()
        return [
            QueueEntry(
                email=waiting.email,
                position=waiting.position,
                waited_seconds=int(max(0.0, now - waiting.joined)),
                silent_seconds=int(max(0.0, now - waiting.seen)),
            )
            for waiting in await runtime.core.queue.waiting()
        ]

    @app.get(f"{PREFIX}/admin", include_in_schema=False)
    async def admin_page(request: Request, _: Admin) -> Response:
        return _page(
            request,
            "admin.html",
            title="Sessions",
            sessions=await all_sessions(),
            queue=await queue_entries(),
            usage=await report(runtime, None),
            hours=hours,
        )

    @app.post(f"{PREFIX}/admin/dequeue", include_in_schema=False)
    async def admin_dequeue(
        request: Request, _: Admin, email: Annotated[str, Form(max_length=320)]
    ) -> Response:
        _check_origin(request)
        await runtime.core.allocations.leave_queue(email.lower(), "removed")
        return RedirectResponse(f"{PREFIX}/admin", status_code=303)

    @app.post(f"{PREFIX}/admin/release", include_in_schema=False)
    async def admin_release(
        request: Request, _: Admin, email: Annotated[str, Form(max_length=320)]
    ) -> Response:
        _check_origin(request)
        await runtime.core.allocations.release(email.lower(), by="admin")
        return RedirectResponse(f"{PREFIX}/admin", status_code=303)
