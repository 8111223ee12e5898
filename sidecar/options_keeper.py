"""Keeping the person's WebUI settings (``users/<slug>/webui/options.json``) while the pod
is theirs.

When the pod is given to someone, their kept settings are given to the WebUI (``POST
/sdapi/v1/options``) before the allocator is told the pod is ready, so the WebUI starts as they
left their last one. From then on the WebUI's settings are read every period, and once more on
SIGTERM, and written to the person's folder whenever they differ from what is kept. Nothing is
written before the kept settings were given to the WebUI: a fresh WebUI's defaults must never
replace them. If the WebUI refuses them, nothing is kept for this pod's life (one log line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from sidecar import kept_options
from sidecar.errors import describe
from sidecar.kept_options import Options
from sidecar.pacing import Every
from sidecar.webui import WebUI

log = logging.getLogger(__name__)

LOOK_TIMEOUT = 5.0
"""Seconds one read of the WebUI's settings may take."""
GIVE_TIMEOUT = 120.0
"""Seconds giving the kept settings may take: a different checkpoint means loading a model."""


class OptionsKeeper:
    def __init__(self, webui: WebUI, users_dir: Path, period: float) -> None:
        self._webui = webui
        self._users = users_dir
        self._period = period
        self._slug: str | None = None
        self._kept: Options | None = None
        self._given = asyncio.Event()  # the kept settings were given, refused or not needed
        self._following = False
        self._task: asyncio.Task[None] | None = None
        self._saving: asyncio.Future[None] | None = None
        self._stopped = False
        self._reminder = Every()

    def start(self, slug: str, tasks: asyncio.TaskGroup, resumed: bool) -> None:
        """Give ``slug``'s kept settings to the WebUI, then keep what it has. ``resumed``: this
        sidecar restarted in a pod that was already theirs, so they were given before."""
        if self._stopped or self._task is not None:
            return
        self._slug = slug
        self._task = tasks.create_task(self._keep(slug, resumed))

    async def given(self, within: float) -> bool:
        """Wait until the kept settings were given (or refused); False if still going."""
        try:
            await asyncio.wait_for(self._given.wait(), within)
        except TimeoutError:
            return False
        return True

    def stop(self) -> None:
        """Write nothing more, ever: the pod went to a second person."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()

    async def last_look(self) -> None:
        """On SIGTERM: keep what the WebUI has now, within `LOOK_TIMEOUT`; never raises."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._saving is not None:  # a write the cancel left running: finish it first
            with contextlib.suppress(OSError):
                await self._saving
        try:
            await self.look()
        except Exception as error:  # the drain of pictures must still run
            log.warning("the WebUI's settings were not kept on the way out: %s", describe(error))

    async def look(self) -> None:
        """Read the WebUI's settings; write them if they differ from what is kept."""
        if self._stopped or self._slug is None or not self._following:
            return
        options = await self._webui.options(LOOK_TIMEOUT)
        if options is None:
            if self._reminder.due():
                log.info("the WebUI did not answer with its settings; trying again later")
            return
        if options == self._kept:
            return
        self._saving = asyncio.ensure_future(
            asyncio.to_thread(kept_options.save, self._users, self._slug, options)
        )
        try:
            await asyncio.shield(self._saving)
        except OSError as error:
            if self._reminder.due():
                log.warning("the WebUI's settings could not be kept: %s", describe(error))
            return
        self._kept = options
        log.info("kept the WebUI's settings for %s (%d)", self._slug, len(options))

    async def _keep(self, slug: str, resumed: bool) -> None:
        try:
            kept = await asyncio.to_thread(kept_options.load, self._users, slug)
            if not resumed and kept and not await self._webui.set_options(kept, GIVE_TIMEOUT):
                log.warning("the WebUI refused %s's kept settings; keeping none this time", slug)
                return
        finally:
            self._given.set()
        if kept and not resumed:
            log.info("gave the WebUI %s's kept settings (%d)", slug, len(kept))
        self._kept, self._following = kept, True
        while True:
            await self.look()
            await asyncio.sleep(self._period)
