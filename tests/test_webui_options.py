"""A person's WebUI settings follow them from one WebUI to the next (issue 14 §3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aiohttp
import httpx
import pytest

from allocator.slugs import slug_for
from allocator.webui_options import KeptOptions
from cruiser.reaper import CruiseOptions, Reaper
from sidecar import kept_options
from sidecar.kept_options import portable
from sidecar.webui import WebUI
from tests.sidecar.fake_webui import FakeWebUI
from tests.support.inprocess import InProcessAllocator
from tests.support.processes import header_for, wait_until

ANN = "ann@example.com"
START_SECONDS = 120.0


def ready(allocator: InProcessAllocator) -> None:
    def answers() -> bool:
        return httpx.get(f"{allocator.url}/sdapi/v1/options", headers=header_for(ANN)).is_success

    wait_until(answers, START_SECONDS, "ann's WebUI", interval=0.3)


def test_settings_made_in_one_webui_are_there_in_the_next(tmp_path: Path) -> None:
    with InProcessAllocator.with_settings(tmp_path, identity="header") as allocator:
        ready(allocator)
        first = httpx.get(f"{allocator.url}/_allocator/status", headers=header_for(ANN)).json()
        change = {"samples_format": "jpg", "CLIP_stop_at_last_layers": 2}
        set_answer = httpx.post(
            f"{allocator.url}/sdapi/v1/options", json=change, headers=header_for(ANN)
        )
        assert set_answer.status_code == 200
        released = httpx.post(
            f"{allocator.url}/_allocator/release",
            headers={**header_for(ANN), "Origin": allocator.url},
        )
        assert released.json()["released"]
        kept = json.loads((tmp_path / "users" / slug_for(ANN) / "webui/options.json").read_text())
        assert kept["samples_format"] == "jpg"
        assert not [key for key in kept if key.startswith("outdir")]  # never a folder
        ready(allocator)  # a new WebUI
        second = httpx.get(f"{allocator.url}/_allocator/status", headers=header_for(ANN)).json()
        assert second["server"] != first["server"]
        options = httpx.get(f"{allocator.url}/sdapi/v1/options", headers=header_for(ANN)).json()
        assert (options["samples_format"], options["CLIP_stop_at_last_layers"]) == ("jpg", 2)


def test_settings_survive_a_reclaim_by_the_cruiser(tmp_path: Path) -> None:
    """The cruiser gives an idle WebUI back the way a release does: its settings are kept."""
    with InProcessAllocator.with_settings(tmp_path, identity="header") as allocator:
        ready(allocator)
        first = httpx.get(f"{allocator.url}/_allocator/status", headers=header_for(ANN)).json()
        options_url = f"{allocator.url}/sdapi/v1/options"
        answer = httpx.post(options_url, json={"samples_format": "webp"}, headers=header_for(ANN))
        assert answer.status_code == 200
        core = allocator.runtime.core
        everyone_idle = CruiseOptions(idle_timeout=0.001, orphan_grace=600.0)
        summary = allocator.call(Reaper(core.store, core.backend, everyone_idle).run_pass())
        assert summary.reclaimed == 1
        ready(allocator)  # a new WebUI
        second = httpx.get(f"{allocator.url}/_allocator/status", headers=header_for(ANN)).json()
        assert second["server"] != first["server"]
        options = httpx.get(options_url, headers=header_for(ANN)).json()
        assert options["samples_format"] == "webp"


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        (
            {"samples_format": "jpg", "outdir_samples": "/share/users/bob"},
            {"samples_format": "jpg"},
        ),
        ({"ckpt_dir": "/x", "styles_csv_path": "/y", "a_file": "z", "k": 1}, {"k": 1}),
        (["not", "an", "object"], None),
        ("text", None),
    ],
)
def test_only_settings_that_name_no_place_are_kept(
    answer: object, kept: dict[str, object] | None
) -> None:
    assert portable(answer) == kept


def test_a_link_planted_for_the_settings_is_replaced_not_followed(tmp_path: Path) -> None:
    """A WebUI (on this machine it runs as the same user) puts a link where the file goes:
    the write replaces the link, the file it pointed at stays as it was."""
    users = tmp_path / "users"
    folder = users / "ann" / "webui"
    folder.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("precious")
    (folder / "options.json").symlink_to(elsewhere)
    kept = KeptOptions(users)
    assert kept.load("ann") is None  # a link is not read either
    kept.save("ann", {"samples_format": "jpg"})
    assert elsewhere.read_text() == "precious"
    assert not (folder / "options.json").is_symlink()
    assert kept.load("ann") == {"samples_format": "jpg"}


def test_a_webui_folder_that_is_a_link_is_not_written_through(tmp_path: Path) -> None:
    users = tmp_path / "users"
    (users / "ann").mkdir(parents=True)
    bobs = tmp_path / "bob-webui"
    bobs.mkdir()
    os.symlink(bobs, users / "ann" / "webui")
    with pytest.raises(OSError):
        KeptOptions(users).save("ann", {"samples_format": "jpg"})
    assert list(bobs.iterdir()) == []


def test_oversized_or_broken_files_are_no_settings(tmp_path: Path) -> None:
    folder = tmp_path / "users" / "ann" / "webui"
    folder.mkdir(parents=True)
    kept = KeptOptions(tmp_path / "users")
    (folder / "options.json").write_text("{not json")
    assert kept.load("ann") is None
    (folder / "options.json").write_bytes(b'{"a": "' + b"x" * (1 << 20) + b'"}')
    assert kept.load("ann") is None


def test_settings_nested_deeper_than_json_can_follow_are_no_settings() -> None:
    assert kept_options.parse(b"[" * 100_000) is None


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        ({f"option_{n}": "x" * 100 for n in range(3000)}, "all"),  # many chunks, under 1 MiB
        ({f"option_{n}": "x" * 100 for n in range(12000)}, None),  # over 1 MiB
    ],
)
async def test_a_settings_answer_is_read_to_its_end_but_never_past_the_bound(
    answer: dict[str, str], kept: str | None
) -> None:
    async with FakeWebUI(status=200) as webui, aiohttp.ClientSession() as session:
        webui.options = answer
        options = await WebUI(session, webui.url, 1.0).options(30.0)
    assert options == (answer if kept else None)
