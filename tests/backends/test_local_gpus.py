"""The local backend on a machine with several GPUs (SDA_LOCAL_GPUS): each WebUI gets exactly
one, never one someone else has, across every `serve` process on the machine.

No GPU here: the WebUI is a stand-in that records the `CUDA_VISIBLE_DEVICES` and arguments it
was started with (`tiny_webui(..., record=True)`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from allocator.backends.local import LocalBackend
from allocator.types import NoCapacity, Placement
from tests.support.inprocess import InProcessAllocator, settings_for
from tests.support.people import no_progress, person
from tests.support.processes import LAUNCH_RECORD, header_for, tiny_webui, wait_until

START_SECONDS = 30.0


def recording_command(folder: Path, extra: str = "") -> str:
    return f"{{python}} {tiny_webui(folder, record=True)} {{port}} {extra}".strip()


def gpu_backend(data_dir: Path, gpus: str, **settings: Any) -> LocalBackend:
    """A local backend as `serve` builds it from SDA_LOCAL_GPUS and the other settings."""
    settings.setdefault("local_command", recording_command(data_dir, "--gpu {gpu}"))
    return LocalBackend.from_settings(
        settings_for(data_dir, local_gpus=gpus, start_timeout=START_SECONDS, **settings)
    )


@asynccontextmanager
async def running(*backends: LocalBackend) -> AsyncIterator[None]:
    for backend in backends:
        await backend.start()
    try:
        yield
    finally:
        for backend in backends:
            await backend.close()


async def allocate(backend: LocalBackend, email: str) -> Placement:
    return await backend.allocate(person(email), no_progress)


def launched_with(data_dir: Path, email: str) -> dict[str, Any]:
    """What the person's WebUI was started with: its arguments and CUDA_VISIBLE_DEVICES."""
    record = data_dir / "users" / person(email).slug / LAUNCH_RECORD
    seen: dict[str, Any] = json.loads(record.read_text())
    return seen


def gpu_of(data_dir: Path, email: str) -> str | None:
    gpu: str | None = launched_with(data_dir, email)["CUDA_VISIBLE_DEVICES"]
    return gpu


async def test_two_people_get_two_gpus_in_the_environment_and_the_command(
    tmp_path: Path,
) -> None:
    backend = gpu_backend(tmp_path, "0,1")
    async with running(backend):
        ann = await allocate(backend, "ann@example.com")
        ben = await allocate(backend, "ben@example.com")
        for email, placement in (("ann@example.com", ann), ("ben@example.com", ben)):
            seen = launched_with(tmp_path, email)
            gpu = placement.handle["gpu"]
            assert seen["CUDA_VISIBLE_DEVICES"] == gpu
            assert seen["argv"][-2:] == ["--gpu", gpu]
        assert {ann.handle["gpu"], ben.handle["gpu"]} == {"0", "1"}
        listed = {
            session.email: session.placement.handle["gpu"] for session in await backend.inventory()
        }
        assert listed == {
            "ann@example.com": ann.handle["gpu"],
            "ben@example.com": ben.handle["gpu"],
        }


async def test_with_every_gpu_taken_the_next_person_gets_no_capacity(tmp_path: Path) -> None:
    """SDA_MAX_SESSIONS unset: as many WebUIs as GPUs, not its default of 4."""
    backend = gpu_backend(tmp_path, "0,1")
    async with running(backend):
        await allocate(backend, "ann@example.com")
        await allocate(backend, "ben@example.com")
        with pytest.raises(NoCapacity):
            await allocate(backend, "cat@example.com")


async def test_max_sessions_lower_than_the_gpus_wins(tmp_path: Path) -> None:
    backend = gpu_backend(tmp_path, "0,1,2,3", max_sessions="2")
    async with running(backend):
        await allocate(backend, "ann@example.com")
        await allocate(backend, "ben@example.com")
        with pytest.raises(NoCapacity):
            await allocate(backend, "cat@example.com")  # GPUs 2 and 3 are idle, but 2 is the limit


async def test_a_crashed_webui_frees_its_gpu_for_the_next_person(tmp_path: Path) -> None:
    backend = gpu_backend(tmp_path, "0,1")
    gone = asyncio.Event()

    async def on_gone(email: str, server: str) -> None:
        gone.set()

    backend.on_gone(on_gone)
    async with running(backend):
        ann = await allocate(backend, "ann@example.com")
        ben = await allocate(backend, "ben@example.com")
        os.kill(ann.handle["pid"], signal.SIGKILL)
        await asyncio.wait_for(gone.wait(), START_SECONDS)
        cat = await allocate(backend, "cat@example.com")
        assert cat.handle["gpu"] == ann.handle["gpu"] != ben.handle["gpu"]
        assert gpu_of(tmp_path, "cat@example.com") == ann.handle["gpu"]


async def test_a_released_webui_frees_its_gpu(tmp_path: Path) -> None:
    backend = gpu_backend(tmp_path, "0")
    async with running(backend):
        ann = await allocate(backend, "ann@example.com")
        (session,) = await backend.inventory()
        await backend.release(session)
        ben = await allocate(backend, "ben@example.com")
        assert ben.handle["gpu"] == ann.handle["gpu"] == "0"


