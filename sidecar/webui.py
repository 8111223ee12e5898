"""A client for the WebUI in the same pod: its readiness probe and its settings.

The sidecar gives the WebUI the person's kept settings once, then only reads them to keep them.
"""

from __future__ import annotations

import aiohttp

from sidecar import kept_options
from sidecar.kept_options import OPTIONS_PATH, Options


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

    async def options(self, seconds: float) -> Options | None:
        """The settings worth keeping from ``GET /sdapi/v1/options``; None when it does not
        answer 200 with a JSON object of at most `kept_options.MAX_BYTES` within ``seconds``."""
        try:
            async with self._session.get(
                self._base + OPTIONS_PATH, timeout=aiohttp.ClientTimeout(total=seconds)
            ) as response:
                if response.status != 200:
                    return None
                return await kept_options.read_answer(response.content)
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def set_options(self, options: Options, seconds: float) -> bool:
        """``POST /sdapi/v1/options``; True if the WebUI answered 200 within ``seconds``."""
        try:
            async with self._session.post(
                self._base + OPTIONS_PATH,
                json=options,
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
