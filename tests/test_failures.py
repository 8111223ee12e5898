"""Bad input gets a clear 4xx; a dependency going away gets a clear 503 and nothing is lost."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.inprocess import InProcessAllocator
from tests.support.origin import Origin
from tests.support.processes import RedisServer, header_for, wait_until

HTML = {"Accept": "text/html"}


@pytest.fixture
def header_proxy(
    origin: Origin, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessAllocator]:
    # No cache: every request asks the store, so an outage is met at once, not after 2 s.
    settings = origin.settings(redis_url=redis_server.url, cache_ttl="0")
    with InProcessAllocator.with_settings(tmp_path_factory.mktemp("failures"), **settings) as app:
        yield app


@pytest.fixture(scope="module")
def dev_proxy(
    origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessAllocator]:
    with InProcessAllocator.with_settings(
        tmp_path_factory.mktemp("dev"),
        backend="static",
        static_target=origin.authority,
        admins="root@example.com",
    ) as app:
        yield app


def sign_in(proxy: InProcessAllocator, email: str) -> httpx.Client:
    client = httpx.Client(base_url=proxy.url, timeout=10)
    response = client.post(
        "/_allocator/login", data={"email": email, "next": "/echo"}, headers={"Origin": proxy.url}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/echo"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    return client


def test_redis_outage_known_people_served_new_people_told_all_well_after(
    header_proxy: InProcessAllocator,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice, carol = header_for("alice@example.com"), header_for("carol@example.com")
    url = header_proxy.url
    assert httpx.get(f"{url}/echo", headers=alice, timeout=10).status_code == 200

    redis_server.kill()
    for _ in range(5):  # with no cache, from the outage grace
        assert httpx.get(f"{url}/echo", headers=alice, timeout=10).status_code == 200
    page = httpx.get(f"{url}/echo", headers={**carol, **HTML}, timeout=10)
    assert page.status_code == 503
    assert "Retry-After" in page.headers
    assert "try again" in page.text.lower()
    api = httpx.get(f"{url}/echo", headers=carol, timeout=10)
    assert api.status_code == 503 and api.json()["error"] == "Temporarily unavailable"
    ready = httpx.get(f"{url}/_allocator/readyz", timeout=10)
    assert ready.status_code == 503 and "store" in ready.json()["problems"]
    assert httpx.get(f"{url}/_allocator/healthz", timeout=10).status_code == 200

    redis_server.start()
    wait_until(lambda: httpx.get(f"{url}/_allocator/readyz").status_code == 200, 15, "readyz")
    for who in (alice, carol):
        response = httpx.get(f"{url}/echo", headers=who, timeout=10)
        assert response.status_code == 200, response.text
    assert not [record for record in caplog.records if record.exc_info]


def test_no_identity_is_a_401_not_a_crash(header_proxy: InProcessAllocator) -> None:
    header = b"x-goog-authenticated-user-email"
    cases: list[dict[bytes, bytes]] = [
        {},
        {header: b"not an email"},
        {header: "a@b.com\u00e9".encode()},
    ]
    for headers in cases:
        response = httpx.get(f"{header_proxy.url}/echo", headers=headers, timeout=10)
        assert response.status_code == 401


def test_malformed_cookie_means_signed_out(dev_proxy: InProcessAllocator) -> None:
    for cookie in ("sda_session=garbage", "sda_session=", "sda_session=a.b.c; x=1", "=;;;"):
        page = httpx.get(
            f"{dev_proxy.url}/some/page?x=1", headers={**HTML, "Cookie": cookie}, timeout=10
        )
        assert page.status_code == 303
        assert page.headers["location"] == "/_allocator/login?next=%2Fsome%2Fpage%3Fx%3D1"
        api = httpx.get(f"{dev_proxy.url}/api", headers={"Cookie": cookie}, timeout=10)
        assert api.status_code == 401


def test_sign_in_then_use_the_webui(dev_proxy: InProcessAllocator) -> None:
    client = sign_in(dev_proxy, "Dana@Example.com")
    response = client.get("/echo")
    assert response.status_code == 200
    seen = {name.lower(): value for name, value in response.json()["headers"]}
    assert seen["x-forwarded-email"] == "dana@example.com"
    assert client.get("/_allocator/status").json()["state"] == "ready"


def test_bad_sign_in_input(dev_proxy: InProcessAllocator) -> None:
    origin = {"Origin": dev_proxy.url}
    bad = httpx.post(f"{dev_proxy.url}/_allocator/login", data={"email": "nope"}, headers=origin)
    assert bad.status_code == 400 and "does not look like an email" in bad.text
    redirect = httpx.post(
        f"{dev_proxy.url}/_allocator/login",
        data={"email": "e@example.com", "next": "//evil.example/x"},
        headers=origin,
    )
    assert redirect.headers["location"] == "/"
    for sneaky in ("/\t/evil.example", "/\\evil.example", "https://evil.example", "/\n/x"):
        answer = httpx.post(
            f"{dev_proxy.url}/_allocator/login",
            data={"email": "e@example.com", "next": sneaky},
            headers=origin,
        )
        assert answer.headers["location"] == "/", sneaky
    cross_site = httpx.post(
        f"{dev_proxy.url}/_allocator/login",
        data={"email": "e@example.com"},
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403


def test_bad_host_and_oversized_headers(dev_proxy: InProcessAllocator) -> None:
    client = sign_in(dev_proxy, "erin@example.com")
    assert client.get("/echo", headers={"Host": "bad host!"}).status_code == 400
    localhost = client.get("/_allocator/status", headers={"Host": f"localhost:{dev_proxy.port}"})
    assert localhost.status_code == 200
    huge = client.get("/echo", headers={"X-Big": "x" * 100_000})
    assert huge.status_code in (400, 431)
    assert client.get("/echo").status_code == 200


def test_dev_sign_in_refuses_other_host_names_dns_rebinding(dev_proxy: InProcessAllocator) -> None:
    rebound = {
        "Host": f"evil.example:{dev_proxy.port}",
        "Origin": f"http://evil.example:{dev_proxy.port}",
    }
    login = httpx.post(
        f"{dev_proxy.url}/_allocator/login", data={"email": "root@example.com"}, headers=rebound
    )
    assert login.status_code == 400 and "set-cookie" not in login.headers
    assert httpx.get(f"{dev_proxy.url}/_allocator/healthz", headers=rebound).status_code == 200


def test_unknown_allocator_path_is_404_with_a_message(dev_proxy: InProcessAllocator) -> None:
    client = sign_in(dev_proxy, "finn@example.com")
    response = client.get("/_allocator/no-such-thing")
    assert response.status_code == 404
    assert response.json()["message"] == "Nothing at /_allocator/no-such-thing."
    page = client.get("/_allocator/no-such-thing", headers=HTML)
    assert page.status_code == 404 and "Nothing at" in page.text


def test_release_needs_a_same_site_origin(dev_proxy: InProcessAllocator) -> None:
    client = sign_in(dev_proxy, "gus@example.com")
    assert client.get("/echo").status_code == 200
    assert client.post("/_allocator/release").status_code == 403
    assert (
        client.post("/_allocator/release", headers={"Origin": "https://evil.example"}).status_code
        == 403
    )
    assert client.get("/_allocator/status").json()["state"] == "ready"
    ok = client.post("/_allocator/release", headers={"Origin": dev_proxy.url})
    assert ok.json() == {"released": True, "left_queue": False}
    assert client.get("/_allocator/status").json()["state"] == "none"


def test_admin_api_is_for_admins_only(dev_proxy: InProcessAllocator) -> None:
    user = sign_in(dev_proxy, "hana@example.com")
    assert user.get("/echo").status_code == 200
    assert user.get("/_allocator/api/sessions").status_code == 403
    assert user.delete("/_allocator/api/sessions/hana@example.com").status_code == 403
    admin = sign_in(dev_proxy, "root@example.com")
    emails = [s["email"] for s in admin.get("/_allocator/api/sessions").json()]
    assert "hana@example.com" in emails
    assert admin.get("/_allocator/api/sessions/hana@example.com").json()["state"] == "ready"
    assert admin.delete("/_allocator/api/sessions/hana@example.com").status_code == 204
    assert admin.delete("/_allocator/api/sessions/hana@example.com").status_code == 404
    assert "/_allocator/api/sessions" in admin.get("/_allocator/api/openapi.json").json()["paths"]


def test_signing_in_comes_back_to_the_same_page_and_query_on_every_path(
    dev_proxy: InProcessAllocator,
) -> None:
    for path in ("/some/page?x=1&y=a b", "/_allocator/?tab=2"):
        url = httpx.URL(f"{dev_proxy.url}{path}")
        page = httpx.get(url, headers=HTML, timeout=10)
        assert page.status_code == 303
        assert httpx.URL(page.headers["location"]).params["next"] == url.raw_path.decode()


def test_one_origin_policy_for_the_webui_and_the_allocator(dev_proxy: InProcessAllocator) -> None:
    """Another site never changes state; the allocator's own forms also want proof that a
    page of this site sent them, the WebUI's API accepts scripts that send no Origin."""
    client = sign_in(dev_proxy, "ivy@example.com")
    evil = "https://evil.example/page"
    odd = ({"Origin": "null"}, {"Origin": "http://[x"}, {"Referer": "not a url"})
    for headers in ({"Origin": "https://evil.example"}, {"Referer": evil}, *odd):
        assert client.post("/echo", headers=headers, content=b"x").status_code == 403
        assert client.post("/_allocator/release", headers=headers).status_code == 403
    assert client.post("/echo", content=b"x").status_code == 200  # a script: no Origin
    assert client.post("/_allocator/release").status_code == 403  # no proof of this site
    same = client.post("/_allocator/release", headers={"Referer": f"{dev_proxy.url}/x"})
    assert same.json() == {"released": True, "left_queue": False}
