"""The give-back countdown inside the WebUI's page: only the top page gets it, it never breaks
a page (encodings, Content-Security-Policy, lengths, big or streamed bodies), every other
response passes byte for byte, and in Chromium it counts down, keeps and gives back."""

from __future__ import annotations

import asyncio
import gzip
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page, expect

from allocator import badge
from background import BackgroundLoop, serve
from tests.support import a1111
from tests.support.inprocess import InProcessAllocator
from tests.support.processes import header_for, wait_until

ANN = "ann@example.com"
ALICE = header_for("alice@example.com")
(PERSON_HEADER,) = ALICE
TAG = badge.SCRIPT_TAG
PAGE = b"<!doctype html><html><head><title>WebUI</title></head><body><p>hi</p></body></html>"
NAVIGATION = {**ALICE, "Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate"}
BROWSER_ENCODINGS = "gzip, deflate, br, zstd"
START_SECONDS = 120  # a WebUI's first start on a loaded machine


def padded(size: int) -> bytes:
    return PAGE.replace(b"<p>hi</p>", b"<p>" + b"x" * size + b"</p>")


# -- the decision and the rewrite, as functions ----------------------------------------------


def test_only_a_top_level_navigation_is_a_candidate() -> None:
    assert badge.wanted([(b"accept", b"text/html"), (b"sec-fetch-dest", b"document")])
    assert not badge.wanted([(b"sec-fetch-dest", b"iframe")])
    assert not badge.wanted([(b"sec-fetch-dest", b"empty")])
    assert not badge.wanted([(b"accept", b"text/html")])  # no Fetch Metadata: left alone


@pytest.mark.parametrize(
    ("offered", "forwarded"),
    [
        (b"gzip, deflate, br, zstd", b"gzip"),
        (b"br;q=1.0, gzip;q=0.8", b"gzip"),
        (b"br, gzip;q=0", b"identity"),
        (b"*", b"gzip"),
        (b"*;q=1, gzip;q=0", b"identity"),
        (b"br", b"identity"),
        (b"", b"identity"),
    ],
)
def test_the_webui_is_offered_only_encodings_the_badge_can_rewrite(
    offered: bytes, forwarded: bytes
) -> None:
    headers = [(b"host", b"a"), (b"accept-encoding", offered), (b"accept", b"*/*")]
    narrowed = badge.narrowed(headers)
    assert [v for n, v in narrowed if n == b"accept-encoding"] == [forwarded]
    assert (b"host", b"a") in narrowed and (b"accept", b"*/*") in narrowed


@pytest.mark.parametrize(
    ("policy", "allowed"),
    [
        (b"default-src 'self'", True),
        (b"frame-ancestors 'none'", True),
        (b"script-src 'self' 'unsafe-inline'; img-src *", True),
        (b"script-src *; connect-src 'self'", True),
        (b"default-src 'none'; script-src 'self'", False),  # its fetches: default-src
        (b"script-src 'none'", False),
        (b"script-src https://cdn.example", False),
        (b"script-src 'self' 'nonce-abc' 'strict-dynamic'", False),
        (b"script-src 'self'; script-src-elem 'nonce-abc'", False),
        (b"default-src 'self', script-src 'none'", False),  # two policies, both enforced
        (b"Default-Src 'SELF'", True),
    ],
)
def test_a_content_security_policy_that_would_refuse_the_script_keeps_the_page_unchanged(
    policy: bytes, allowed: bool
) -> None:
    assert badge.allows_badge(policy) is allowed
    headers = [(b"content-type", b"text/html"), (b"content-security-policy", policy)]
    assert badge.rewritable(200, headers) is allowed


