"""A person's WebUI settings, kept across WebUIs: `users/<slug>/webui/options.json`.

Every allocation gives a fresh WebUI, so AUTOMATIC1111's settings (sampler defaults, picture
format, quick settings, ...) would be lost at every give-back. They are read from the WebUI
(`GET /sdapi/v1/options`) when it is given back, written here, and applied to the next one
(`POST /sdapi/v1/options`) before the person is routed to it.

What a WebUI answers is hostile: only a JSON object of bounded size is kept, and never a
setting that names a folder or a file (`outdir_*`, `*_dir`, `*_path`, ...): restoring those
could point a new WebUI at someone else's folder, and a pod's WebUI refuses them anyway. The
file is written beside and renamed, inside the person's folder opened without following links.
Applying is best effort: a WebUI that refuses is logged, and the person gets it all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from allocator.types import Placement

log = logging.getLogger(__name__)

OPTIONS_PATH = "/sdapi/v1/options"
FOLDER, FILE = "webui", "options.json"
MAX_BYTES = 1 << 20
TIMEOUT_SECONDS = 10.0
_LOCATIONS = re.compile(r"^outdir|_dir$|_dirs$|_path$|_paths$|_file$|^directories")
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Options = dict[str, Any]


def portable(options: Any) -> Options | None:
    """The settings worth keeping from what a WebUI answered; None if it is not an object."""
    if not isinstance(options, dict):
        return None
    return {
        key: value
        for key, value in options.items()
        if isinstance(key, str) and not _LOCATIONS.search(key)
    }


class KeptOptions:
    def __init__(self, users_dir: Path) -> None:
        self._users = users_dir
        self._client: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    # -- the file -------------------------------------------------------------------------

    def load(self, slug: str) -> Options | None:
        """The person's kept settings, None when there are none (or none readable)."""
        try:
            folder = self._open_folder(slug, create=False)
        except OSError:
            return None
        try:
            descriptor = os.open(FILE, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
        except OSError:
            return None
        finally:
            os.close(folder)
        with os.fdopen(descriptor, "rb") as source:
            raw = source.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            return None
        try:
            return portable(json.loads(raw))
        except ValueError:
            return None

    def save(self, slug: str, options: Options) -> None:
        """Write beside, then rename over: a reader never sees half a file."""
        data = json.dumps(options, sort_keys=True).encode()
        if len(data) > MAX_BYTES:
            log.warning("WebUI settings of %s not kept: %d bytes", slug, len(data))
            return
        folder = self._open_folder(slug, create=True)
        draft = f".{FILE}.{uuid.uuid4().hex}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            descriptor = os.open(draft, flags, 0o600, dir_fd=folder)
            with os.fdopen(descriptor, "wb") as target:
                target.write(data)
                target.flush()
                os.fsync(target.fileno())
            os.replace(draft, FILE, src_dir_fd=folder, dst_dir_fd=folder)
        finally:
            os.close(folder)

    def _open_folder(self, slug: str, create: bool) -> int:
        """`users/<slug>/webui`, each step opened without following a link."""
        current = os.open(self._users, _DIRECTORY & ~os.O_NOFOLLOW)
        for part in (slug, FOLDER):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=current)
            try:
                following = os.open(part, _DIRECTORY, dir_fd=current)
            finally:
                os.close(current)
            current = following
        return current

    # -- the WebUI ------------------------------------------------------------------------

    async def capture(self, slug: str, placement: Placement) -> None:
        """Keep the settings of the WebUI at `placement` (before it is given back)."""
        try:
            async with self._http().get(_url(placement)) as response:
                if response.status != 200:
                    return
                raw = await response.content.read(MAX_BYTES + 1)
            options = portable(json.loads(raw)) if len(raw) <= MAX_BYTES else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
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