async def test_two_serve_processes_on_one_machine_never_share_a_gpu(tmp_path: Path) -> None:
    """Two backends on one data dir, as two `serve` processes: four people at once, three GPUs."""
    first, second = gpu_backend(tmp_path, "0,1,2"), gpu_backend(tmp_path, "0,1,2")
    emails = ["ann@example.com", "ben@example.com", "cat@example.com", "dan@example.com"]
    async with running(first, second):
        results = await asyncio.gather(
            *(allocate((first, second)[i % 2], email) for i, email in enumerate(emails)),
            return_exceptions=True,
        )
        handed_out = {
            email: result.handle["gpu"]
            for email, result in zip(emails, results, strict=True)
            if isinstance(result, Placement)
        }
        refused = [result for result in results if isinstance(result, NoCapacity)]
        assert (len(handed_out), len(refused)) == (3, 1), results
        assert sorted(handed_out.values()) == ["0", "1", "2"]
        assert {email: gpu_of(tmp_path, email) for email in handed_out} == handed_out


async def test_a_webui_stopped_by_the_other_serve_process_is_no_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One serve process started ann's WebUI, the other gives it back (a release or a
    reclaim through another replica): the first neither warns of a crash nor reports it
    gone (which would count a restart and tell ann her WebUI stopped)."""
    first, second = gpu_backend(tmp_path, "0"), gpu_backend(tmp_path, "0")
    gone: list[tuple[str, str]] = []

    async def record_gone(email: str, server: str) -> None:
        gone.append((email, server))

    first.on_gone(record_gone)
    async with running(first, second):
        await allocate(first, "ann@example.com")
        (session,) = await second.inventory()
        await second.release(session)
        await first.exits_handled()
    assert gone == [] and "exited by itself" not in caplog.text


async def test_an_older_registry_entry_without_a_gpu_still_counts(tmp_path: Path) -> None:
    """A WebUI started before SDA_LOCAL_GPUS was set (its registry file has no `gpu`) sees
    every GPU and computes on the first: it holds that one, and nobody is given it."""
    before = LocalBackend(recording_command(tmp_path), tmp_path, 4, START_SECONDS)
    after = gpu_backend(tmp_path, "0,1")
    async with running(before, after):
        await allocate(before, "old@example.com")
        (record,) = (tmp_path / "run").glob("*.json")
        written = json.loads(record.read_text())
        del written["gpu"]
        record.write_text(json.dumps(written))
        assert [session.email for session in await after.inventory()] == ["old@example.com"]
        new = await allocate(after, "new@example.com")
        assert new.handle["gpu"] == "1"
        with pytest.raises(NoCapacity):
            await allocate(after, "late@example.com")


async def test_a_registry_entry_from_a_newer_version_still_counts(tmp_path: Path) -> None:
    """A field this version does not know (a newer `serve` on the same machine wrote it) is
    no reason to drop the entry and hand its GPU out again."""
    backend = gpu_backend(tmp_path, "0")
    async with running(backend):
        await allocate(backend, "new@example.com")
        (record,) = (tmp_path / "run").glob("*.json")
        record.write_text(json.dumps({**json.loads(record.read_text()), "numa_node": 1}))
        assert [session.email for session in await backend.inventory()] == ["new@example.com"]
        with pytest.raises(NoCapacity):
            await allocate(backend, "late@example.com")


async def test_without_gpus_the_environment_is_inherited_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    backend = LocalBackend.from_settings(
        settings_for(tmp_path, local_command=recording_command(tmp_path))
    )
    async with running(backend):
        placement = await allocate(backend, "ann@example.com")
    assert gpu_of(tmp_path, "ann@example.com") == "3,5"
    assert "gpu" not in placement.handle


def page_for(allocator: InProcessAllocator, email: str) -> httpx.Response:
    headers = {**header_for(email), "Accept": "text/html"}
    return httpx.get(f"{allocator.url}/", headers=headers, timeout=30)


def wait_ready(allocator: InProcessAllocator, email: str) -> None:
    """Loads the page, as a browser does, until the person's WebUI answers it."""
    wait_until(
        lambda: page_for(allocator, email).status_code == 200,
        START_SECONDS,
        f"{email}'s WebUI",
        interval=0.2,
    )


def test_people_see_all_gpus_busy_when_every_gpu_is_taken(tmp_path: Path) -> None:
    with InProcessAllocator.with_settings(
        tmp_path,
        identity="header",
        local_gpus="0,1",
        local_command=recording_command(tmp_path),
        allocation_wait="60",  # a first page load waits for its WebUI, however slow the start
    ) as allocator:
        wait_ready(allocator, "ann@example.com")
        wait_ready(allocator, "ben@example.com")
        assert {gpu_of(tmp_path, "ann@example.com"), gpu_of(tmp_path, "ben@example.com")} == {
            "0",
            "1",
        }
        # The first answer may be "allocating" on a slow machine: ask as the page does.
        wait_until(
            lambda: 'data-state="queued"' in page_for(allocator, "cat@example.com").text,
            START_SECONDS,
            "the queue page",
            interval=0.2,
        )
        page = page_for(allocator, "cat@example.com")
        assert page.status_code == 503 and "Waiting for a GPU" in page.text


async def test_a_registry_file_that_is_not_an_entry_is_removed_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = gpu_backend(tmp_path, "0,1")
    run = tmp_path / "run"
    run.mkdir()
    (run / "garbage.json").write_text("{not json")
    (run / "typed.json").write_text(json.dumps({"email": "x", "slug": "x", "owner": "me"}))
    async with running(backend):
        placement = await allocate(backend, "ann@example.com")
    assert placement.handle["gpu"] == "0"
    assert not (run / "garbage.json").exists() and not (run / "typed.json").exists()
    assert caplog.text.count("which is not an entry") == 2