@pytest.mark.parametrize(
    ("status", "headers", "rewritable"),
    [
        (200, [(b"content-type", b"text/html; charset=utf-8")], True),
        (200, [(b"content-type", b"text/html"), (b"content-encoding", b"gzip")], True),
        (200, [(b"content-type", b"text/html"), (b"content-encoding", b"br")], False),
        (200, [(b"content-type", b"text/html"), (b"content-encoding", b"zstd")], False),
        (200, [(b"content-type", b"application/json")], False),
        (200, [(b"content-type", b"text/event-stream")], False),
        (200, [(b"content-type", b"text/html; charset=utf-16")], False),
        (200, [(b"content-type", b"text/html"), (b"cache-control", b"no-transform")], False),
        (200, [(b"content-type", b"text/html"), (b"accept-ranges", b"bytes")], False),
        (200, [(b"content-type", b"text/html"), (b"accept-ranges", b"none")], True),
        (200, [(b"content-type", b"text/html"), (b"content-disposition", b"attachment")], False),
        (206, [(b"content-type", b"text/html")], False),
        (304, [(b"content-type", b"text/html")], False),
        (404, [(b"content-type", b"text/html")], False),
    ],
)
def test_only_a_whole_html_page_in_a_known_encoding_and_not_a_file_is_rewritten(
    status: int, headers: list[tuple[bytes, bytes]], rewritable: bool
) -> None:
    assert badge.rewritable(status, headers) is rewritable


def test_the_script_goes_before_head_end_else_body_end_else_at_the_end() -> None:
    assert badge.inserted(PAGE) == PAGE.replace(b"</head>", TAG + b"</head>")
    assert badge.inserted(b"<p>x</P></BODY >") == b"<p>x</P>" + TAG + b"</BODY >"
    assert badge.inserted(b"<p>fragment</p>") == b"<p>fragment</p>" + TAG


def test_a_gzip_page_is_rewritten_in_gzip_and_a_broken_one_not_at_all() -> None:
    rewritten = badge.with_script(gzip.compress(PAGE), b"gzip")
    assert rewritten is not None and gzip.decompress(rewritten) == badge.inserted(PAGE)
    assert badge.with_script(gzip.compress(PAGE)[:-8], b"gzip") is None  # truncated
    assert badge.with_script(b"not gzip at all", b"gzip") is None
    assert badge.with_script(gzip.compress(PAGE) * 2, b"gzip") is None  # two members


def test_a_gzip_bomb_is_not_decompressed_past_the_limit() -> None:
    bomb = gzip.compress(b"<p>" + b" " * (badge.HTML_LIMIT + 1))
    assert len(bomb) < badge.BODY_LIMIT
    assert badge.with_script(bomb, b"gzip") is None


def test_the_changed_page_says_its_new_length_and_a_weak_etag() -> None:
    headers = [
        (b"content-type", b"text/html"),
        (b"content-length", b"80"),
        (b"etag", b'"v1"'),
        (b"content-md5", b"Q2hlY2sgSW50ZWdyaXR5IQ=="),
        (b"set-cookie", b"a=1"),
    ]
    assert badge.page_headers(headers, 123) == [
        (b"content-type", b"text/html"),
        (b"etag", b'W/"v1"'),
        (b"set-cookie", b"a=1"),
        (b"content-length", b"123"),
        (b"vary", b"Sec-Fetch-Dest"),
    ]
    assert (b"etag", b'W/"x"') in badge.page_headers([(b"etag", b'W/"x"')], 1)


# -- through the proxy, against a WebUI that serves pages every way ---------------------------


