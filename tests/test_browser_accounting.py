"""What a person sees in a real browser after the cruiser took their WebUI, and once their
day's GPU hours are used up: the reason in words, their GPU time, when they can go on."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.accounting import cruise, last_active, used_today
from tests.support.inprocess import InProcessAllocator
from tests.support.processes import RedisServer, header_for, tiny_webui

EMAIL = "painter@example.com"
IDLE_TIMEOUT = 900.0


@pytest.fixture
def allocator(redis_server: RedisServer, tmp_path: Path) -> Iterator[InProcessAllocator]:
    command = f"{sys.executable} {tiny_webui(tmp_path)} {{port}}"
    with InProcessAllocator.with_settings(
        tmp_path, backend="local", identity="header", redis_url=redis_server.url,
        local_command=command, cruiser="off", idle_timeout=str(IDLE_TIMEOUT), daily_gpu_hours="1",
    ) as started:  # fmt: skip
        yield started


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(extra_http_headers=header_for(EMAIL))
    yield context.new_page()
    context.close()


def test_a_person_reads_why_their_webui_went_and_when_they_can_go_on(
    allocator: InProcessAllocator, page: Page
) -> None:
    assert page.goto(f"{allocator.url}/") is not None  # their WebUI
    session = page.goto(f"{allocator.url}/_allocator/")
    assert session is not None and session.status == 200
    expect(page.locator("#quota-left")).to_contain_text("of 1.00 h")

    last_active(allocator, EMAIL, 2 * IDLE_TIMEOUT)
    before = time.gmtime()
    assert cruise(allocator).reclaimed == 1
    after = time.gmtime()
    page.goto(f"{allocator.url}/_allocator/")
    newest = page.locator("#events li").first
    expect(newest).to_have_attribute("data-reason", "idle")
    minutes = "|".join({time.strftime("%H:%M", moment) for moment in (before, after)})
    expect(newest).to_have_text(
        re.compile(
            rf"Your WebUI was given back at (\d{{4}}-\d\d-\d\d )?({minutes}) UTC after 30 "
            r"minutes without activity\."
        )
    )
    expect(page.locator("#usage-today")).to_contain_text("allocated")

    used_today(allocator, EMAIL, 3600)
    refused = page.goto(f"{allocator.url}/")
    assert refused is not None and refused.status == 503
    expect(page.locator("h1")).to_have_text("Today's GPU hours are used up")
    expect(page.locator("#message")).to_contain_text("You can have a WebUI again at 00:00 UTC")
    expect(page.locator("#pictures-link")).to_be_visible()
    assert page.locator('meta[http-equiv="refresh"]').count() == 0  # it does not reload itself
