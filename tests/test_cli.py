"""The operator's CLI: sessions list | show | release, against the real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.origin import Origin
from tests.support.processes import AllocatorProcess, RedisServer, header_for

SD_ALLOCATOR = str(Path(sys.executable).parent / "sd-allocator")


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SDA_")}
    environ.update(env)
    return subprocess.run(
        [SD_ALLOCATOR, *args], env=environ, capture_output=True, text=True, timeout=30
    )


def test_sessions_list_show_release(
    origin: Origin, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        "SDA_REDIS_URL": redis_server.url,
        "SDA_BACKEND": "static",
        "SDA_STATIC_TARGET": origin.authority,
    }
    allocator = AllocatorProcess(
        tmp_path,
        **origin.settings(
            redis_url=redis_server.url,
        ),
    ).start()
    try:
        for email in ("ann@example.com", "bob@example.com"):
            assert httpx.get(f"{allocator.url}/echo", headers=header_for(email)).status_code == 200

        listed = cli("sessions", "list", "--json", **env)
        assert listed.returncode == 0, listed.stderr
        assert sorted(row["email"] for row in json.loads(listed.stdout)) == [
            "ann@example.com",
            "bob@example.com",
        ]
        table = cli("sessions", "list", **env)
        assert "ann@example.com" in table.stdout and "EMAIL" in table.stdout

        shown = json.loads(cli("sessions", "show", "ANN@example.com", "--json", **env).stdout)
        assert shown["email"] == "ann@example.com" and shown["address"] == origin.authority

        released = cli("sessions", "release", "ann@example.com", **env)
        assert released.returncode == 0 and "released" in released.stdout
        again = cli("sessions", "release", "ann@example.com", **env)
        assert again.returncode == 2 and "has no session" in again.stderr
        status = httpx.get(
            f"{allocator.url}/_allocator/status", headers=header_for("ann@example.com")
        )
        assert status.json()["state"] == "none"
    finally:
        allocator.stop()


def test_memory_store_points_to_the_admin_page() -> None:
    result = cli("sessions", "list")
    assert result.returncode == 2
    assert "/_allocator/admin" in result.stderr


def test_unreachable_store_is_one_clear_line() -> None:
    result = cli("sessions", "list", SDA_REDIS_URL="redis://:secret@127.0.0.1:1/0")
    assert result.returncode == 2
    assert "cannot reach the session store" in result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr
