"""The give-back countdown badge inside the WebUI's own page.

A person working in their WebUI should see that it is about to be given back without going
to the session page. The forwarder (`proxy.py`) adds one same-origin script,
`/_allocator/static/badge.js`, to the WebUI's top page; the script polls `/_allocator/status`
and shows the countdown with "Keep my WebUI" and "Give it back now".

Only a top-level navigation (a GET with `Sec-Fetch-Dest: document`) answered 200 `text/html`
gets it, never an API call, a stream, a HEAD or a range, never a file (a response offering
byte ranges or naming itself with Content-Disposition: what file servers do, and a download
must arrive as it was), and never a page it could break: an encoding we cannot rewrite, a
Content-Security-Policy that would refuse the script, `Cache-Control: no-transform`, a body
too big to hold in memory.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable

Headers = list[tuple[bytes, bytes]]

SCRIPT_PATH = "/_allocator/static/badge.js"
SCRIPT_TAG = b'<script src="' + SCRIPT_PATH.encode() + b'" defer></script>'
BODY_LIMIT = 8 * 1024 * 1024  # larger pages go through unchanged (memory per request)
HTML_LIMIT = 4 * BODY_LIMIT  # a decompressed page, so a small gzip bomb cannot grow past it
BODY_WAIT = 10.0  # seconds; a page still arriving then is streamed through unchanged
GZIP_LEVEL = 6

# A changed body no longer matches these.
_STALE = frozenset(
    {b"content-length", b"content-md5", b"digest", b"content-digest", b"repr-digest"}
)
_HEAD_END = re.compile(rb"</head\s*>", re.IGNORECASE)
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)
_NOT_A_PAGE = frozenset({b"content-range", b"content-disposition"})
_SCRIPT_SOURCES = (b"script-src-elem", b"script-src", b"default-src")
_FETCH_SOURCES = (b"connect-src", b"default-src")


# -- the request: decided before anything is forwarded ---------------------------------------


def wanted(request_headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """A top-level navigation (an iframe's is `iframe`, a fetch's `empty`); one header scan."""
    for name, value in request_headers:
        if name == b"sec-fetch-dest":
            return value == b"document"
    return False


def narrowed(headers: Headers) -> Headers:
    """`headers` offering the WebUI only encodings `with_script` rewrites (no br, no zstd)."""
    offered = b",".join(value for name, value in headers if name == b"accept-encoding")
    encoding = b"gzip" if accepts_gzip(offered) else b"identity"
    kept = [(name, value) for name, value in headers if name != b"accept-encoding"]
    return [*kept, (b"accept-encoding", encoding)]


def accepts_gzip(accept_encoding: bytes) -> bool:
    weights: dict[bytes, float] = {}
    for item in accept_encoding.lower().split(b","):
        coding, _, parameters = item.partition(b";")
        weights[coding.strip()] = _quality(parameters)
    weight = weights.get(b"gzip", weights.get(b"x-gzip", weights.get(b"*", 0.0)))
    return weight > 0


def _quality(parameters: bytes) -> float:
    for parameter in parameters.split(b";"):
        name, _, value = parameter.partition(b"=")
        if name.strip() == b"q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


# -- the response: decided on its head -------------------------------------------------------


def rewritable(status: int, headers: Headers) -> bool:
    """Whether a candidate's response may carry the badge, from its head alone."""
    if status != 200:
        return False
    content_type = encoding = b""
    policies: list[bytes] = []
    for name, value in headers:
        if name == b"content-type":
            content_type = value.lower()
        elif name == b"content-encoding":
            encoding = value.strip().lower()
        elif name == b"content-security-policy":
            policies.append(value)
        elif name in _NOT_A_PAGE or _forbids_change(name, value):
            return False
    return (
        _is_html(content_type)
        and encoding in (b"", b"identity", b"gzip")
        and all(allows_badge(policy) for policy in policies)
    )


def _forbids_change(name: bytes, value: bytes) -> bool:
    if name == b"accept-ranges":
        return value.strip().lower() != b"none"  # a file server's answer
    return name == b"cache-control" and b"no-transform" in value.lower()


def _is_html(content_type: bytes) -> bool:
    media_type, _, parameters = content_type.partition(b";")
    if media_type.strip() != b"text/html":
        return False
    # Our tag is ASCII: it may only go into a body whose encoding ASCII is part of.
    return b"charset=utf-16" not in parameters and b"charset=utf-32" not in parameters


def allows_badge(policy: bytes) -> bool:
    """Whether a Content-Security-Policy lets the page load a same-origin script that then
    fetches from its own origin. A header may hold several policies; each one is enforced."""
    for one in policy.split(b","):
        directives = _directives(one)
        script = _allows_self(directives, _SCRIPT_SOURCES)
        if not (script and _allows_self(directives, _FETCH_SOURCES)):
            return False
    return True


def _directives(policy: bytes) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for directive in policy.split(b";"):
        tokens = directive.lower().split()
        if tokens:
            found.setdefault(tokens[0], tokens[1:])  # the first of a repeated one counts
    return found


def _allows_self(directives: dict[bytes, list[bytes]], names: tuple[bytes, ...]) -> bool:
    """By the first of `names` present (each falls back to the next). With 'strict-dynamic'
    only nonces and hashes count, so an injected tag cannot be allowed at all."""
    for name in names:
        sources = directives.get(name)
        if sources is not None:
            return b"'strict-dynamic'" not in sources and (b"'self'" in sources or b"*" in sources)
    return True


def encoding_of(headers: Headers) -> bytes:
    for name, value in headers:
        if name == b"content-encoding":
            return value.strip().lower()
    return b""


# -- the page ------------------------------------------------------------------------------


def with_script(body: bytes, encoding: bytes) -> bytes | None:
    """The body with the script tag in it, in the same encoding; None when it cannot be
    read (a broken or oversized gzip stream): the page then goes through unchanged."""
    if encoding != b"gzip":
        return inserted(body)
    html = _gunzip(body)
    if html is None:
        return None
    return gzip.compress(inserted(html), compresslevel=GZIP_LEVEL, mtime=0)


def inserted(html: bytes) -> bytes:
    """Before `</head>`, else before `</body>`, else at the end."""
    for closing in (_HEAD_END, _BODY_END):
        found = closing.search(html)
        if found is not None:
            return html[: found.start()] + SCRIPT_TAG + html[found.start() :]
    return html + SCRIPT_TAG


def _gunzip(body: bytes) -> bytes | None:
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        html = stream.decompress(body, HTML_LIMIT)
    except zlib.error:
        return None
    if not stream.eof or stream.unconsumed_tail or stream.unused_data:
        return None  # truncated, too large, or several members
    return html


def page_headers(headers: Headers, length: int) -> Headers:
    """The response headers for the changed body: its length, a weak ETag (the page is
    equivalent, not byte-identical; the WebUI still answers If-None-Match with 304), and
    Vary: Sec-Fetch-Dest, since a fetch of the same URL gets the page without the badge."""
    changed = [(name, _weak(value) if name == b"etag" else value) for name, value in headers]
    kept = [(name, value) for name, value in changed if name not in _STALE]
    return [*kept, (b"content-length", str(length).encode()), (b"vary", b"Sec-Fetch-Dest")]


def _weak(etag: bytes) -> bytes:
    return etag if etag.startswith(b"W/") else b"W/" + etag
