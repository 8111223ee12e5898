"""Waiting for something slow (an instance being created, a load balancer appearing), with a
line every 30 s so nobody wonders whether the deploy hangs."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from deploy.clients import Operation
from deploy.context import Context
from deploy.types import StepFailed, minutes

T = TypeVar("T")
PROGRESS_EVERY = 30.0


def poll(
    ctx: Context,
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 10.0,
) -> T | None:
    """Call `probe` until it returns something; None once `timeout` seconds have passed."""
    started = said = ctx.clock()
    while True:
        found = probe()
        if found is not None:
            return found
        now = ctx.clock()
        if now - started >= timeout:
            return None
        if now - said >= PROGRESS_EVERY:
            ctx.say(f"… waiting for {what} ({minutes(now - started)})")
            said = now
        ctx.sleep(interval)


def wait_until(
    ctx: Context,
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 10.0,
) -> T:
    found = poll(ctx, what, probe, timeout=timeout, interval=interval)
    if found is None:
        raise StepFailed(f"gave up waiting for {what} after {minutes(timeout)}")
    return found


def wait_operation(ctx: Context, operation: Operation, what: str, *, timeout: float) -> Any:
    """The operation's result, asking again every 30 s (and saying so) until `timeout`."""
    started = ctx.clock()
    while True:
        try:
            return operation.result(timeout=PROGRESS_EVERY)
        except concurrent.futures.TimeoutError:
            waited = ctx.clock() - started
            if waited >= timeout:
                raise StepFailed(f"gave up waiting for {what} after {minutes(waited)}") from None
            ctx.say(f"… waiting for {what} ({minutes(waited)})")
