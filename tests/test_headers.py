"""Header hygiene in both directions, header by header."""

from __future__ import annotations

from allocator.headers import Withheld, downstream_headers, upstream_headers, valid_host
from allocator.types import Person

ANN = Person("ann@example.com", "ann-example-com-0123456789abcdef")
OUR_COOKIE = Withheld(b"sda_session")


def forwarded(
    *headers: tuple[bytes, bytes],
    websocket: bool = False,
    withheld: Withheld = OUR_COOKIE,
) -> dict[bytes, bytes]:
    scope = {
        "headers": [(b"host", b"sd.example.com"), *headers],
        "client": ("10.0.0.9", 5555),
        "scheme": "https",
    }
    out = upstream_headers(scope, ANN, withheld, websocket=websocket)
    names = [name for name, _ in out]
    assert len(names) == len(set(names)), f"duplicated header in {names}"
    return dict(out)


def test_identity_is_ours_alone() -> None:
    out = forwarded(
        (b"x-goog-authenticated-user-email", b"accounts.google.com:mallory@example.com"),
        (b"x-goog-iap-jwt-assertion", b"forged"),
        (b"x-forwarded-user", b"mallory"),
        (b"x-forwarded-email", b"mallory@example.com"),
        (b"x-forwarded-groups", b"admins"),
        (b"remote-user", b"mallory"),
    )
    assert out[b"x-forwarded-email"] == b"ann@example.com"
    assert out[b"x-forwarded-user"] == b"ann@example.com"
    assert not [name for name in out if name.startswith(b"x-goog-")]
    assert b"x-forwarded-groups" not in out and b"remote-user" not in out


def test_where_from() -> None:
    out = forwarded((b"x-forwarded-for", b"203.0.113.7"))
    assert out[b"x-forwarded-for"] == b"203.0.113.7, 10.0.0.9"
    assert out[b"x-forwarded-proto"] == b"https"
    assert out[b"x-forwarded-host"] == out[b"host"] == b"sd.example.com"


def test_hop_by_hop_and_connection_named_headers_stay_behind() -> None:
    out = forwarded(
        (b"connection", b"keep-alive, x-private"),
        (b"x-private", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"te", b"trailers"),
        (b"upgrade", b"h2c"),
        (b"expect", b"100-continue"),
        (b"accept", b"*/*"),
    )
    assert set(out) == {
        b"host",
        b"accept",
        b"x-forwarded-host",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-email",
        b"x-forwarded-user",
    }


def test_a_length_beside_chunked_framing_is_dropped() -> None:
    out = forwarded((b"content-length", b"5"), (b"transfer-encoding", b"chunked"))
    assert b"content-length" not in out and b"transfer-encoding" not in out


def test_our_cookie_is_removed_and_the_rest_kept() -> None:
    out = forwarded((b"cookie", b"a=1; sda_session=token; b=2"))
    assert out[b"cookie"] == b"a=1; b=2"
    assert b"cookie" not in forwarded((b"cookie", b"sda_session=token"))


def test_websocket_handshake_headers_are_redone_by_the_client() -> None:
    out = forwarded(
        (b"sec-websocket-key", b"abc"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"chat"),
        websocket=True,
    )
    assert not [name for name in out if name.startswith(b"sec-websocket")]


def test_response_headers() -> None:
    raw = [
        (b"content-type", b"text/html"),
        (b"connection", b"close"),
        (b"date", b"x"),
        (b"transfer-encoding", b"chunked"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]
    assert downstream_headers(raw) == [
        (b"content-type", b"text/html"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


def test_host_syntax() -> None:
    for good in (b"sd.example.com", b"127.0.0.1:8080", b"[::1]:8080", b"localhost"):
        assert valid_host(good), good
    for bad in (b"", b"bad host", b"a/b", b"x:y:z", b"-lead.example.com", b"evil.com\r\nx: 1"):
        assert not valid_host(bad), bad


def test_behind_iap_a_scripts_bearer_token_stays_with_us() -> None:
    """IAP accepted the Google ID token; the WebUI (hostile by assumption) never sees it.
    Basic credentials, which A1111's --api-auth checks, still pass."""
    behind_iap = Withheld(OUR_COOKIE.cookie, bearer=True)
    token = (b"authorization", b"Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    assert b"authorization" not in forwarded(token, withheld=behind_iap)
    assert b"authorization" not in forwarded(token, withheld=behind_iap, websocket=True)
    basic = (b"authorization", b"Basic YW5uOnNlY3JldA==")
    assert forwarded(basic, withheld=behind_iap)[b"authorization"] == basic[1]
    assert forwarded(token)[b"authorization"] == token[1]  # header identity: not IAP's
