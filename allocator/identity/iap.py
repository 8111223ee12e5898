"""IapIdentity: a person is a verified Google IAP JWT (`x-goog-iap-jwt-assertion`), nothing else.

The unsigned `x-goog-authenticated-user-email` can be forged by anyone who reaches the
allocator around IAP; when present it must agree with the token. Verification uses joserfc
(the Authlib project's maintained JOSE library): ES256 only, `kid` from IAP's JWK set,
`iss`, exact `aud`, `exp` and `iat` with 30 s leeway, a lifetime IAP never exceeds. A token is
verified once and then cached until it expires, so the hot path does a dictionary lookup.
"""

from __future__ import annotations

import base64
import json
import logging
import time

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from allocator.identity.emails import person_from_email
from allocator.identity.keyset import KeySetSource
from allocator.types import Person, Scope

log = logging.getLogger(__name__)

ASSERTION = b"x-goog-iap-jwt-assertion"
ISSUER = "https://cloud.google.com/iap"
ALGORITHM = "ES256"
LEEWAY = 30
MAX_LIFETIME = 660  # IAP's tokens live 10 minutes
MAX_TOKEN_BYTES = 8192
CACHE_LIMIT = 50_000
GOOGLE_PREFIX = "accounts.google.com:"


class Refused(Exception):
    """Why a token is not accepted; logged, never shown to the client."""


class IapIdentity:
    mode = "iap"
    login_path = None

    def __init__(
        self, audience: str, jwks_url: str, unsigned_header: str, key_refetch: float = 30.0
    ) -> None:
        self._audience = audience
        self._keys = KeySetSource(jwks_url, key_refetch)
        self._unsigned = unsigned_header.lower().encode("latin-1")
        self._verified: dict[bytes, tuple[Person, float]] = {}  # token → (person, exp)

    async def start(self) -> None:
        await self._keys.start()

    async def close(self) -> None:
        await self._keys.close()

    async def readiness_problem(self) -> str | None:
        return await self._keys.check()

    async def identify(self, scope: Scope) -> Person | None:
        token, unsigned = self._headers(scope)
        if token is None:
            if unsigned is not None:
                log.warning("refused: an unsigned identity header without an IAP token")
            return None
        person = await self._person(token)
        if person is None:
            return None
        if unsigned is not None and not _same_person(unsigned, person):
            log.warning("refused: the unsigned identity header does not match the IAP token")
            return None
        return person

    def _headers(self, scope: Scope) -> tuple[bytes | None, bytes | None]:
        token = unsigned = None
        for name, value in scope["headers"]:
            if name == ASSERTION:
                if token is not None:
                    return None, None  # two tokens: refuse rather than choose
                token = value
            elif name == self._unsigned:
                unsigned = value
        return token, unsigned

    async def _person(self, token: bytes) -> Person | None:
        cached = self._verified.get(token)
        now = time.time()
        if cached is not None and cached[1] + LEEWAY > now:
            return cached[0]
        try:
            person, expires = await self._verify(token)
        except Refused as exc:
            log.warning("refused an IAP token: %s", exc)
            return None
        if len(self._verified) >= CACHE_LIMIT:
            self._forget_expired(now)
        self._verified[token] = (person, expires)
        return person

    async def _verify(self, raw: bytes) -> tuple[Person, float]:
        if len(raw) > MAX_TOKEN_BYTES:
            raise Refused(f"token of {len(raw)} bytes")
        text = raw.decode("latin-1")
        kid = _checked_header(text)
        keys = await self._keys.for_kid(kid)
        if keys is None:
            raise Refused(f"no key {kid!r} in the IAP key set")
        try:
            token = jwt.decode(text, keys, algorithms=[ALGORITHM])
            self._registry().validate(token.claims)
        except (JoseError, ValueError, TypeError) as exc:
            raise Refused(f"{type(exc).__name__}: {exc}") from None
        claims = token.claims
        if claims["exp"] - claims["iat"] > MAX_LIFETIME:
            raise Refused("lifetime longer than IAP's")
        person = person_from_email(str(claims["email"]))
        if person is None:
            raise Refused("the email claim is not an email address")
        return person, float(claims["exp"])

    def _registry(self) -> JWTClaimsRegistry:
        return JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": ISSUER},
            aud={"essential": True, "value": self._audience},
            exp={"essential": True},
            iat={"essential": True},
            email={"essential": True},
        )

    def _forget_expired(self, now: float) -> None:
        for token in [t for t, (_, exp) in self._verified.items() if exp + LEEWAY <= now]:
            del self._verified[token]
        if len(self._verified) >= CACHE_LIMIT:  # all live (a flood of valid tokens): start over
            self._verified.clear()


def _same_person(unsigned: bytes, person: Person) -> bool:
    """Whether IAP's unsigned header names `person` (cheap first; on every request)."""
    text = unsigned.decode("latin-1")
    if text.removeprefix(GOOGLE_PREFIX) == person.email:
        return True
    return person_from_email(text) == person


def _checked_header(token: str) -> str:
    """The `kid`, after checking the header names ES256 and a key (before any key lookup)."""
    head, _, rest = token.partition(".")
    if not rest or rest.count(".") != 1:
        raise Refused("not a compact JWS")
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(f"unreadable header: {exc}") from None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        raise Refused(f"alg {header.get('alg') if isinstance(header, dict) else None!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Refused("no kid")
    return kid
