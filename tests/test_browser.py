"""One person, one real browser: sign in, wait for the WebUI, generate, see the picture."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.support.processes import AllocatorProcess


def test_sign_in_open_the_webui_generate_and_see_the_picture(
    browser: Browser, tmp_path: Path
) -> None:
    allocator = AllocatorProcess(
        tmp_path,
        local_command="{python} -m demo_webui --port {port} --user-dir {user_dir} "
        "--outputs-dir {outputs_dir} --delay 0.5",
    ).start()
    page = browser.new_page()
    try:
        page.goto(f"{allocator.url}/")
        expect(page).to_have_url(f"{allocator.url}/_allocator/login?next=%2F")
        page.fill("#email", "painter@example.com")
        page.click("#sign-in")
        # The progress page refreshes by itself until the WebUI answers.
        prompt = page.locator("#txt2img_prompt textarea")
        expect(prompt).to_be_visible(timeout=90_000)
        prompt.fill("a lighthouse on a cliff at dusk")
        page.click("#generate")
        picture = page.locator("#output img")
        expect(picture).to_be_visible(timeout=30_000)
        # Loaded through the proxy, not merely an <img> element: its pixels arrived.
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0",
            arg=picture.element_handle(),
            timeout=30_000,
        )
        page.screenshot(path=str(tmp_path / "generated.png"))
        outputs = list((tmp_path / "users").glob("painter-example-com-*/outputs/*.png"))
        assert len(outputs) == 1
    finally:
        page.close()
        allocator.stop()
