"""What people see from the allocator itself: its pages (progress, errors, sign-in, their
session), rendered from the templates, and the security headers every page carries.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from allocator.types import State

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
    State.QUEUED: "Waiting for a GPU",
    State.NO_CAPACITY: "All GPUs are busy",
    State.FAILED: "Your WebUI could not start",
    State.OVER_QUOTA: "Today's GPU hours are used up",
}
_templates = Environment(
    loader=PackageLoader("allocator", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
)


def render(template: str, **context: Any) -> bytes:
    return _templates.get_template(template).render(**context).encode()
