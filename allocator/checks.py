"""RequestChecks: ASGI middleware for what every request must pass before anything else.

Header size, a Host this allocator answers to, and for state-changing requests and
WebSockets no other site as the source (no cross-site request riding on the person's
cookies). Load balancers' health probes pass unchecked. It wraps both the proxy and the
control app, in the shape of Starlette's `TrustedHostMiddleware`.
"""

from __future__ import annotations

from allocator import replies
from allocator.headers import valid_host
from allocator.settings import Settings
from allocator.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HEALTH_PATHS = frozenset({"/_allocator/healthz", "/_allocator/readyz"})
WS_POLICY_VIOLATION = 1008
CROSS_SITE = "Requests from another site are refused."
NO_PROOF = "This must come from a page of this site (the request named none)."
_MEMO_LIMIT = 256


def same_site(scope: Scope) -> bool | None:
    """The one Origin policy: whether a request comes from a page of this site, judged by its
    Origin, else its Referer, against its Host. None when it carries neither: not a
    browser's cross-site request (browsers send Origin with every cross-site POST and
    WebSocket), but no proof of a same-site page either."""
    _, host, origin, referer = _scan(scope)
    return _judge(host, origin, referer)


def _scan(scope: Scope) -> tuple[int, bytes | None, bytes | None, bytes | None]:
    """One pass over the headers: their size, Host, Origin and Referer."""
    size = 0
    host = origin = referer = None
    for name, value in scope["headers"]:
        size += len(name) + len(value)
        if name == b"host":
            host = value
        elif name == b"origin":
            origin = value
        elif name == b"referer":
            referer = value
    return size, host, origin, referer


def _judge(host: bytes | None, origin: bytes | None, referer: bytes | None) -> bool | None:
    source = origin if origin is not None else referer
    if source is None:
        return None
    return host is not None and _authority(source) == host


def _authority(url: bytes) -> bytes | None:
    """`host[:port]` of an absolute URL (an Origin is one); None for anything else ("null")."""
    scheme, separator, rest = url.partition(b"://")
    if not separator or not scheme:
        return None
    for end in (b"/", b"?", b"#"):
        rest = rest.split(end, 1)[0]
    return rest


class RequestChecks:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        accepted = settings.accepted_hosts
        self._any_host = "*" in accepted
        self._hosts = {name.lower().encode() for name in accepted}
        self._max_header_bytes = settings.max_header_bytes
        self._good_hosts: set[bytes] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        problem = None
        if kind in ("http", "websocket") and scope["path"] not in HEALTH_PATHS:
            problem = self.refusal(scope)
        if problem is None:
            await self.app(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
        else:
            await replies.refused(scope, *problem).send(send)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, reason) when the request must be refused, else None."""
        size, host, origin, referer = _scan(scope)
        if size > self._max_header_bytes:
            return 431, "The request headers are too large."
        if host is None or not self._host_ok(host):
            return 400, "The Host header is missing or not accepted here."
        changes_state = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if changes_state and _judge(host, origin, referer) is False:
            return 403, CROSS_SITE
        return None

    def _host_ok(self, host: bytes) -> bool:
        if host in self._good_hosts:
            return True
        if not valid_host(host):
            return False
        name = host if host.endswith(b"]") else host.rsplit(b":", 1)[0]
        if not self._any_host and name.lower() not in self._hosts:
            return False
        if len(self._good_hosts) < _MEMO_LIMIT:
            self._good_hosts.add(host)
        return True
