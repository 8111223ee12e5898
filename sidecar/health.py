"""Telling Agones that the GameServer is Ready once the WebUI answers, then that it is alive.

Agones starts counting missed health pings at the pod's first liveness probe, not at Ready
(``pkg/sdkserver/sdkserver.go``: ``/gshealthz`` calls ``ensureHealthChecksRunning``), and a WebUI
loads its model for minutes before it answers. So while the WebUI starts, up to
``WEBUI_START_TIMEOUT_SECONDS``, the sidecar pings Agones anyway; from its first answer on, only
in periods in which the WebUI answered. When it stops answering, the pings stop and Agones marks
the GameServer Unhealthy after ``spec.health.failureThreshold`` periods; the Fleet replaces it.

``POST /ready`` also returns an *Allocated* GameServer to the pool (Agones' FAQ, "How can I return
an Allocated GameServer to the Ready state?"), so a sidecar whose container restarted in a pod that
is already Ready or given to a person asks for Ready only if the GameServer is not that far yet.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sidecar.errors import describe
from sidecar.pacing import Every, retry_forever
from sidecar.sdk import AgonesSDK, SDKError
from sidecar.settings import Settings
from sidecar.webui import WebUI

log = logging.getLogger(__name__)

START_POLL_SECONDS = 1.0
"""How often a starting WebUI is asked whether it answers yet."""
PAST_READY = frozenset({"Ready", "Reserved", "Allocated", "Shutdown", "Unhealthy", "Error"})
"""GameServer states in which ``POST /ready`` must not be sent again."""


class Health:
    def __init__(self, settings: Settings, sdk: AgonesSDK, webui: WebUI) -> None:
        self._settings = settings
        self._sdk = sdk
        self._webui = webui
        self._started_at = time.monotonic()
        self._webui_answered = asyncio.Event()
        self._webui_down_since: float | None = None
        self._webui_down_log = Every()
        self._agones_was_up = True
        self._gave_up = False

    async def become_ready(self) -> None:
        """Wait for the WebUI's first answer, then ``POST /ready`` until Agones takes it, unless
        the GameServer is past that (this sidecar restarted)."""
        poll = min(START_POLL_SECONDS, self._settings.health_period)
        progress = Every()
        while not await self._webui.answers():
            if progress.due():
                log.info(
                    "waiting for the WebUI at %s to answer /internal/ping (%.0f s so far)",
                    self._settings.webui_url,
                    self._age(),
                )
            await asyncio.sleep(poll)
        self._webui_answered.set()
        log.info("the WebUI answered after %.0f s", self._age())
        gameserver = await retry_forever(
            self._sdk.gameserver, "GET /gameserver", retry_on=(SDKError,)
        )
        if gameserver.state in PAST_READY:
            log.info("the GameServer is %s already; not asking for Ready again", gameserver.state)
            return
        log.info("telling Agones the GameServer is Ready")
        await retry_forever(self._sdk.ready, "POST /ready", retry_on=(SDKError,))
        log.info("Agones was told the GameServer is Ready")

    async def keep_alive(self) -> None:
        """Once a period, one health ping to Agones if the WebUI is starting or answers."""
        limit = self._settings.start_timeout
        log.info(
            "health pings every %g s while the WebUI starts (%s), then while it answers",
            self._settings.health_period,
            f"up to {limit:g} s" if limit else "no limit",
        )
        next_tick = time.monotonic()
        while True:
            if await self._alive():
                await self._ping_agones()
            next_tick += self._settings.health_period
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    async def _alive(self) -> bool:
        if not self._webui_answered.is_set():
            return self._may_still_start()
        answers = await self._webui.answers()
        self._report_webui(answers)
        return answers

    def _may_still_start(self) -> bool:
        limit = self._settings.start_timeout
        if not limit or self._age() < limit:
            return True
        if not self._gave_up:
            self._gave_up = True
            log.error(
                "the WebUI has not answered in %g s; no more health pings, so Agones marks the "
                "GameServer Unhealthy and the Fleet replaces it",
                limit,
            )
        return False

    def _report_webui(self, answers: bool) -> None:
        if answers:
            if self._webui_down_since is not None:
                log.warning("the WebUI answers again; health pings resume")
            self._webui_down_since = None
            return
        if self._webui_down_since is None:
            self._webui_down_since, self._webui_down_log = time.monotonic(), Every()
        if self._webui_down_log.due():
            log.error(
                "the WebUI at %s has not answered /internal/ping within %g s for %.0f s; no "
                "health pings, so Agones marks the GameServer Unhealthy if this lasts",
                self._settings.webui_url,
                self._settings.ping_timeout,
                time.monotonic() - self._webui_down_since,
            )

    async def _ping_agones(self) -> None:
        try:
            await self._sdk.health()
        except SDKError as error:
            if self._agones_was_up:
                log.warning("health ping failed (%s); trying again next period", describe(error))
            self._agones_was_up = False
        else:
            if not self._agones_was_up:
                log.info("health pings reach Agones again")
            self._agones_was_up = True

    def _age(self) -> float:
        return time.monotonic() - self._started_at
