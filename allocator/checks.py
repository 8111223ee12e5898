"""RequestChecks: what every request must pass before anything else looks at it.

Header size, a Host this allocator answers to, and for state-changing requests and
WebSockets from a browser, an Origin of this same site (no cross-site requests riding on
the person's cookies).
"""

from __future__ import annotations

from allocator.headers import valid_host
from allocator.settings import Settings
from allocator.types import Scope

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MEMO_LIMIT = 256


class RequestChecks:
    def __init__(self, settings: Settings) -> None:
        accepted = settings.accepted_hosts
        self._any_host = "*" in accepted
        self._hosts = {name.lower().encode() for name in accepted}
        self._max_header_bytes = settings.max_header_bytes
        self._good_hosts: set[bytes] = set()

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, reason) when the request must be refused, else None."""
        size = 0
        host = origin = None
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
        if size > self._max_header_bytes:
            return 431, "The request headers are too large."
        if host is None or not self._host_ok(host):
            return 400, "The Host header is missing or not accepted here."
        checks_origin = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if checks_origin and origin is not None and origin.split(b"://", 1)[-1] != host:
            return 403, "Requests from another site are refused."
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
