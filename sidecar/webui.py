"""A client for the WebUI in the same pod: its readiness probe and AUTOMATIC1111's options API."""

from __future__ import annotations

from typing import Any

import aiohttp

from sidecar.errors import describe
from sidecar.outputs import OutputFolders

OPTIONS_TIMEOUT = aiohttp.ClientTimeout(total=30)
"""A1111 writes its config file on every options change; a busy WebUI may take a while."""


class WebUIError(Exception):
    """The WebUI did not answer, answered an error, or did not take the new settings."""


def outputs_options(folders: OutputFolders) -> dict[str, str]:
    """The options that send every kind of picture to ``folders``.

    ``outdir_samples`` and ``outdir_grids``, when set, override the per-kind folders in A1111,
    so both are emptied.
    """
    return {
        "outdir_samples": "",
        "outdir_grids": "",
        **{key: str(path) for key, path in folders.kinds.items()},
    }


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

    async def send_outputs_to(self, folders: OutputFolders) -> None:
        """Set the outputs options, then read them back: A1111 silently ignores an option it
        refuses (started with ``--hide-ui-dir-config`` or ``--freeze-settings``)."""
        wanted = outputs_options(folders)
        await self._call("POST", "/sdapi/v1/options", wanted)
        current = await self._call("GET", "/sdapi/v1/options")
        if not isinstance(current, dict):
            raise WebUIError(f"GET /sdapi/v1/options: not a JSON object: {current!r:.200}")
        wrong = {k: current.get(k) for k, v in wanted.items() if current.get(k) != v}
        if wrong:
            raise WebUIError(f"the WebUI kept other outputs options: {wrong}")

    async def _call(self, method: str, path: str, body: object = None) -> Any:
        try:
            async with self._session.request(
                method, self._base + path, json=body, timeout=OPTIONS_TIMEOUT
            ) as response:
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise WebUIError(f"{method} {path}: HTTP {response.status} {text}")
                return await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise WebUIError(f"{method} {path}: {describe(error)}") from error
