"""A person's session as `/_allocator/status`, the session page and the admin API report it."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel

from allocator.ledger import resets_at
from allocator.runtime import Runtime
from allocator.store import SessionView
from allocator.types import Person, Progress, State

IN_FLIGHT = (State.ALLOCATING, State.STARTING)
ReclaimReason = Literal["idle", "pressure", "max_age", "over_quota"]


class SessionStatus(BaseModel):
    state: State
    email: str
    server: str | None = None
    idle_seconds: int | None = None
    reclaim_in_seconds: int | None = None
    reclaim_reason: ReclaimReason | None = None  # pressure: people wait, so sooner than idle
    busy: bool = False
    message: str | None = None
    allocated_at: float | None = None
    position: int | None = None  # queued: 1 = next
    queue_length: int | None = None
    eta_seconds: int | None = None  # queued: null when there is no basis for an estimate
    starting_servers: int | None = None  # queued: new WebUIs on their way (a Fleet scaling up)
    waited_seconds: int | None = None  # queued: since they joined
    resets_at: float | None = None  # over_quota: when a new WebUI is possible (UTC midnight)


async def status_of(runtime: Runtime, person: Person) -> SessionStatus:
    """Asking counts as still waiting, for a queued person."""
    now = time.time()
    core = runtime.core
    view = await core.store.view(person.email, now)
    if view is not None:
        used_up = await core.allocations.quota.used_up(person.email, now)
        return describe(runtime, view, now, await core.queue.unserved(), used_up)
    refusal = await core.allocations.quota.refusal(person.email, now)
    if refusal is not None:
        status = from_progress(person.email, refusal, now)
        status.resets_at = resets_at(now)
        return status
    progress = await core.store.get_progress(person.email)
    locked = await core.store.lock_held(person.email)
    if progress is not None and progress.state in IN_FLIGHT and locked:
        return from_progress(person.email, progress, now)  # their turn: it is under way
    queued = await core.allocations.queued(person.email)
    if queued.state is State.QUEUED:
        return from_progress(person.email, queued, now)
    if progress is not None:
        return from_progress(person.email, progress, now)
    if locked:
        return SessionStatus(state=State.ALLOCATING, email=person.email)
    return SessionStatus(state=State.NONE, email=person.email)


def from_progress(email: str, progress: Progress, now: float) -> SessionStatus:
    status = SessionStatus(state=progress.state, email=email, message=progress.message)
    spot = progress.spot
    if spot is not None:
        status.position, status.queue_length = spot.position, spot.length
        status.eta_seconds, status.starting_servers = spot.eta_seconds, spot.starting
        status.waited_seconds = int(max(0.0, now - progress.since))
    return status


def describe(
    runtime: Runtime, view: SessionView, now: float, queued: int, used_up: bool = False
) -> SessionStatus:
    """A stored session, with this process's not-yet-written activity taken into account;
    `queued`: how many wait for a GPU (the pressure timeout applies while anyone does);
    `used_up`: the person is past today's quota (it goes once quiet for a short while)."""
    email = view.session.email
    tracker = runtime.tracker
    last = max(view.last_activity, tracker.last_seen(email) or 0.0)
    busy = view.busy or tracker.is_busy(email)
    idle = 0.0 if busy else max(0.0, now - last)
    settings = runtime.settings
    after = settings.reclaim_after(queued > 0)
    reason: ReclaimReason = "pressure" if after < settings.idle_timeout else "idle"
    reclaim_in = after - idle
    if settings.max_session_age > 0:  # given back at that age even when in use
        age_left = view.session.allocated_at + settings.max_session_age - now
        if age_left < reclaim_in:
            reclaim_in, reason = age_left, "max_age"
    if used_up and settings.quota_quiet - idle < reclaim_in:
        reclaim_in, reason = settings.quota_quiet - idle, "over_quota"
    return SessionStatus(
        state=State.READY,
        email=email,
        server=view.session.server,
        idle_seconds=int(idle),
        reclaim_in_seconds=int(max(0.0, reclaim_in)),
        reclaim_reason=reason,
        busy=busy,
        allocated_at=view.session.allocated_at,
        queue_length=queued,
    )
