"""Turning what a client claims into a `Person`, or refusing it."""

from __future__ import annotations

import re

from allocator.slugs import slug_for
from allocator.types import Person

MAX_EMAIL_LENGTH = 254
GOOGLE_PREFIX = "accounts.google.com:"
# Deliberately plain: one @, printable ASCII "atext" before it (RFC 5322, no quotes, no
# controls), a dotted host name after it.
_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9-]+)+$"
)


def person_from_email(raw: str) -> Person | None:
    """The person for `raw`, or None when it is not a plausible email address."""
    email = raw.strip().removeprefix(GOOGLE_PREFIX).lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        return None
    return Person(email=email, slug=slug_for(email))