@dataclass
class PageServer:
    """A stand-in WebUI: `/page` answers PAGE as asked (`?encoding=`, `csp=`, `chunked=`,
    `pad=` bytes, `type=`), gzip when offered as Gradio's middleware does; `/held` sends a
    first part and the rest only once `release` is called; `/broken` breaks off halfway."""

    background: BackgroundLoop = field(default_factory=lambda: BackgroundLoop("webui-pages"))
    encodings_seen: list[str] = field(default_factory=list)
    held_requests: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None
    _gate: asyncio.Event | None = None

    def start(self) -> PageServer:
        self.background.start()
        app = web.Application()
        app.router.add_get("/page", self.page)
        app.router.add_get("/held", self.held)
        app.router.add_get("/broken", self.broken)
        self._runner, self.port = self.background.call(serve(app))
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self.background.call(self._runner.cleanup())
        self.background.stop()

    def release(self) -> None:
        async def open_gate() -> None:
            assert self._gate is not None
            self._gate.set()

        self.background.call(open_gate())

    async def page(self, request: web.Request) -> web.StreamResponse:
        offered = request.headers.get("Accept-Encoding", "")
        self.encodings_seen.append(offered)
        query = request.query
        body = padded(int(query["pad"])) if "pad" in query else PAGE
        headers = {"Content-Type": query.get("type", "text/html; charset=utf-8"), "ETag": '"v1"'}
        encoding = query.get("encoding") or ("gzip" if "gzip" in offered else "")
        if encoding == "gzip":
            body = gzip.compress(body, mtime=0)
        if encoding:
            headers["Content-Encoding"] = encoding  # any other: the bytes as they are
        if "csp" in query:
            headers["Content-Security-Policy"] = query["csp"]
        if query.get("chunked") != "1":
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 64 * 1024):
            await response.write(body[start : start + 64 * 1024])
        await response.write_eof()
        return response

    async def broken(self, request: web.Request) -> web.StreamResponse:
        """A page cut off halfway: the WebUI went away while answering."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/html", "Content-Length": "1000"}
        )
        await response.prepare(request)
        await response.write(b"<!doctype html><html><head>")
        assert request.transport is not None
        request.transport.close()
        return response

    async def held(self, request: web.Request) -> web.StreamResponse:
        self._gate = asyncio.Event()
        self.held_requests += 1
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"<!doctype html><html><head><title>slow</title></head><body>")
        await self._gate.wait()
        await response.write(b"<p>the rest</p></body></html>")
        await response.write_eof()
        return response


@dataclass(frozen=True)
class Raw:
    status: int
    headers: httpx.Headers
    body: bytes  # as sent, not decoded


def fetch(base: str, path: str, headers: dict[str, str], method: str = "GET") -> Raw:
    with httpx.stream(method, f"{base}{path}", headers=headers, timeout=30) as response:
        body = b"".join(response.iter_raw())
    return Raw(response.status_code, response.headers, body)


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    server = PageServer().start()
    yield server
    server.stop()


def proxy_for(pages: PageServer, data_dir: Path, **settings: str) -> InProcessAllocator:
    target = f"127.0.0.1:{pages.port}"
    return InProcessAllocator.with_settings(
        data_dir, backend="static", static_target=target, identity="header", **settings
    )


@pytest.fixture(scope="module")
def proxy(pages: PageServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with proxy_for(pages, tmp_path_factory.mktemp("badge")) as allocator:
        yield allocator.url


def test_a_navigation_to_a_page_gets_the_script_and_its_true_length(proxy: str) -> None:
    page = fetch(proxy, "/page", {**NAVIGATION, "Accept-Encoding": "identity"})
    assert page.status == 200
    assert page.body == badge.inserted(PAGE)
    assert page.body.count(TAG) == 1
    assert page.headers["content-length"] == str(len(page.body))
    assert page.headers["etag"] == 'W/"v1"'


def test_a_gzip_page_comes_back_gzip_with_the_script(proxy: str, pages: PageServer) -> None:
    page = fetch(proxy, "/page", {**NAVIGATION, "Accept-Encoding": BROWSER_ENCODINGS})
    assert pages.encodings_seen[-1] == "gzip"  # never br or zstd, which it could not rewrite
    assert page.headers["content-encoding"] == "gzip"
    assert page.headers["content-length"] == str(len(page.body))
    assert gzip.decompress(page.body) == badge.inserted(PAGE)


def test_a_page_in_another_encoding_passes_unchanged(proxy: str) -> None:
    # The stand-in labels the plain page "br": a proxy that tried to read it would fail.
    page = fetch(proxy, "/page?encoding=br", {**NAVIGATION, "Accept-Encoding": "br"})
    assert page.headers["content-encoding"] == "br"
    assert page.body == PAGE
    assert page.headers["etag"] == '"v1"'


@pytest.mark.parametrize(
    ("csp", "injected"),
    [("default-src 'self'", True), ("script-src 'nonce-r4nd0m' 'strict-dynamic'", False)],
)
def test_the_page_gets_the_script_only_where_its_csp_lets_it_load(
    proxy: str, csp: str, injected: bool
) -> None:
    query = httpx.QueryParams({"csp": csp})
    page = fetch(proxy, f"/page?{query}", {**NAVIGATION, "Accept-Encoding": "identity"})
    assert (TAG in page.body) is injected
    assert page.headers["content-length"] == str(len(page.body))


def test_a_streamed_page_is_rewritten_and_a_big_one_passes_unchanged(proxy: str) -> None:
    identity = {**NAVIGATION, "Accept-Encoding": "identity"}
    small = fetch(proxy, "/page?chunked=1&pad=300000", identity)
    assert small.body.count(TAG) == 1
    assert small.headers["content-length"] == str(len(small.body))

    pad = badge.BODY_LIMIT + 1
    expected = padded(pad)
    for chunked in ("0", "1"):  # its length known (never held), or found out by holding it
        big = fetch(proxy, f"/page?chunked={chunked}&pad={pad}", identity)
        assert big.body == expected


def test_a_page_still_arriving_streams_through_unchanged(
    proxy: str, pages: PageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first part reaches the browser while the WebUI still holds the rest back: the
    proxy gave up holding the page instead of making the browser wait for it."""
    monkeypatch.setattr(badge, "BODY_WAIT", 0.5)  # the rest never comes before `release`
    with httpx.stream("GET", f"{proxy}/held", headers=NAVIGATION, timeout=30) as response:
        parts = response.iter_raw()
        first = next(parts)
        assert first.startswith(b"<!doctype html>")
        pages.release()
        body = first + b"".join(parts)
    assert body.endswith(b"<p>the rest</p></body></html>") and TAG not in body


