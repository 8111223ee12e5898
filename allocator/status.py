"""A person's session as `/_allocator/status`, the session page and the admin API report it."""

from __future__ import annotations

import time

from pydantic import BaseModel

from allocator.runtime import Runtime
from allocator.store import SessionView
from allocator.types import Person, State


class SessionStatus(BaseModel):
    state: State
    email: str
    server: str | None = None
    idle_seconds: int | None = None
    reclaim_in_seconds: int | None = None
    busy: bool = False
    message: str | None = None
    allocated_at: float | None = None


async def status_of(runtime: Runtime, person: Person) -> SessionStatus:
    now = time.time()
    store = runtime.core.store
    view = await store.view(person.email, now)
    if view is not None:
        return describe(runtime, view, now)
    progress = await store.get_progress(person.email)
    if progress is not None:
        return SessionStatus(state=progress.state, email=person.email, message=progress.message)
    if await store.lock_held(person.email):
        return SessionStatus(state=State.ALLOCATING, email=person.email)
    return SessionStatus(state=State.NONE, email=person.email)


def describe(runtime: Runtime, view: SessionView, now: float) -> SessionStatus:
    """A stored session, with this process's not-yet-written activity taken into account."""
    email = view.session.email
    tracker = runtime.tracker
    last = max(view.last_activity, tracker.last_seen(email) or 0.0)
    busy = view.busy or tracker.is_busy(email)
    idle = 0.0 if busy else max(0.0, now - last)
    reclaim_in = runtime.settings.idle_timeout - idle
    if runtime.settings.max_session_age > 0:  # given back at that age even when in use
        age_left = view.session.allocated_at + runtime.settings.max_session_age - now
        reclaim_in = min(reclaim_in, age_left)
    return SessionStatus(
        state=State.READY,
        email=email,
        server=view.session.server,
        idle_seconds=int(idle),
        reclaim_in_seconds=int(max(0.0, reclaim_in)),
        busy=busy,
        allocated_at=view.session.allocated_at,
    )
