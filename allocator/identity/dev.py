"""DevIdentity: a sign-in form and a signed cookie, for running on one's own machine.

Anyone can sign in as anyone, so `Settings` refuses it on a non-loopback address unless
forced. The cookie is signed with `SDA_SECRET_KEY`, or a key kept in the data folder.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from allocator.identity.emails import person_from_email
from allocator.types import Person, Scope

COOKIE_NAME = "sda_session"
MAX_AGE_SECONDS = 30 * 24 * 3600
_MEMO_SECONDS = 60.0
_MEMO_LIMIT = 10_000


class DevIdentity:
    mode = "dev"
    login_path = "/_allocator/login"
    cookie_name = COOKIE_NAME

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="sda-dev-login")
        self._memo: dict[str, tuple[Person, float]] = {}
        self._cookie_prefix = COOKIE_NAME.encode() + b"="

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def readiness_problem(self) -> str | None:
        return None

    async def identify(self, scope: Scope) -> Person | None:
        token = self._token(scope)
        return self._verify(token) if token else None

    def sign_in(self, email: str) -> tuple[Person, str] | None:
        """The person and the cookie value for `email`, or None if it is not an email."""
        person = person_from_email(email)
        if person is None:
            return None
        return person, self._serializer.dumps(person.email)

    def _token(self, scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"cookie" and self._cookie_prefix in value:
                for part in value.split(b";"):
                    part = part.strip()
                    if part.startswith(self._cookie_prefix):
                        return str(part[len(self._cookie_prefix) :].decode("latin-1"))
        return None

    def _verify(self, token: str) -> Person | None:
        now = time.monotonic()
        memo = self._memo.get(token)
        if memo is not None and now - memo[1] < _MEMO_SECONDS:
            return memo[0]
        try:
            email = self._serializer.loads(token, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            return None
        person = person_from_email(email) if isinstance(email, str) else None
        if person is not None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[token] = (person, now)
        return person


def secret_key(configured: str | None, data_dir: Path) -> str:
    """`SDA_SECRET_KEY`, or one generated once and kept (mode 0600) in the data folder."""
    if configured:
        return configured
    path = data_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    draft = data_dir / f".secret_key.{os.getpid()}"
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key)
    try:
        os.link(draft, path)  # atomic: a racing worker either wins or reads the winner's key
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        draft.unlink()
    return key