def test_a_page_broken_off_while_held_gets_the_allocators_answer_not_a_bare_error(
    proxy: str,
) -> None:
    """Nothing had reached the browser, so it is told what happened, as without the badge."""
    answer = httpx.get(f"{proxy}/broken", headers={**NAVIGATION, "Accept": "text/html"})
    assert answer.status_code == 502 and "Your WebUI did not answer" in answer.text


def test_a_browser_leaving_while_the_page_is_held_ends_the_request(
    pages: PageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No response has begun yet, and still the proxy notices: the request ends, so the
    session is no longer busy with it."""
    monkeypatch.setattr(badge, "BODY_WAIT", 600.0)  # held until the browser goes
    email = "alice@example.com"
    with proxy_for(pages, tmp_path) as allocator:
        tracker = allocator.runtime.tracker
        before = pages.held_requests
        request = (
            f"GET /held HTTP/1.1\r\nHost: 127.0.0.1:{allocator.port}\r\n"
            f"Sec-Fetch-Dest: document\r\n{PERSON_HEADER}: accounts.google.com:{email}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", allocator.port)) as browser:
            browser.sendall(request.encode())
            wait_until(lambda: pages.held_requests > before, 30, "the WebUI to get the request")
            assert tracker.is_busy(email)
        wait_until(lambda: not tracker.is_busy(email), 30, "the request to end")
        pages.release()


@pytest.mark.parametrize(
    ("headers", "method"),
    [
        ({**ALICE, "Sec-Fetch-Dest": "empty"}, "GET"),  # the page's own fetch
        ({**ALICE, "Sec-Fetch-Dest": "iframe"}, "GET"),
        (ALICE, "GET"),  # a script, no Fetch Metadata
        (NAVIGATION, "HEAD"),
    ],
)
def test_requests_other_than_a_navigation_pass_byte_for_byte(
    proxy: str, pages: PageServer, headers: dict[str, str], method: str
) -> None:
    seen = fetch(proxy, "/page", {**headers, "Accept-Encoding": BROWSER_ENCODINGS}, method)
    assert pages.encodings_seen[-1] == BROWSER_ENCODINGS  # offered to the WebUI unchanged
    assert seen.body == (gzip.compress(PAGE, mtime=0) if method == "GET" else b"")
    assert seen.headers["content-length"] == str(len(gzip.compress(PAGE, mtime=0)))
    assert seen.headers["etag"] == '"v1"'


@pytest.mark.parametrize("content_type", ["application/json", "text/event-stream", "text/plain"])
def test_a_navigation_answered_with_anything_but_a_page_passes_byte_for_byte(
    proxy: str, content_type: str
) -> None:
    headers = {**NAVIGATION, "Accept-Encoding": BROWSER_ENCODINGS}
    seen = fetch(proxy, f"/page?type={content_type}", headers)
    assert seen.headers["content-type"] == content_type
    assert seen.body == gzip.compress(PAGE, mtime=0)
    assert seen.headers["etag"] == '"v1"'


def test_with_the_badge_off_pages_pass_unchanged(pages: PageServer, tmp_path: Path) -> None:
    with proxy_for(pages, tmp_path, badge="off") as allocator:
        page = fetch(allocator.url, "/page", {**NAVIGATION, "Accept-Encoding": BROWSER_ENCODINGS})
    assert pages.encodings_seen[-1] == BROWSER_ENCODINGS
    assert page.body == gzip.compress(PAGE, mtime=0)


def test_the_script_is_served_and_asking_the_status_is_not_activity(
    pages: PageServer, tmp_path: Path
) -> None:
    with proxy_for(pages, tmp_path) as allocator:
        script = httpx.get(f"{allocator.url}{badge.SCRIPT_PATH}", timeout=30)
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert b"/_allocator/status" in script.content

        assert fetch(allocator.url, "/page", ALICE).status == 200  # a session, some activity
        store, tracker = allocator.runtime.core.store, allocator.runtime.tracker
        allocator.call(tracker.flush())
        before = allocator.call(store.view("alice@example.com", time.time()))
        for _ in range(3):
            status = httpx.get(f"{allocator.url}/_allocator/status", headers=ALICE, timeout=30)
            assert status.json()["state"] == "ready"
        allocator.call(tracker.flush())
        after = allocator.call(store.view("alice@example.com", time.time()))
    assert before is not None and after is not None
    assert after.last_activity == before.last_activity


# -- in Chromium --------------------------------------------------------------------------------


def status(reclaim_in: int, reason: str = "idle") -> dict[str, object]:
    """A `/_allocator/status` answer for a ready WebUI nobody is using."""
    return {
        "state": "ready",
        "email": "alice@example.com",
        "busy": False,
        "reclaim_in_seconds": reclaim_in,
        "reclaim_reason": reason,
    }


def test_in_chromium_the_badge_says_when_people_wait_and_goes_when_no_longer_near(
    browser: Browser, proxy: str
) -> None:
    """What the script makes of the answers it gets (here given by the test): under
    pressure it shows even beyond two minutes, and says why; kept far away, it goes. The
    page's policy allows no inline style, and the badge is styled all the same."""
    context = browser.new_context(extra_http_headers=ALICE)
    page = context.new_page()
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text))
    page.on("pageerror", lambda error: complaints.append(str(error)))
    page.route("**/_allocator/status", lambda route: route.fulfill(json=status(250, "pressure")))
    page.route("**/_allocator/keep", lambda route: route.fulfill(json=status(900)))
    strict = httpx.QueryParams({"csp": "default-src 'self'"})
    page.goto(f"{proxy}/page?{strict}")
    expect(page.locator("body > p")).to_have_text("hi")  # the page itself, untouched
    text = page.locator("#sda-badge #sda-badge-text")
    expect(text).to_contain_text("(people are waiting for a GPU)")
    expect(page.locator("#sda-badge #sda-badge-time")).to_have_text(re.compile(r"^\d+:\d\d$"))
    box = page.locator("#sda-badge #sda-badge-box")
    expect(box).to_have_css("background-color", "rgb(255, 248, 230)")
    page.locator("#sda-badge #sda-badge-keep").click()
    expect(page.locator("#sda-badge")).to_be_hidden()
    assert complaints == []
    context.close()


