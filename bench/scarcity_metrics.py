"""What one policy did with the scarcity script, and the figures reported for it.

The real run and the simulations both produce an `Outcome`; `figures` turns any of them into
the same numbers, so the policies are compared by one piece of code. Times are seconds after
the start of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Heads of the queue that one dispatcher turn serves start their WebUIs within this much of
# each other; a later start is a later turn.
SAME_TURN_SECONDS = 1.0


@dataclass
class Wait:
    """One time a person had no WebUI and waited for one."""

    email: str
    asked_at: float  # their first request of this wait was sent
    first: bool  # True: on arrival; False: coming back after their WebUI was reclaimed
    seen_waiting_at: float | None = None  # an answer told them to wait (queued, all busy)
    started_at: float | None = None  # a WebUI started for them (a GPU is paid from here)
    ready_at: float | None = None  # their WebUI answered them


@dataclass(frozen=True)
class Hold:
    """One WebUI running, one GPU paid."""

    email: str
    start: float
    end: float | None  # None: still running when the run ended


@dataclass
class Outcome:
    policy: str
    run_seconds: float
    waits: list[Wait] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    left_at: dict[str, float] = field(default_factory=dict)  # session over: gave back or left
    busy_reclaimed: int = 0  # work cut off, or the WebUI gone in the middle of a burst
    reclaimed_in_pause: int = 0  # WebUI taken while idle between bursts (they waited again)


@dataclass(frozen=True)
class Figures:
    gpu_seconds: float
    gpu_seconds_after_leaving: float  # WebUIs kept running after their person had gone
    most_at_once: int  # WebUIs running at the same time, at most
    arrived: int
    served: int  # got their WebUI after arriving, within the run
    still_waiting: int  # arrived and never got one within the run
    longest_unserved: float | None  # of those, the longest wait so far
    wait_p50: float | None
    wait_p95: float | None
    wait_max: float | None
    out_of_order: int
    busy_reclaimed: int
    reclaimed_in_pause: int
    gpu_seconds_per_served: float | None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q % of all at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def gpu_seconds(holds: list[Hold], until: float) -> float:
    return sum(max(0.0, min(h.end if h.end is not None else until, until) - h.start) for h in holds)


def after_leaving(holds: list[Hold], left_at: dict[str, float], until: float) -> float:
    """GPU-seconds paid for WebUIs whose person had finished (walked away or released)."""
    total = 0.0
    for hold in holds:
        left = left_at.get(hold.email)
        if left is None:
            continue
        end = min(hold.end if hold.end is not None else until, until)
        total += max(0.0, end - max(hold.start, left))
    return total


def most_at_once(holds: list[Hold], until: float) -> int:
    changes = sorted(
        [(h.start, 1) for h in holds] + [(h.end if h.end is not None else until, -1) for h in holds]
    )  # at equal times the end (-1) comes first: a GPU handed on is not two
    running = peak = 0
    for _, change in changes:
        running += change
        peak = max(peak, running)
    return peak


def out_of_order(waits: list[Wait], same_turn: float = SAME_TURN_SECONDS) -> list[Wait]:
    """The waits that got a WebUI while someone ahead of them still waited.

    Someone is ahead of a person when an answer had already told them to wait before that
    person's first request was even sent (so they certainly came first, whatever happened in
    between). They still wait when their WebUI started more than `same_turn` later than the
    person's, or not at all within the run (nobody in the script gives up waiting)."""
    served = [w for w in waits if w.started_at is not None]
    found = []
    for wait in served:
        assert wait.started_at is not None
        cutoff = wait.started_at + same_turn
        for other in waits:
            ahead = other.seen_waiting_at is not None and other.seen_waiting_at < wait.asked_at
            later = other.started_at is None or other.started_at > cutoff
            if other.email != wait.email and ahead and later:
                found.append(wait)
                break
    return found


def figures(outcome: Outcome) -> Figures:
    until = outcome.run_seconds
    arrivals = [w for w in outcome.waits if w.first]
    served = [w for w in arrivals if w.ready_at is not None]
    unserved = [until - w.asked_at for w in arrivals if w.ready_at is None]
    waited = [w.ready_at - w.asked_at for w in served if w.ready_at is not None]
    paid = gpu_seconds(outcome.holds, until)
    return Figures(
        gpu_seconds=round(paid, 1),
        gpu_seconds_after_leaving=round(after_leaving(outcome.holds, outcome.left_at, until), 1),
        most_at_once=most_at_once(outcome.holds, until),
        arrived=len(arrivals),
        served=len(served),
        still_waiting=len(unserved),
        longest_unserved=_rounded(max(unserved, default=None)),
        wait_p50=_rounded(percentile(waited, 50)),
        wait_p95=_rounded(percentile(waited, 95)),
        wait_max=_rounded(max(waited, default=None)),
        out_of_order=len(out_of_order(outcome.waits)),
        busy_reclaimed=outcome.busy_reclaimed,
        reclaimed_in_pause=outcome.reclaimed_in_pause,
        gpu_seconds_per_served=round(paid / len(served), 1) if served else None,
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
