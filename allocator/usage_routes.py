"""Admin API for what happened and how much: a session's events and usage per person per day."""

# No `from __future__ import annotations`: FastAPI reads the local Admin alias at runtime.
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Query
from starlette.exceptions import HTTPException

from allocator.runtime import Runtime
from allocator.types import Person
from allocator.usage_report import (
    EventOut,
    ReportError,
    UsageReport,
    event_out,
    parse_since,
    usage_report,
)

PREFIX = "/_allocator"


def add_usage_routes(
    app: FastAPI, runtime: Runtime, admin: Callable[..., Awaitable[Person]]
) -> None:
    """`admin`: the dependency that lets only SDA_ADMINS through."""
    allocations = runtime.core.allocations
    Admin = Annotated[Person, Depends(admin)]

    @app.get(
        f"{PREFIX}/api/sessions/{{email}}/events", response_model=list[EventOut], tags=["admin"]
    )
    async def session_events(email: str, _: Admin) -> list[EventOut]:
        """That person's recent events, newest first: allocated, kept, reclaimed and why, …"""
        events = await allocations.events.recent(email.strip().lower())
        return [event_out(event) for event in events]

    @app.get(f"{PREFIX}/api/usage", response_model=UsageReport, tags=["admin"])
    async def usage(
        _: Admin,
        since: str | None = Query(None, description="first UTC day, YYYY-MM-DD; default a week"),
    ) -> UsageReport:
        """Allocated and busy GPU-seconds per person per UTC day, from `since` to today."""
        return await report(runtime, since)


async def report(runtime: Runtime, since: str | None) -> UsageReport:
    now = time.time()
    try:
        first = parse_since(since, now, runtime.settings.usage_days)
    except ReportError as exc:
        raise HTTPException(422, str(exc)) from None
    return await usage_report(runtime.core.allocations.usage, first, now)
