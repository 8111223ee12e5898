"""A stand-in for Google IAP, for tests and `make bench`: EC P-256 keys, a JWK set served on
loopback, and tokens made the way IAP makes them (or broken on purpose)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey

from background import BackgroundLoop, serve

AUDIENCE = "/projects/123456789/global/backendServices/987654321"
ASSERTION_HEADER = "x-goog-iap-jwt-assertion"
ISSUER = "https://cloud.google.com/iap"


def new_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid})


def claims(who: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "sub": f"accounts.google.com:{abs(hash(who))}",
        "email": who,
    }
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def token(key: ECKey, who: str, header: dict[str, Any] | None = None, **changes: Any) -> str:
    head = {"alg": "ES256", "kid": key.kid, **(header or {})}
    return jwt.encode(head, claims(who, **changes), key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes = b"") -> str:
    """A token no JOSE library would make: `alg: none`, or HMAC with a chosen secret."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = b""
    if header.get("alg") == "HS256":
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def public_pem(key: ECKey) -> bytes:
    return key.as_pem(private=False)


class KeyServer:
    """Serves {"keys": [...]} like https://www.gstatic.com/iap/verify/public_key-jwk."""

    def __init__(self, *keys: ECKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.failing = False
        self._background = BackgroundLoop("fake-iap")
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwk"

    def start(self) -> KeyServer:
        self._background.start()
        self._runner, self.port = self._background.call(serve(self._application()))
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._background.call(self._runner.cleanup())
        self._background.stop()

    def _application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/jwk", self._serve)
        return app

    async def _serve(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.failing:
            return web.Response(status=500, text="unavailable")
        return web.json_response({"keys": [key.as_dict(private=False) for key in self.keys]})
