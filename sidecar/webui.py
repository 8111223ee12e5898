"""A client for the WebUI in the same pod: only its readiness probe.

The sidecar never changes the WebUI's settings; it only reads the files the WebUI saves.
"""

from __future__ import annotations

import aiohttp


class WebUI:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, ping_timeout: float) -> None:
        self._session = session
        self._base = base_url
        self._ping_timeout = aiohttp.ClientTimeout(total=ping_timeout)

    async def answers(self) -> bool:
        """True if ``GET /internal/ping`` answers 200 within the ping timeout."""
        try:
            async with self._session.get(
                self._base + "/internal/ping", timeout=self._ping_timeout
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
