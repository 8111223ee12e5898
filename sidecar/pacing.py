"""How often: delays between retries, and how often a repeated log line may be written."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sidecar.errors import describe

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY = 0.1
MAX_DELAY = 2.0
"""Everything the sidecar retries is on localhost, so retrying often costs nothing, and a late
SDK server or WebUI is noticed within two seconds."""
REMINDER_SECONDS = 30.0
"""A condition that lasts (a WebUI loading its model, a missing SDK server) is logged when it
starts and then at most this often."""


class Backoff:
    """Doubling delays with jitter, capped."""

    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2.0**self.failures)
        self.failures += 1
        return delay * random.uniform(0.75, 1.0)

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        self.failures = 0


class Every:
    """`due` is true the first time, then once ``seconds`` have passed since it last was."""

    def __init__(self, seconds: float = REMINDER_SECONDS) -> None:
        self.seconds = seconds
        self._last: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.seconds:
            return False
        self._last = now
        return True


async def retry_forever(
    call: Callable[[], Awaitable[T]],
    what: str,
    retry_on: tuple[type[Exception], ...],
) -> T:
    """Call until it succeeds, waiting with `Backoff` after each failure of the kinds given."""
    backoff, reminder = Backoff(), Every()
    while True:
        try:
            return await call()
        except retry_on as error:
            if reminder.due():
                log.warning("%s failed (%s); retrying", what, describe(error))
            await backoff.wait()
