from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from allocator.store import SessionStore
from tests.support.origin import Origin
from tests.support.processes import RedisServer, require

# Debian's Chromium, headless, with nothing that reaches out to the network on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(autouse=True, scope="session")
def _no_settings_from_this_machine() -> Iterator[None]:
    """Settings made in the test process come from the test alone, never from an SDA_*
    variable of whoever runs the suite (SDA_REQUIRE_ALL, the suite's own, stays)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("SDA_")}
    for name in saved:
        if name != "SDA_REQUIRE_ALL":
            del os.environ[name]
    yield
    os.environ.update(saved)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = require("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture(params=["redis", "memory"])
async def any_store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    """A store on real Redis and on the embedded one: the same scripts must hold on both."""
    url = "memory"
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url
    opened = SessionStore.from_url(url)
    yield opened
    await opened.close()
