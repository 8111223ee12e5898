"""A client for the Agones SDK server's REST API (localhost, in the same pod).

Only what the sidecar needs: ``GET /gameserver``, ``/ready``, ``/health``, ``/shutdown`` (POST
``{}`` as JSON),
``/metadata/annotation`` (PUT ``{"key": ..., "value": ...}``; Agones stores it as the annotation
``agones.dev/sdk-<key>``, asynchronously) and the ``/watch/gameserver`` stream, NDJSON lines
``{"result": GameServer}`` in snake_case, the first of them the GameServer as it is now. Failures,
including the SDK server not listening yet, raise `SDKError`; callers decide whether to retry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from sidecar.errors import describe

CALL_TIMEOUT = aiohttp.ClientTimeout(total=5)
WATCH_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5)
"""The stream stays open for the pod's whole life, quiet for hours; a dead SDK server closes the
loopback connection, which ends the stream."""
MAX_LINE_BYTES = 2**20
"""aiohttp's default line limit (64 KiB) is less than a GameServer with many annotations."""


class SDKError(Exception):
    """An SDK call failed: not reachable (yet), an error answer, or a broken stream."""


@dataclass(frozen=True)
class GameServer:
    """The parts of a ``/watch/gameserver`` update the sidecar reads."""

    state: str
    labels: Mapping[str, str]
    health_period: int | None
    """``spec.health.period_seconds``; None when health checking is disabled or not reported."""

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> GameServer:
        meta = result.get("object_meta") or {}
        health = (result.get("spec") or {}).get("health") or {}
        period = None if health.get("disabled") else health.get("period_seconds")
        return cls(
            state=str((result.get("status") or {}).get("state", "")),
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            health_period=int(period) if period else None,
        )


class AgonesSDK:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url

    async def gameserver(self) -> GameServer:
        """The GameServer as it is now."""
        try:
            async with self._session.get(
                self._base + "/gameserver", timeout=CALL_TIMEOUT
            ) as response:
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise SDKError(f"GET /gameserver: HTTP {response.status} {text}")
                result = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise SDKError(f"GET /gameserver: {describe(error)}") from error
        if not isinstance(result, dict):
            raise SDKError(f"GET /gameserver: not a GameServer: {result!r:.200}")
        return GameServer.from_result(result)

    async def ready(self) -> None:
        await self._post("/ready")

    async def health(self) -> None:
        await self._post("/health")

    async def shutdown(self) -> None:
        await self._post("/shutdown")

    async def set_annotation(self, key: str, value: str) -> None:
        """Sets the GameServer's annotation ``agones.dev/sdk-<key>``."""
        await self._call("PUT", "/metadata/annotation", {"key": key, "value": value})

    async def _post(self, path: str) -> None:
        await self._call("POST", path, {})

    async def _call(self, method: str, path: str, body: Mapping[str, str]) -> None:
        try:
            async with self._session.request(
                method, self._base + path, json=body, timeout=CALL_TIMEOUT
            ) as response:
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise SDKError(f"{method} {path}: HTTP {response.status} {text}")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise SDKError(f"{method} {path}: {describe(error)}") from error

    async def watch(self) -> AsyncIterator[GameServer]:
        """The GameServer now, then after every change, until the stream ends or breaks."""
        try:
            async with self._session.get(
                self._base + "/watch/gameserver", timeout=WATCH_TIMEOUT, read_bufsize=MAX_LINE_BYTES
            ) as response:
                if response.status != 200:
                    raise SDKError(f"GET /watch/gameserver: HTTP {response.status}")
                async for line in response.content:
                    if line.strip():
                        yield _parse(line)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise SDKError(f"GET /watch/gameserver: {describe(error)}") from error


def _parse(line: bytes) -> GameServer:
    """One NDJSON line; grpc-gateway reports a failed stream as ``{"error": {...}}``."""
    message = json.loads(line)
    if not isinstance(message, dict) or not isinstance(message.get("result"), dict):
        raise SDKError(f"unexpected watch message: {line[:200]!r}")
    return GameServer.from_result(message["result"])
