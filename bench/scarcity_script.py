"""The scarcity scenario's people: when each arrives and what they do, drawn from a seed.

Time is compressed: 15 minutes of the product's idle timeout become 20 s here (a factor of
45), and everything people do is scaled alike. Arrivals are a Poisson process whose rate falls
linearly to zero at the end of the arrival window (conditioned on the number of people, the
arrival times are independent draws from that rate), so demand exceeds the GPUs early and for
most of the run. Each person works in bursts (quick requests, generations that keep their
WebUI busy, some longer than the pressure timeout) with pauses between them, for 20 to 90 s,
then gives the WebUI back or just walks away. The same seed gives the same script.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

SCALE = 20.0 / 900.0  # 15 min idle timeout → 20 s


@dataclass(frozen=True)
class Step:
    """One request: `work` seconds of generation (0: a quick request), then `gap` seconds."""

    work: float
    gap: float


@dataclass(frozen=True)
class Burst:
    pause: float  # seconds without any request before it (0 for the first)
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Person:
    email: str
    arrival: float  # seconds after the start of the run
    bursts: tuple[Burst, ...]
    releases: bool  # gives the WebUI back at the end; otherwise walks away

    @property
    def planned_seconds(self) -> float:
        """How long the session lasts if the WebUI is never taken away."""
        return sum(b.pause + sum(s.work + s.gap for s in b.steps) for b in self.bursts)


@dataclass(frozen=True)
class Shape:
    """What the script is drawn from (compressed seconds)."""

    people: int = 30
    arrival_window: float = 120.0
    session_min: float = 20.0
    session_max: float = 90.0
    long_pause_share: float = 0.2  # pauses longer than the pressure timeout (a longer look)
    pause: tuple[float, float] = (1.0, 5.0)
    long_pause: tuple[float, float] = (7.0, 14.0)
    steps: tuple[int, int] = (2, 5)
    generation_share: float = 0.5  # of the requests in a burst
    generation: tuple[float, float] = (1.0, 5.0)
    long_generation_share: float = 0.2  # of the generations: longer than the pressure timeout
    long_generation: tuple[float, float] = (7.0, 12.0)
    gap: tuple[float, float] = (0.3, 1.2)
    release_share: float = 0.4  # the others walk away


def script(seed: int, shape: Shape = Shape()) -> tuple[Person, ...]:
    """Everyone's arrival and session, in order of arrival; the same for the same seed."""
    rng = random.Random(seed)
    arrivals = sorted(_arrival(rng, shape.arrival_window) for _ in range(shape.people))
    return tuple(
        Person(
            email=f"person{number:02d}@example.com",
            arrival=round(arrival, 2),
            bursts=_bursts(rng, shape, rng.uniform(shape.session_min, shape.session_max)),
            releases=rng.random() < shape.release_share,
        )
        for number, arrival in enumerate(arrivals, start=1)
    )


def _arrival(rng: random.Random, window: float) -> float:
    """A draw from the density 2(1 - t/window)/window on [0, window] (inverse CDF)."""
    return window * (1.0 - math.sqrt(1.0 - rng.random()))


def _bursts(rng: random.Random, shape: Shape, length: float) -> tuple[Burst, ...]:
    """Bursts while they bring the session closer to `length` seconds (at least one)."""
    bursts: list[Burst] = []
    planned = 0.0
    while True:
        pause = _pause(rng, shape) if bursts else 0.0
        steps = tuple(_step(rng, shape) for _ in range(rng.randint(*shape.steps)))
        burst = Burst(round(pause, 2), steps)
        took = burst.pause + sum(s.work + s.gap for s in steps)
        if bursts and planned + took / 2 > length:  # it would overshoot more than fall short
            return tuple(bursts)
        bursts.append(burst)
        planned += took


def _pause(rng: random.Random, shape: Shape) -> float:
    low, high = shape.long_pause if rng.random() < shape.long_pause_share else shape.pause
    return rng.uniform(low, high)


def _step(rng: random.Random, shape: Shape) -> Step:
    work = 0.0
    if rng.random() < shape.generation_share:
        long = rng.random() < shape.long_generation_share
        work = rng.uniform(*(shape.long_generation if long else shape.generation))
    return Step(round(work, 2), round(rng.uniform(*shape.gap), 2))
