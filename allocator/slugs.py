"""Email → slug: a readable, collision-free Kubernetes label value and folder name.

Scheme (stable: changing it orphans pods and folders): the whole email lowercased, every run of
characters outside `[a-z0-9]` turned into one `-`, trimmed to 46 characters, then `-` and the
first 16 hex digits of sha256(email). `a.b@c` and `a@b.c` share a readable prefix but never a
hash, so they never share a slug. At most 63 characters of `[a-z0-9-]`, alphanumeric at both ends.
"""

from __future__ import annotations

import hashlib
import re

PREFIX_LENGTH = 46
HASH_LENGTH = 16
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def slug_for(email: str) -> str:
    normal = email.strip().lower()
    digest = hashlib.sha256(normal.encode()).hexdigest()[:HASH_LENGTH]
    prefix = _NOT_ALNUM.sub("-", normal)[:PREFIX_LENGTH].strip("-")
    return f"{prefix}-{digest}" if prefix else digest