# -- in Chromium, on the two WebUIs -------------------------------------------------------


def webui_page(browser: Browser, url: str, email: str) -> Page:
    """A tab of `email` (signed in by header) on their WebUI, waiting through the progress
    page until the WebUI's prompt box is there."""
    context = browser.new_context(extra_http_headers=header_for(email))
    page = context.new_page()
    page.goto(f"{url}/")
    expect(page.locator("#txt2img_prompt textarea")).to_be_visible(timeout=START_SECONDS * 1000)
    return page


def last_activity(allocator: InProcessAllocator, email: str) -> float:
    view = allocator.call(allocator.runtime.core.store.view(email, time.time()))
    assert view is not None
    return view.last_activity


def keep_moves_the_activity_stamp(allocator: InProcessAllocator, page: Page, email: str) -> None:
    allocator.call(allocator.runtime.tracker.flush())  # the page's own activity, written now
    before = last_activity(allocator, email)
    clicked_at = time.time()
    with page.expect_response(lambda r: r.url.endswith("/_allocator/keep")) as kept:
        page.locator("#sda-badge #sda-badge-keep").click()
    assert kept.value.status == 200
    assert last_activity(allocator, email) >= clicked_at > before


def expect_countdown(page: Page) -> None:
    text = page.locator("#sda-badge #sda-badge-text")
    expect(text).to_be_visible(timeout=60_000)  # polls 10 s apart while the page loads
    expect(text).to_contain_text("Your WebUI is given back in")
    expect(page.locator("#sda-badge #sda-badge-time")).to_have_text(re.compile(r"^\d+:\d\d$"))


