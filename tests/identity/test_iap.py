"""SDA_IDENTITY=iap through a real allocator: only a verified token is a person.

Our own EC P-256 keys and JWK set on loopback stand in for Google's; every token below is
made the way IAP makes them, or broken in one way on purpose."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jwt

from fake_iap import (
    AUDIENCE,
    KeyServer,
    claims,
    new_key,
    public_pem,
    token,
    unsigned_token,
)
from tests.support.inprocess import InProcessAllocator
from tests.support.origin import Origin
from tests.support.processes import wait_until

ALICE, BOB, ADMIN = "alice@example.com", "bob@example.com", "admin@example.com"
KEY = new_key("k1")
UNSIGNED = "X-Goog-Authenticated-User-Email"


@pytest.fixture(scope="module")
def keys() -> Iterator[KeyServer]:
    server = KeyServer(KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def allocator(
    keys: KeyServer, origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessAllocator]:
    with InProcessAllocator.with_settings(
        tmp_path_factory.mktemp("iap"),
        **origin.settings(
            identity="iap",
            iap_audience=AUDIENCE,
            iap_jwks_url=keys.url,
            iap_key_refetch="1",
            admins=ADMIN,
        ),
    ) as app:
        yield app


def get(allocator: InProcessAllocator, assertion: str | None, **headers: str) -> httpx.Response:
    if assertion is not None:
        headers["x-goog-iap-jwt-assertion"] = assertion
    return httpx.get(f"{allocator.url}/echo", headers=headers, timeout=10)


def seen_headers(answer: httpx.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in answer.json()["headers"]}


def test_a_valid_token_is_the_person_and_their_identity_is_forwarded(
    allocator: InProcessAllocator,
) -> None:
    answer = get(
        allocator,
        token(KEY, ALICE),
        **{
            "X-Forwarded-User": "mallory",
            "X-Goog-Authenticated-User-Id": "x",
            "X-Forwarded-Groups": "admins",
        },
    )
    assert answer.status_code == 200
    headers = seen_headers(answer)
    assert headers["x-forwarded-email"] == ALICE
    assert headers["x-forwarded-user"] == ALICE
    assert "x-goog-iap-jwt-assertion" not in headers
    assert "x-goog-authenticated-user-id" not in headers
    assert "x-forwarded-groups" not in headers


def test_the_matching_unsigned_header_is_accepted(allocator: InProcessAllocator) -> None:
    answer = get(allocator, token(KEY, ALICE), **{UNSIGNED: f"accounts.google.com:{ALICE}"})
    assert answer.status_code == 200


TIMES = ("exp", "iat")  # given below as seconds from when the test runs, not from collection


@pytest.mark.parametrize(
    ("case", "changes"),
    [
        ("expired", {"exp": -100, "iat": -700}),
        ("issued in the future", {"iat": 300, "exp": 900}),
        ("wrong aud", {"aud": "/projects/1/global/backendServices/2"}),
        ("missing aud", {"aud": None}),
        ("wrong iss", {"iss": "https://accounts.google.com"}),
        ("no email", {"email": None}),
        ("lives too long", {"exp": 3600}),
    ],
)
def test_claims_that_are_wrong_are_refused(
    allocator: InProcessAllocator, case: str, changes: dict[str, object]
) -> None:
    now = int(time.time())
    dated = {k: now + v if k in TIMES and isinstance(v, int) else v for k, v in changes.items()}
    answer = get(
        allocator, jwt.encode({"alg": "ES256", "kid": KEY.kid}, claims(ALICE, **dated), KEY)
    )
    assert answer.status_code == 401, case


def test_alg_none_and_hs256_with_the_public_key_are_refused(allocator: InProcessAllocator) -> None:
    payload = claims(ALICE)
    none = unsigned_token({"alg": "none", "kid": "k1"}, payload)
    hmac = unsigned_token({"alg": "HS256", "kid": "k1"}, payload, secret=public_pem(KEY))
    assert get(allocator, none).status_code == 401
    assert get(allocator, hmac).status_code == 401


def test_a_key_outside_the_set_is_refused(allocator: InProcessAllocator) -> None:
    stranger = new_key("k1")  # same kid, different key
    assert get(allocator, token(stranger, ALICE)).status_code == 401
    unknown = new_key("k-unknown")
    assert get(allocator, token(unknown, ALICE)).status_code == 401


def test_a_tampered_payload_is_refused(allocator: InProcessAllocator) -> None:
    head, payload, signature = token(KEY, ALICE).split(".")
    forged = claims(BOB)
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert payload != body
    assert get(allocator, f"{head}.{body}.{signature}").status_code == 401


@pytest.mark.parametrize(
    "garbage", ["", "abc", "a.b.c", "a.b", "....", "\u00e9.\u00e9.\u00e9", "x" * 20_000]
)
def test_garbage_and_oversized_tokens_are_refused(
    allocator: InProcessAllocator, garbage: str
) -> None:
    answer = httpx.get(
        f"{allocator.url}/echo",
        headers={b"x-goog-iap-jwt-assertion": garbage.encode("utf-8")},
        timeout=10,
    )
    assert answer.status_code in (401, 431)


def test_the_unsigned_header_alone_or_for_someone_else_is_refused(
    allocator: InProcessAllocator, caplog: pytest.LogCaptureFixture
) -> None:
    assert get(allocator, None, **{UNSIGNED: f"accounts.google.com:{ALICE}"}).status_code == 401
    mixed = get(allocator, token(KEY, ALICE), **{UNSIGNED: f"accounts.google.com:{BOB}"})
    assert mixed.status_code == 401
    assert _logged(caplog, "allocator.identity.iap", "does not match")  # the operator learns why


def test_refusals_are_short_and_say_nothing_about_why(
    allocator: InProcessAllocator, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    expired = token(KEY, ALICE, exp=now - 100, iat=now - 700)
    page = httpx.get(
        f"{allocator.url}/",
        headers={"x-goog-iap-jwt-assertion": expired, "Accept": "text/html"},
        timeout=10,
    )
    api = get(allocator, expired)
    assert page.status_code == api.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert api.json()["error"] == "Not signed in"
    for text in (page.text, api.text):
        assert "xpired" not in text and "signature" not in text.lower()
    assert _logged(caplog, "allocator.identity.iap", "Expired")  # the reason: in the log only


def test_a_newly_published_key_is_accepted_after_a_refetch(
    allocator: InProcessAllocator, keys: KeyServer
) -> None:
    rotated = new_key("k2")
    keys.keys.append(rotated)
    # Accepted once SDA_IAP_KEY_REFETCH (1 s) allows the next fetch after the last one.
    wait_until(lambda: get(allocator, token(rotated, ALICE)).status_code == 200, 30, "the new key")


def test_unknown_keys_do_not_make_the_allocator_hammer_the_key_server(
    allocator: InProcessAllocator, keys: KeyServer
) -> None:
    before, began = keys.fetches, time.monotonic()
    for number in range(30):
        forged = unsigned_token({"alg": "ES256", "kid": f"nope-{number}"}, claims(ALICE))
        assert get(allocator, forged).status_code == 401
    allowed = 1 + int(time.monotonic() - began)  # one per SDA_IAP_KEY_REFETCH (1 s) at most
    assert keys.fetches - before <= allowed < 30


def test_health_paths_answer_without_a_token(allocator: InProcessAllocator) -> None:
    for path in ("/_allocator/healthz", "/_allocator/readyz"):
        assert httpx.get(f"{allocator.url}{path}", timeout=10).status_code == 200
    for path in ("/_allocator/status", "/_allocator/", "/_allocator/api/sessions", "/"):
        assert httpx.get(f"{allocator.url}{path}", timeout=10).status_code == 401, path


def test_the_admin_api_answers_403_to_everyone_else(allocator: InProcessAllocator) -> None:
    url = f"{allocator.url}/_allocator/api/sessions"
    alice = {"x-goog-iap-jwt-assertion": token(KEY, ALICE)}
    admin = {"x-goog-iap-jwt-assertion": token(KEY, ADMIN)}
    assert httpx.get(url, headers=alice, timeout=10).status_code == 403
    assert httpx.get(url, headers=admin, timeout=10).status_code == 200


def test_release_needs_a_page_of_this_site(allocator: InProcessAllocator) -> None:
    headers = {"x-goog-iap-jwt-assertion": token(KEY, ALICE)}
    url = f"{allocator.url}/_allocator/release"
    assert httpx.post(url, headers=headers, timeout=10).status_code == 403
    evil = {**headers, "Origin": "https://evil.example"}
    assert httpx.post(url, headers=evil, timeout=10).status_code == 403
    ours = {**headers, "Origin": allocator.url}
    assert httpx.post(url, headers=ours, timeout=10).status_code == 200


def test_no_key_set_at_start_means_not_ready_but_alive(origin: Origin, tmp_path: Path) -> None:
    broken = KeyServer(KEY).start()
    broken.failing = True
    allocator = InProcessAllocator.with_settings(
        tmp_path,
        **origin.settings(identity="iap", iap_audience=AUDIENCE, iap_jwks_url=broken.url),
    ).start()
    try:
        ready = httpx.get(f"{allocator.url}/_allocator/readyz", timeout=10)
        assert ready.status_code == 503
        assert "IAP key set" in ready.text
        assert httpx.get(f"{allocator.url}/_allocator/healthz", timeout=10).status_code == 200
        broken.failing = False  # the next probe (or the background retry) fetches again
        wait_until(
            lambda: httpx.get(f"{allocator.url}/_allocator/readyz", timeout=10).status_code == 200,
            20,
            "the key set to be fetched",
        )
    finally:
        allocator.stop()
        broken.stop()


def test_a_websocket_needs_a_valid_token_at_the_upgrade(allocator: InProcessAllocator) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    assert get(allocator, token(KEY, ALICE)).status_code == 200  # a WebSocket never allocates
    url = allocator.url.replace("http", "ws") + "/ws"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"x-goog-iap-jwt-assertion": "garbage"}).close()
    assert refused.value.response.status_code in (401, 403)  # refused before the accept
    with connect(url, additional_headers={"x-goog-iap-jwt-assertion": token(KEY, ALICE)}) as ws:
        ws.send("hello")
        assert ws.recv(5) == "hello"


def _logged(caplog: pytest.LogCaptureFixture, logger: str, text: str) -> bool:
    return any(r.name == logger and text in r.getMessage() for r in caplog.records)
