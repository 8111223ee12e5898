"""Cruiser passes on a timer: `sd-allocator cruise` without --once, and inside `serve`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Backend
from cruiser.reaper import CruiseOptions, cruise_once
from cruiser.summary import Summary

log = logging.getLogger(__name__)

BeforePass = Callable[[], Awaitable[None]]
AfterPass = Callable[[Summary], None]


async def cruise_forever(
    store: SessionStore,
    backend: Backend,
    options: CruiseOptions,
    interval: float,
    before_pass: BeforePass | None = None,
    after_pass: AfterPass | None = None,
) -> None:
    """A pass every `interval` seconds until cancelled; one failing pass never ends the loop."""
    while True:
        try:
            if before_pass is not None:
                await before_pass()
            summary = await cruise_once(store, backend, options)
            if after_pass is not None:
                after_pass(summary)
        except StoreUnavailable as exc:
            log.warning("cruise pass skipped: store unavailable: %s", exc)
        except Exception:
            log.exception("cruise pass failed unexpectedly")
        await asyncio.sleep(interval)
