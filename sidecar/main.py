"""The sidecar: take the outputs link over, then run until SIGTERM or SIGINT: become Ready, stay
healthy, watch the owner."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import aiohttp

from sidecar.errors import describe
from sidecar.health import Health
from sidecar.link import LinkError, OutputsLink
from sidecar.ownership import USER_LABEL, Ownership
from sidecar.pacing import Backoff, Every
from sidecar.sdk import AgonesSDK, GameServer, SDKError
from sidecar.settings import Settings, SettingsError
from sidecar.webui import WebUI

log = logging.getLogger("sidecar")


def main() -> None:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(f"sidecar: bad setting {error}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    link = OutputsLink(settings.outputs_link, settings.unassigned_dir, settings.share_dir)
    try:
        owner = link.adopt()
    except (LinkError, OSError) as error:
        print(f"sidecar: cannot start: {describe(error)}", file=sys.stderr)
        sys.exit(2)
    asyncio.run(run(settings, link, owner))


async def run(settings: Settings, link: OutputsLink, owner: str | None) -> None:
    """``owner``: the slug whose folder the link already pointed at (`OutputsLink.adopt`)."""
    _stop_on_signals(asyncio.current_task())
    log.info(
        "Agones SDK server at %s, WebUI at %s, share at %s, outputs link at %s",
        settings.sdk_url,
        settings.webui_url,
        settings.share_dir,
        settings.outputs_link,
    )
    try:
        async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tasks:
            sdk = AgonesSDK(session, settings.sdk_url)
            webui = WebUI(session, settings.webui_url, settings.ping_timeout)
            health = Health(settings, sdk, webui)
            ownership = Ownership(settings.share_dir, link, sdk, tasks, owner)
            ownership.resume()
            tasks.create_task(health.become_ready())
            tasks.create_task(health.keep_alive())
            tasks.create_task(watch(sdk, settings, ownership))
    except asyncio.CancelledError:
        log.info("stopped")


def _stop_on_signals(task: asyncio.Task[None] | None) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):

        def stop(name: str = signum.name) -> None:
            log.info("%s: stopping", name)
            if task is not None:
                task.cancel()

        loop.add_signal_handler(signum, stop)


async def watch(sdk: AgonesSDK, settings: Settings, ownership: Ownership) -> None:
    """Follow ``/watch/gameserver`` for the pod's whole life, reconnecting after any failure."""
    observer = _Observer(settings, ownership)
    backoff, reminder = Backoff(), Every()
    while True:
        try:
            async for gameserver in sdk.watch():
                backoff.reset()
                reminder = Every()
                observer.observe(gameserver)
            log.warning("the GameServer watch ended; reconnecting")
        except SDKError as error:
            if reminder.due():
                log.warning("watching the GameServer failed (%s); retrying", describe(error))
        await backoff.wait()


class _Observer:
    """Logs state changes and, once, a health period too long for Agones; passes the rest on."""

    def __init__(self, settings: Settings, ownership: Ownership) -> None:
        self._period = settings.health_period
        self._ownership = ownership
        self._state: str | None = None

    def observe(self, gameserver: GameServer) -> None:
        label = gameserver.labels.get(USER_LABEL)
        log.debug("GameServer update: state %s, %s=%.80r", gameserver.state, USER_LABEL, label)
        if self._state is None:
            self._check_health_period(gameserver.health_period)
        if gameserver.state != self._state:
            log.info("GameServer state: %s", gameserver.state or "(not reported)")
            self._state = gameserver.state
        self._ownership.observe(gameserver)

    def _check_health_period(self, agones_period: int | None) -> None:
        if agones_period is not None and self._period >= agones_period:
            log.warning(
                "HEALTH_PERIOD_SECONDS=%g is not below the GameServer's "
                "spec.health.periodSeconds=%d: Agones may count missed pings",
                self._period,
                agones_period,
            )