def test_in_chromium_the_gradio_6_demo_shows_the_countdown_keeps_and_gives_back(
    browser: Browser, tmp_path: Path
) -> None:
    # Under two minutes from the start: the countdown shows at once.
    with InProcessAllocator.with_settings(
        tmp_path, identity="header", idle_timeout="100", start_timeout=str(START_SECONDS)
    ) as allocator:
        page = webui_page(browser, allocator.url, ANN)
        expect_countdown(page)
        # The WebUI works as before: a generation completes and its picture loads.
        page.locator("#txt2img_prompt textarea").fill("a lighthouse at dusk")
        page.click("#generate")
        expect(page.locator("#output img")).to_be_visible(timeout=60_000)

        keep_moves_the_activity_stamp(allocator, page, ANN)
        expect(page.locator("#sda-badge #sda-badge-text")).to_be_visible()

        page.locator("#sda-badge #sda-badge-release").click()
        expect(page).to_have_url(f"{allocator.url}/_allocator/")
        assert allocator.call(allocator.runtime.core.store.view(ANN, time.time())) is None


def test_in_chromium_the_a1111_stack_shows_the_countdown_and_keeps(
    browser: Browser, tmp_path: Path
) -> None:
    with InProcessAllocator.with_settings(
        tmp_path,
        identity="header",
        idle_timeout="100",
        local_command=a1111.local_command("--no-save-samples"),
        start_timeout=str(START_SECONDS),
    ) as allocator:
        page = webui_page(browser, allocator.url, ANN)
        expect_countdown(page)
        expect(page.locator("#txt2img_generate")).to_be_visible()  # the Gradio 3 app mounted
        keep_moves_the_activity_stamp(allocator, page, ANN)


def test_in_chromium_with_the_badge_off_the_page_has_none(browser: Browser, tmp_path: Path) -> None:
    with InProcessAllocator.with_settings(
        tmp_path, identity="header", idle_timeout="100", badge="off"
    ) as allocator:
        page = webui_page(browser, allocator.url, ANN)
        assert page.locator(f'script[src="{badge.SCRIPT_PATH}"]').count() == 0
        assert page.locator("#sda-badge").count() == 0
