"""Property-based fuzzing of the IAP verifier: whatever the headers hold, identify() answers a
person or None; it never raises (which would be a 500) and never accepts a forgery."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.identity.iap import ASSERTION, IapIdentity
from fake_iap import AUDIENCE, KeyServer, claims, new_key, token

KEY = new_key("k1")
UNSIGNED = b"x-goog-authenticated-user-email"


@pytest.fixture(scope="module")
def identity() -> Iterator[tuple[IapIdentity, asyncio.AbstractEventLoop]]:
    keys = KeyServer(KEY).start()
    loop = asyncio.new_event_loop()
    iap = IapIdentity(AUDIENCE, keys.url, UNSIGNED.decode(), key_refetch=3600)
    loop.run_until_complete(iap.start())
    yield iap, loop
    loop.run_until_complete(iap.close())
    loop.close()
    keys.stop()


def identify(
    identity: tuple[IapIdentity, asyncio.AbstractEventLoop], headers: list[tuple[bytes, bytes]]
) -> object:
    iap, loop = identity
    return loop.run_until_complete(iap.identify({"type": "http", "headers": headers}))


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


segments = st.one_of(
    st.binary(max_size=200).map(b64),
    st.dictionaries(st.text(max_size=8), st.one_of(st.text(), st.integers(), st.none())).map(
        lambda d: b64(json.dumps(d).encode())
    ),
    st.sampled_from([b"", b"=", b"eyJ", b"e30", b"\xff\xfe"]),
)
tokens = st.one_of(
    st.binary(max_size=400),
    st.lists(segments, min_size=1, max_size=5).map(b".".join),
)
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(tokens, st.one_of(st.none(), st.binary(max_size=100)))
def test_arbitrary_headers_never_raise_and_never_identify(
    identity: tuple[IapIdentity, asyncio.AbstractEventLoop], raw: bytes, unsigned: bytes | None
) -> None:
    headers = [(ASSERTION, raw)]
    if unsigned is not None:
        headers.append((UNSIGNED, unsigned))
    assert identify(identity, headers) is None


@FUZZ
@given(st.sampled_from(["email", "aud", "iss", "exp", "iat"]), st.one_of(
    st.text(max_size=30), st.integers(), st.floats(allow_nan=True), st.none(),
    st.lists(st.text(max_size=5), max_size=3), st.booleans(),
))  # fmt: skip
def test_signed_tokens_with_odd_claims_never_raise(
    identity: tuple[IapIdentity, asyncio.AbstractEventLoop], claim: str, value: object
) -> None:
    payload = claims("alice@example.com")
    payload[claim] = value
    from joserfc import jwt

    signed = jwt.encode({"alg": "ES256", "kid": "k1"}, payload, KEY)
    person = identify(identity, [(ASSERTION, signed.encode())])
    assert person is None or getattr(person, "email", None) == "alice@example.com"


def test_the_fuzzer_can_see_a_valid_token(
    identity: tuple[IapIdentity, asyncio.AbstractEventLoop],
) -> None:
    person = identify(identity, [(ASSERTION, token(KEY, "alice@example.com").encode())])
    assert getattr(person, "email", None) == "alice@example.com"
