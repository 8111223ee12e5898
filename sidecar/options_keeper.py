"""Keeping the person's WebUI settings (``users/<slug>/webui/options.json``) while the pod
is theirs.

When the pod is given to someone, their kept settings are given to the WebUI (``POST
/sdapi/v1/options``) before the allocator is told the pod is ready, so the WebUI starts as they
left their last one. From then on the WebUI's settings are read every period, and once more on
SIGTERM, and written to the person's folder whenever they differ from what is kept. Nothing is
written before the kept settings were given to the WebUI: a fresh WebUI's defaults must never
replace them. A sidecar restarted in the same pod gives them again (a change made in the last
period before it stopped is lost; the kept settings never are).

Only settings this WebUI knows are given (AUTOMATIC1111 refuses a whole request with a key it
has no label for, e.g. one of an extension no longer installed); if it still refuses, they are
given again without the model choices (a checkpoint taken off the share fails the request). A
WebUI that refuses even then, or takes longer than `GIVE_TIMEOUT`, gets nothing kept for the
pod's life, and the person's file stays as it was (one log line).
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
LAST_LOOK_SECONDS = 3.0
"""Seconds the look on SIGTERM may take in all: the pictures' drain comes after it."""
GIVE_TIMEOUT = 120.0
"""Seconds giving the kept settings may take: a different checkpoint means loading a model."""
MODEL_CHOICES = ("sd_model_checkpoint", "sd_vae", "sd_checkpoint_hash")
"""Settings naming a file on the share that may be gone since they were kept."""


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

    def start(self, slug: str, tasks: asyncio.TaskGroup) -> None:
        """Give ``slug``'s kept settings to the WebUI, then keep what it has."""
        if self._stopped or self._task is not None:
            return
        self._slug = slug
        self._task = tasks.create_task(self._keep(slug))

    async def given(self, within: float) -> bool:
        """Wait until the kept settings were given (or refused); False if still going."""
        if self._given.is_set():
            return True
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
        """On SIGTERM: keep what the WebUI has now, within `LAST_LOOK_SECONDS`; never raises."""
        try:
            async with asyncio.timeout(LAST_LOOK_SECONDS):
                if self._task is not None:
                    self._task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._task
                if self._saving is not None:  # a write the cancel left running: finish it first
                    with contextlib.suppress(OSError):
                        await self._saving
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

    async def _keep(self, slug: str) -> None:
        try:
            try:
                given = await self._give(slug)
            finally:
                self._given.set()
            if not given:
                return
            self._following = True
            while True:
                await self.look()
                await asyncio.sleep(self._period)
        except Exception:  # never the sidecar's end: health pings and delivery go on
            log.exception("keeping %s's WebUI settings failed; keeping none from now on", slug)

    async def _give(self, slug: str) -> bool:
        """Give the kept settings the WebUI does not have yet; False if it would not take them."""
        kept = self._kept = await asyncio.to_thread(kept_options.load, self._users, slug)
        if not kept:
            return True
        current = await self._webui.options(LOOK_TIMEOUT)
        change = kept
        if current is not None:  # else the WebUI decides what it takes
            change = {k: v for k, v in kept.items() if k in current and current[k] != v}
        if not change:
            return True
        for attempt in (change, _without_model_choices(change)):
            if attempt and await self._webui.set_options(attempt, GIVE_TIMEOUT):
                log.info("gave the WebUI %d of %s's kept settings", len(attempt), slug)
                return True
        log.warning("the WebUI refused %s's kept settings; keeping none this time", slug)
        return False


def _without_model_choices(options: Options) -> Options:
    return {key: value for key, value in options.items() if key not in MODEL_CHOICES}
