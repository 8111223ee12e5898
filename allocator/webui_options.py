"""A person's WebUI settings, kept across WebUIs: read from a WebUI, applied to the next.

The settings are read from the WebUI (`GET /sdapi/v1/options`) when it is given back and kept
in `users/<slug>/webui/options.json` (the file and what is kept: `sidecar.kept_options`; on GKE
the pod's sidecar keeps them, since the allocator reads the share read-only). Before the person
is routed to their next WebUI they are applied to it (`POST /sdapi/v1/options`). Applying is
best effort: a WebUI that refuses is logged, and the person gets it all the same.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp

from allocator.types import Placement
from sidecar import kept_options
from sidecar.kept_options import OPTIONS_PATH, Options

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0


class KeptOptions:
    def __init__(self, users_dir: Path) -> None:
        self._users = users_dir
        self._client: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    def load(self, slug: str) -> Options | None:
        return kept_options.load(self._users, slug)

    def save(self, slug: str, options: Options) -> None:
        kept_options.save(self._users, slug, options)

    # -- the WebUI ------------------------------------------------------------------------

    async def capture(self, slug: str, placement: Placement) -> None:
        """Keep the settings of the WebUI at `placement` (before it is given back)."""
        try:
            async with self._http().get(_url(placement)) as response:
                if response.status != 200:
                    return
                options = await kept_options.read_answer(response.content)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("could not read the WebUI settings of %s: %s", slug, exc)
            return
        if options is None:
            return
        try:
            await asyncio.to_thread(self.save, slug, options)
        except OSError as exc:
            log.warning("could not keep the WebUI settings of %s: %s", slug, exc)

    async def apply(self, slug: str, placement: Placement) -> None:
        """Give the WebUI at `placement` the person's kept settings, if any."""
        try:
            options = await asyncio.to_thread(self.load, slug)
        except OSError:
            options = None
        if not options:
            return
        try:
            async with self._http().post(_url(placement), json=options) as response:
                if response.status >= 300:
                    text = (await response.content.read(500)).decode(errors="replace")
                    log.warning(
                        "the WebUI refused the kept settings of %s (%s): %s",
                        slug,
                        response.status,
                        text,
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not give the WebUI the kept settings of %s: %s", slug, exc)

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None:
            timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
            self._client = aiohttp.ClientSession(timeout=timeout)
        return self._client


def _url(placement: Placement) -> str:
    host = f"[{placement.host}]" if ":" in placement.host else placement.host
    return f"http://{host}:{placement.port}{OPTIONS_PATH}"
