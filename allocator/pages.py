"""What people see from the allocator itself: progress, errors, sign-in, their session.

Browsers (Accept: text/html) get a page, every other client JSON with the same facts.
"""

from __future__ import annotations

import json
import time
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from allocator import metrics
from allocator.types import Progress, Scope, Send, State

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        b"base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
TITLES = {
    State.NONE: "No WebUI yet",
    State.ALLOCATING: "Finding a WebUI for you",
    State.STARTING: "Starting your WebUI",
    State.READY: "Your WebUI is ready",
    State.NO_CAPACITY: "All GPUs are busy",
    State.FAILED: "Your WebUI could not start",
}
RETRY_AFTER = {State.NO_CAPACITY: 10, State.FAILED: 30, State.READY: 1}

_templates = Environment(
    loader=PackageLoader("allocator", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
)


def render(template: str, **context: Any) -> bytes:
    return _templates.get_template(template).render(**context).encode()


def wants_html(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept":
            return b"text/html" in value
    return False


async def send_body(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    metrics.count_response(status)


async def send_json(
    send: Send, status: int, data: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send_body(send, status, json.dumps(data).encode(), b"application/json", extra or [])


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    title: str,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    if wants_html(scope):
        page = render("error.html", title=title, message=message, status=status, refresh=None)
        await send_body(send, status, page, b"text/html; charset=utf-8", extra or [])
    else:
        await send_json(send, status, {"error": title, "message": message}, extra)


async def send_progress(scope: Scope, send: Send, progress: Progress) -> None:
    """503 with Retry-After while a WebUI is not ready (a refresh when it just became ready)."""
    retry = RETRY_AFTER.get(progress.state, 2)
    extra = [(b"retry-after", str(retry).encode())]
    if wants_html(scope):
        page = render(
            "progress.html",
            title=TITLES[progress.state],
            state=progress.state.value,
            message=progress.message,
            restarted=progress.restarted,
            waited=int(time.time() - progress.since),
            refresh=None if progress.state is State.FAILED else retry,
        )
        await send_body(send, 503, page, b"text/html; charset=utf-8", extra)
    else:
        data = {
            "state": progress.state.value,
            "message": progress.message,
            "restarted": progress.restarted,
            "retry_after": retry,
        }
        await send_json(send, 503, data, extra)
