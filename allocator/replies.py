"""The answers a person gets from the allocator when refused, challenged or waiting.

One place for both apps: the proxy sends a `Reply` on the raw ASGI `send`, the control app
returns it as a Starlette response. Browsers (Accept: text/html) get a page, every other
client JSON with the same facts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.responses import Response

from allocator import metrics
from allocator.ledger import resets_at
from allocator.pages import SECURITY_HEADERS, TITLES, render
from allocator.types import Progress, Scope, Send, State

Headers = list[tuple[bytes, bytes]]

RETRY_AFTER = {State.NO_CAPACITY: 10, State.FAILED: 30, State.READY: 1, State.QUEUED: 10}
STORE_RETRY_AFTER = b"10"
STORE_DOWN = "Sessions cannot be looked up right now. Please try again in a minute."


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Headers  # every header, framing and security headers included
    body: bytes

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})
        metrics.count_response(self.status)

    def response(self) -> Response:
        response = Response(self.body, self.status)
        response.raw_headers = list(self.headers)
        return response


def wants_html(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept":
            return b"text/html" in value
    return False


def _reply(status: int, body: bytes, content_type: bytes, extra: Headers) -> Reply:
    framing = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    return Reply(status, [*framing, *SECURITY_HEADERS, *extra], body)


def json_reply(status: int, data: dict[str, Any], extra: Headers | None = None) -> Reply:
    return _reply(status, json.dumps(data).encode(), b"application/json", extra or [])


def error(
    scope: Scope, status: int, title: str, message: str, extra: Headers | None = None
) -> Reply:
    """A page (or JSON `{"error", "message"}`) saying what went wrong, for people."""
    if wants_html(scope):
        page = render("error.html", title=title, message=message, status=status, refresh=None)
        return _reply(status, page, b"text/html; charset=utf-8", extra or [])
    return json_reply(status, {"error": title, "message": message}, extra)


def refused(scope: Scope, status: int, reason: str) -> Reply:
    return error(scope, status, "Request refused", reason)


def store_down(scope: Scope) -> Reply:
    return error(
        scope, 503, "Temporarily unavailable", STORE_DOWN, [(b"retry-after", STORE_RETRY_AFTER)]
    )


def challenge(scope: Scope, login_path: str | None) -> Reply:
    """Nobody is signed in: a browser's page load goes to the sign-in form (and comes back to
    the same path and query afterwards); anything else gets 401."""
    if login_path and wants_html(scope) and scope.get("method") == "GET":
        query = scope.get("query_string", b"").decode("latin-1")
        back = scope["path"] + (f"?{query}" if query else "")
        location = f"{login_path}?next={quote(back, safe='')}".encode()
        return Reply(
            303, [(b"location", location), (b"content-length", b"0"), *SECURITY_HEADERS], b""
        )
    if login_path:
        extra = [(b"www-authenticate", b'Cookie realm="sd-allocator"')]
        return error(scope, 401, "Not signed in", "Sign in first.", extra)
    return error(scope, 401, "Not signed in", "No verified identity came with this request.")


def waiting(scope: Scope, progress: Progress) -> Reply:
    """503 with Retry-After while a WebUI is not ready (a refresh when it just became ready).
    A queued person's page updates itself by script (reloading only without one)."""
    over_quota = progress.state is State.OVER_QUOTA
    resets = resets_at(time.time()) if over_quota else None
    retry = max(1, int(resets - time.time())) if resets else RETRY_AFTER.get(progress.state, 2)
    extra = [(b"retry-after", str(retry).encode())]
    spot = progress.spot
    if wants_html(scope):
        queued = spot is not None
        settled = progress.state is State.FAILED or over_quota
        page = render(
            "progress.html",
            title=TITLES[progress.state],
            state=progress.state.value,
            message=progress.message,
            restarted=progress.restarted,
            waited=None if over_quota else int(time.time() - progress.since),
            refresh=None if settled or queued else retry,
            noscript_refresh=retry if queued else None,
            position=spot.position if spot else None,
            queue_length=spot.length if spot else None,
            eta_text=eta_text(spot.eta_seconds) if spot else None,
        )
        return _reply(503, page, b"text/html; charset=utf-8", extra)
    data: dict[str, Any] = {
        "state": progress.state.value,
        "message": progress.message,
        "restarted": progress.restarted,
        "retry_after": retry,
    }
    if resets is not None:
        data["resets_at"] = resets
    if spot is not None:
        data |= {
            "position": spot.position,
            "queue_length": spot.length,
            "eta_seconds": spot.eta_seconds,
            "starting_servers": spot.starting,
        }
    return json_reply(503, data, extra)


def eta_text(seconds: int | None) -> str:
    """The estimate as the queue page words it (queue.js words it the same way)."""
    if seconds is None:
        return "Estimated wait: unknown."
    if seconds < 60:
        return "Estimated wait: less than a minute."
    minutes = round(seconds / 60)
    return f"Estimated wait: about {minutes} minute{'' if minutes == 1 else 's'}."
