"""Which headers cross the proxy, in each direction."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from multidict import CIMultiDict

from allocator.types import Person, Scope

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Identity is ours to set: whatever a client sends under these names is dropped.
CLIENT_IDENTITY = frozenset(
    {
        b"x-forwarded-user",
        b"x-forwarded-email",
        b"x-forwarded-groups",
        b"x-forwarded-preferred-username",
        b"x-forwarded-access-token",
        b"x-auth-request-user",
        b"x-auth-request-email",
        b"x-auth-request-groups",
        b"x-remote-user",
        b"remote-user",
    }
)
# Set by us, or meaningless upstream (the WebSocket handshake is redone by the client library).
REPLACED = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"expect", b"host"}
)
WEBSOCKET_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)
_DROP_UPSTREAM = HOP_BY_HOP | CLIENT_IDENTITY | REPLACED
_PROTO = {"http": b"http", "https": b"https", "ws": b"http", "wss": b"https"}
_HOST = re.compile(
    rb"^(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:.]{2,45}\])(?::\d{1,5})?$"
)


@dataclass(frozen=True, slots=True)
class Withheld:
    """Credentials meant for us, never for the WebUI (which runs whatever a person or an
    extension put there): our session cookie, and behind IAP a script's `Authorization:
    Bearer` Google ID token, which IAP accepted and which would open any app behind the same
    OAuth client for an hour. Basic credentials (A1111's --api-auth) still pass."""

    cookie: bytes | None
    bearer: bool = False


def valid_host(host: bytes) -> bool:
    return _HOST.match(host.lower()) is not None


def upstream_headers(
    scope: Scope, person: Person, withheld: Withheld, websocket: bool = False
) -> list[tuple[bytes, bytes]]:
    """The request headers the WebUI sees: the client's, cleaned, plus who and where from."""
    out: list[tuple[bytes, bytes]] = []
    host = b""
    forwarded_for = b""
    connection_named: set[bytes] = set()
    drop = _DROP_UPSTREAM | WEBSOCKET_HANDSHAKE if websocket else _DROP_UPSTREAM
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
        elif name == b"x-forwarded-for":
            forwarded_for = value
        elif name == b"connection":
            connection_named.update(v.strip().lower() for v in value.split(b","))
        elif name == b"transfer-encoding":
            # The server de-chunked the body; a Content-Length beside it would let the body
            # say something else than its length to the WebUI (request smuggling).
            connection_named.add(b"content-length")
        if name in drop or name.startswith(b"x-goog-"):
            continue
        if name == b"authorization" and withheld.bearer and value[:7].lower() == b"bearer ":
            continue
        if name == b"cookie" and withheld.cookie is not None and withheld.cookie in value:
            value = _without_cookie(value, withheld.cookie)
            if not value:
                continue
        out.append((name, value))
    named = connection_named - {b"close", b"keep-alive", b"upgrade"}
    if named:
        out = [(name, value) for name, value in out if name not in named]
    client = scope.get("client")
    client_ip = client[0] if client else "unknown"
    if host:
        out.append((b"host", host))
        out.append((b"x-forwarded-host", host))
    out.append((b"x-forwarded-for", _forwarded_for(forwarded_for.decode("latin-1"), client_ip)))
    out.append((b"x-forwarded-proto", _PROTO.get(scope.get("scheme", "http"), b"http")))
    email = person.email.encode()
    out.append((b"x-forwarded-email", email))
    out.append((b"x-forwarded-user", email))
    return out


def as_multidict(headers: list[tuple[bytes, bytes]]) -> CIMultiDict[str]:
    return CIMultiDict((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers)


# The server adds its own Date; two would confuse caches (nginx hides the upstream's too).
_DROP_DOWNSTREAM = HOP_BY_HOP | {b"date"}


def downstream_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response headers the browser sees: the WebUI's (lowercased), minus hop-by-hop."""
    return [(name, value) for name, value in raw if name not in _DROP_DOWNSTREAM]


def _forwarded_for(chain: str, client_ip: str) -> bytes:
    """Append the client, unless uvicorn already took it from a trusted proxy's chain."""
    if chain and chain.rsplit(",", 1)[-1].strip() != client_ip:
        chain = f"{chain}, {client_ip}"
    return (chain or client_ip).encode("latin-1")


def _without_cookie(header: bytes, name: bytes) -> bytes:
    prefix = name + b"="
    kept = [part for part in header.split(b";") if not part.strip().startswith(prefix)]
    return b";".join(kept).strip()
