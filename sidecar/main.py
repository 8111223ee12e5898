"""The sidecar: read the journal, then run until SIGTERM or SIGINT — become Ready, stay healthy,
watch the owner, deliver files, keep the WebUI's settings, delete the pictures people asked to —
and on the signal keep the settings once more and deliver what is still pending, then exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

import aiohttp

from sidecar.deletions import Deletions
from sidecar.delivery import Delivery, Limits
from sidecar.errors import describe
from sidecar.health import Health
from sidecar.journal import Journal
from sidecar.options_keeper import OptionsKeeper
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
    try:
        journal = Journal(settings.state_dir).load()
    except OSError as error:
        print(f"sidecar: cannot start: STATE_DIR: {describe(error)}", file=sys.stderr)
        sys.exit(2)
    asyncio.run(run(settings, journal))


async def run(settings: Settings, journal: Journal) -> None:
    stop = _stop_on_signals()
    log.info(
        "Agones SDK server at %s, WebUI at %s, delivering from %s to %s/users",
        settings.sdk_url,
        settings.webui_url,
        settings.outputs_dir,
        settings.share_dir,
    )
    limits = Limits(settings.max_file_bytes, settings.max_files, settings.max_session_bytes)
    delivery = Delivery(settings.outputs_dir, journal, limits)
    try:
        async with aiohttp.ClientSession() as session:
            webui = WebUI(session, settings.webui_url, settings.ping_timeout)
            keeper = OptionsKeeper(webui, settings.share_dir / "users", settings.options_period)
            serving = asyncio.create_task(serve(settings, session, journal, delivery, keeper))
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                for task in (serving, stopping):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            finally:
                await keeper.last_look()
    finally:  # also after a failure: what the WebUI saved still reaches the person
        await delivery.drain(settings.poll_seconds, settings.drain_timeout)
        log.info("stopped")


async def serve(
    settings: Settings,
    session: aiohttp.ClientSession,
    journal: Journal,
    delivery: Delivery,
    keeper: OptionsKeeper,
) -> None:
    async with asyncio.TaskGroup() as tasks:
        sdk = AgonesSDK(session, settings.sdk_url)
        webui = WebUI(session, settings.webui_url, settings.ping_timeout)
        health = Health(settings, sdk, webui)
        ownership = Ownership(settings.share_dir, journal, delivery, keeper, sdk, tasks)
        ownership.resume()
        tasks.create_task(health.become_ready())
        tasks.create_task(health.keep_alive())
        tasks.create_task(watch(sdk, settings, ownership))
        tasks.create_task(delivery.run(settings.poll_seconds))
        deletions = Deletions(settings.share_dir / "users", settings.share_dir / "deletions")
        tasks.create_task(deletions.run(settings.deletions_period))


def _stop_on_signals() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):

        def on_signal(name: str = signum.name) -> None:
            log.info("%s: delivering what is pending, then stopping", name)
            stop.set()

        loop.add_signal_handler(signum, on_signal)
    return stop


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
