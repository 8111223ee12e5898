"""A discrete-event simulation of the scarcity script under a reclaim-and-hand-out policy.

The predecessor cannot run here (it is another product), so its policy is simulated with the
same people doing the same things: no queue (the "all GPUs busy" page refreshes itself, and
whoever's refresh lands first after a GPU frees gets it), one fixed idle timeout, a cruiser on
a fixed period, never a busy session reclaimed. Ours can be simulated the same way (a queue
served in order, the pressure timeout while anyone waits), which shows how close the simulator
comes to the real run. People behave as in the real run: on arrival they ask for a page; while
they wait they ask again every `ask_every` seconds; once their WebUI answers they work through
their bursts; a WebUI taken while they pause means waiting again, then redoing that burst.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from bench.scarcity_metrics import Hold, Outcome, Wait
from bench.scarcity_script import SCALE, Person

Action = Callable[[], None]


@dataclass(frozen=True)
class Policy:
    name: str
    fifo: bool  # a queue served in order; otherwise a refresh race
    ask_every: float  # a waiting page asks again this often (status poll, or refresh)
    idle_timeout: float
    pressure_timeout: float  # while anyone waits; 0: none
    reclaim_every: float  # idle sessions are looked for this often
    startup: float  # a GPU taken → the WebUI answers


def predecessor(startup: float) -> Policy:
    """Refresh every 10 s, idle timeout 15 min, cruiser every 5 min: all scaled alike."""
    return Policy("predecessor", False, 10 * SCALE, 900 * SCALE, 0.0, 300 * SCALE, startup)


@dataclass
class _Running:
    start: float
    ready: float
    last_activity: float
    busy: bool = False


class _Simulation:
    def __init__(self, people: tuple[Person, ...], policy: Policy, gpus: int, until: float):
        self.policy, self.gpus, self.until = policy, gpus, until
        self.people = {p.email: p for p in people}
        self.outcome = Outcome(policy.name, until)
        self.running: dict[str, _Running] = {}
        self.waiting: dict[str, Wait] = {}  # in the order they began to wait
        self.resume: dict[str, int] = {}  # the burst to do once their WebUI answers
        self.now = 0.0
        self._events: list[tuple[float, int, Action]] = []
        self._order = itertools.count()

    def run(self) -> Outcome:
        for person in self.people.values():
            self.at(person.arrival, self.arrival_of(person))
        self.at(self.policy.reclaim_every, self.reclaim)
        while self._events and self._events[0][0] <= self.until:
            self.now, _, action = heapq.heappop(self._events)
            action()
        for email, running in self.running.items():
            self.outcome.holds.append(Hold(email, running.start, None))
        return self.outcome

    def at(self, when: float, action: Action) -> None:
        heapq.heappush(self._events, (when, next(self._order), action))

    # -- waiting for a WebUI --------------------------------------------------------------

    def arrival_of(self, person: Person) -> Action:
        return lambda: self.arrive(person)

    def arrive(self, person: Person) -> None:
        self.resume[person.email] = 0
        self.begin_wait(person, first=True)

    def begin_wait(self, person: Person, first: bool) -> None:
        wait = Wait(person.email, self.now, first)
        self.outcome.waits.append(wait)
        self.ask(person, wait)

    def ask(self, person: Person, wait: Wait) -> None:
        """A page load (or, queued, a status poll followed by one when it is their turn)."""
        email = person.email
        running = self.running.get(email)
        if running is None and self.free() > 0 and (not self.policy.fifo or not self.waiting):
            running = self.allocate(wait)
        if running is not None:
            self.waiting.pop(email, None)
            self.at(max(self.now, running.ready), lambda: self.answered(person, wait))
            return
        if wait.seen_waiting_at is None:
            wait.seen_waiting_at = self.now
        self.waiting.setdefault(email, wait)
        self.at(self.now + self.policy.ask_every, lambda: self.ask(person, wait))

    def allocate(self, wait: Wait) -> _Running:
        wait.started_at = self.now
        running = _Running(self.now, self.now + self.policy.startup, self.now)
        self.running[wait.email] = running
        return running

    def free(self) -> int:
        return self.gpus - len(self.running)

    def dispatch(self) -> None:
        """A queue hands freed GPUs to its heads at once (a refresh race waits for a refresh)."""
        if not self.policy.fifo:
            return
        for email, wait in list(self.waiting.items()):
            if self.free() <= 0:
                return
            if email not in self.running:
                self.allocate(wait)
                del self.waiting[email]

    def answered(self, person: Person, wait: Wait) -> None:
        if wait.ready_at is None:
            wait.ready_at = self.now
            self.burst(person, self.resume[person.email])

    # -- working --------------------------------------------------------------------------

    def after_pause(self, person: Person, index: int) -> None:
        if index == len(person.bursts):
            self.leave(person)
            return
        pause = person.bursts[index].pause
        self.at(self.now + pause, lambda: self.burst(person, index))

    def burst(self, person: Person, index: int) -> None:
        if person.email not in self.running:  # taken while they paused
            self.outcome.reclaimed_in_pause += 1
            self.resume[person.email] = index
            self.begin_wait(person, first=False)
            return
        self.step(person, index, 0)

    def step(self, person: Person, index: int, number: int) -> None:
        steps = person.bursts[index].steps
        if number == len(steps):
            self.after_pause(person, index + 1)
            return
        running = self.running.get(person.email)
        if running is None:  # taken in the middle of a burst: never allowed
            self.outcome.busy_reclaimed += 1
            self.resume[person.email] = index
            self.begin_wait(person, first=False)
            return
        step = steps[number]
        running.last_activity, running.busy = self.now, step.work > 0

        def done() -> None:
            running.last_activity, running.busy = self.now, False
            self.at(self.now + step.gap, lambda: self.step(person, index, number + 1))

        self.at(self.now + step.work, done)

    def leave(self, person: Person) -> None:
        self.outcome.left_at[person.email] = self.now
        if person.releases and person.email in self.running:
            self.give_back(person.email)

    # -- giving back ----------------------------------------------------------------------

    def give_back(self, email: str) -> None:
        running = self.running.pop(email)
        self.outcome.holds.append(Hold(email, running.start, self.now))
        self.dispatch()

    def reclaim(self) -> None:
        policy = self.policy
        pressing = policy.pressure_timeout > 0 and bool(self.waiting)
        timeout = policy.pressure_timeout if pressing else policy.idle_timeout
        for email, running in list(self.running.items()):
            if not running.busy and self.now - running.last_activity >= timeout:
                self.give_back(email)
        self.at(self.now + policy.reclaim_every, self.reclaim)


def simulate(people: tuple[Person, ...], policy: Policy, gpus: int, until: float) -> Outcome:
    """What `policy` does with `people` on `gpus` GPUs during the first `until` seconds."""
    return _Simulation(people, policy, gpus, until).run()
