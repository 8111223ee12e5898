"""The operator's CLI: sessions list | show | release, against the real store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from allocator.cli import main
from allocator.store import SessionStore
from allocator.types import Placement, Session
from allocator.usage import UsageBook
from tests.support.inprocess import InProcessAllocator
from tests.support.origin import Origin
from tests.support.processes import RedisServer, header_for

SD_ALLOCATOR = str(Path(sys.executable).parent / "sd-allocator")


def cli(*args: str, **env: str) -> Result:
    """The command in this process, as an operator's shell would run it."""
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_sessions_list_show_release(
    origin: Origin, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        "SDA_REDIS_URL": redis_server.url,
        "SDA_BACKEND": "static",
        "SDA_STATIC_TARGET": origin.authority,
    }
    settings = origin.settings(redis_url=redis_server.url)
    with InProcessAllocator.with_settings(tmp_path, **settings) as allocator:
        for email in ("ann@example.com", "bob@example.com"):
            assert httpx.get(f"{allocator.url}/echo", headers=header_for(email)).status_code == 200

        listed = cli("sessions", "list", "--json", **env)
        assert listed.exit_code == 0, listed.stderr
        assert sorted(row["email"] for row in json.loads(listed.stdout)) == [
            "ann@example.com",
            "bob@example.com",
        ]
        table = cli("sessions", "list", **env).stdout.splitlines()
        assert table[0].split() == ["EMAIL", "SERVER", "IDLE", "BUSY"]
        assert sorted(line.split()[0] for line in table[1:]) == [
            "ann@example.com",
            "bob@example.com",
        ]

        shown = json.loads(cli("sessions", "show", "ANN@example.com", "--json", **env).stdout)
        assert shown["email"] == "ann@example.com" and shown["address"] == origin.authority

        assert cli("sessions", "release", "ann@example.com", **env).exit_code == 0
        again = cli("sessions", "release", "ann@example.com", **env)
        assert again.exit_code == 2 and "ann@example.com" in again.stderr
        status = httpx.get(
            f"{allocator.url}/_allocator/status", headers=header_for("ann@example.com")
        )
        assert status.json()["state"] == "none"
        # No session any more, but its history says what became of it.
        history = cli("sessions", "show", "ann@example.com", **env)
        assert history.exit_code == 0, history.stderr
        lines = history.stdout.splitlines()
        assert "session       none" in lines
        assert any(line.strip().startswith("An administrator gave your WebUI") for line in lines)
        assert cli("sessions", "show", "nobody@example.com", **env).exit_code == 2


def test_show_names_the_gpu_of_a_local_webui(redis_server: RedisServer) -> None:
    """With SDA_LOCAL_GPUS the local backend records each WebUI's GPU in its handle."""
    placement = Placement("local-cy-1", "127.0.0.1", 7000, {"pid": 1, "gpu": "2"})
    session = Session("cy@example.com", "cy-example-com-1", "local", placement, time.time())

    async def save() -> None:
        store = SessionStore.from_url(redis_server.url)
        await store.save(session, time.time())
        await store.close()

    asyncio.run(save())
    env = {"SDA_REDIS_URL": redis_server.url}
    shown = cli("sessions", "show", "cy@example.com", **env)
    assert "gpu           2" in shown.stdout.splitlines()
    assert (
        json.loads(cli("sessions", "show", "cy@example.com", "--json", **env).stdout)["gpu"] == "2"
    )


def test_memory_store_points_to_the_admin_page() -> None:
    result = cli("sessions", "list")
    assert result.exit_code == 2
    assert "/_allocator/admin" in result.stderr


def test_unreachable_store_is_one_clear_line() -> None:
    """The installed command, as a real process: exit code 2, one line, no secret."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SDA_")}
    environ["SDA_REDIS_URL"] = "redis://:secret@127.0.0.1:1/0"
    result = subprocess.run(
        [SD_ALLOCATOR, "sessions", "list"], env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("sd-allocator: error: cannot reach the session store")
    assert len(result.stderr.splitlines()) == 1
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


def test_usage_per_person_as_a_table_json_and_csv(redis_server: RedisServer) -> None:
    now = time.time()
    placement = Placement("gs-9", "10.0.0.9", 7860, {})
    running = Session("dee@example.com", "dee-example-com-1", "static", placement, now - 1800)

    async def seed() -> None:
        store = SessionStore.from_url(redis_server.url)
        await store.save(running, now - 1800)  # half an hour so far, counted when asked
        await UsageBook(store).add_busy({"dee@example.com": 600.0, "eve@example.com": 60.0}, now)
        await store.close()

    asyncio.run(seed())
    env = {"SDA_REDIS_URL": redis_server.url}
    table = cli("usage", **env)
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[1].split() == ["EMAIL", "ALLOCATED", "GENERATING"]
    assert lines[2].split()[0] == "dee@example.com"  # most allocated first
    assert lines[-1].split()[0] == "total"

    report = json.loads(cli("usage", "--json", **env).stdout)
    [dee] = [person for person in report["people"] if person["email"] == "dee@example.com"]
    assert dee["allocated_seconds"] >= 1800 and dee["busy_seconds"] == 600
    rows = cli("usage", "--csv", "--since", report["since"], **env).stdout.splitlines()
    assert rows[0] == "day,email,allocated_seconds,busy_seconds"
    assert {row.split(",")[1] for row in rows[1:]} == {"dee@example.com", "eve@example.com"}

    for bad in (["--since", "yesterday"], ["--json", "--csv"]):
        refused = cli("usage", *bad, **env)
        assert refused.exit_code == 2 and refused.stderr.startswith("sd-allocator: error:")
