"""The scarcity script's people, for real: one asyncio task each, speaking HTTP to the two
allocator replicas as a browser would (every request to either replica, as a load balancer
sends them).

A person without a WebUI loads a page; told to queue, they ask `/_allocator/status` every 3 s
as the queue page does (queue-worker.js) and load the page again once they are no longer
queued; told to wait otherwise (allocating, starting), they reload after its Retry-After.
With their WebUI they work through their bursts: quick page loads, and generations
(`/work?seconds=N`) during which they poll `/internal/progress` every second, as the WebUI's
page does (an idle-exempt path: it does not count as activity, so only the busy lease keeps a
long generation's WebUI). At the end they give the WebUI back or just walk away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from allocator.slugs import slug_for
from bench.scarcity_metrics import Wait
from bench.scarcity_script import Burst, Person, Step
from bench.services import IDENTITY_HEADER

POLL_SECONDS = 3.0  # queue-worker.js
PROGRESS_SECONDS = 1.0
PAGE = "/page"


class Clock:
    """Seconds since the start of the run, on the wall clock the WebUIs' events use."""

    def __init__(self) -> None:
        self.started = time.time()

    def now(self) -> float:
        return time.time() - self.started

    async def sleep_until(self, moment: float) -> None:
        await asyncio.sleep(max(0.0, moment - self.now()))


@dataclass
class Seen:
    """What the people saw during the run."""

    waits: list[Wait] = field(default_factory=list)
    left_at: dict[str, float] = field(default_factory=dict)
    losses: list[Loss] = field(default_factory=list)  # their WebUI was gone
    wrong_webui: list[str] = field(default_factory=list)  # someone else's WebUI answered
    odd: list[str] = field(default_factory=list)  # answers a person should not get
    requests: int = 0


@dataclass(frozen=True)
class Loss:
    """A request that found the person's WebUI gone, as the person saw it: `pause` when it
    was the first after a pause (the WebUI may have been reclaimed as idle), `work` when a
    generation was broken off, `burst` when it was a later request of a burst."""

    email: str
    kind: str  # pause | work | burst
    asked_at: float
    answered_at: float
    detail: str


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer (connection refused, reset, cut)
    body: bytes
    at: float

    def json(self) -> dict[str, Any]:
        try:
            found = json.loads(self.body)
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}


@dataclass(frozen=True)
class Lost:
    """A burst found the WebUI gone: the request that showed it, which also asked for one."""

    asked_at: float
    answer: Answer


class Visitor:
    def __init__(
        self,
        person: Person,
        urls: list[str],
        http: aiohttp.ClientSession,
        clock: Clock,
        seen: Seen,
        seed: int,
    ) -> None:
        self.person, self.urls, self.http, self.clock, self.seen = person, urls, http, clock, seen
        self.slug = slug_for(person.email).encode()
        self.headers = {IDENTITY_HEADER: f"accounts.google.com:{person.email}"}
        self.rng = random.Random(f"{seed}:{person.email}")

    async def live(self) -> None:
        await self.clock.sleep_until(self.person.arrival)
        await self.wait_for_webui(first=True, lost=None)
        index, resuming = 0, False
        while index < len(self.person.bursts):
            burst = self.person.bursts[index]
            if not resuming:
                await asyncio.sleep(burst.pause)
            lost = await self.burst(burst)
            if lost is None:
                index, resuming = index + 1, False
                continue
            resuming = True
            await self.wait_for_webui(first=False, lost=lost)
        self.seen.left_at[self.person.email] = self.clock.now()
        if self.person.releases:
            await self.release()

    # -- waiting --------------------------------------------------------------------------

    async def wait_for_webui(self, first: bool, lost: Lost | None) -> None:
        asked = lost.asked_at if lost else self.clock.now()
        wait = Wait(self.person.email, asked, first)
        self.seen.waits.append(wait)
        answer = lost.answer if lost else await self.get(PAGE)
        while not self.mine(answer):
            if answer.status == 200:
                self.seen.wrong_webui.append(f"{self.person.email}: {answer.body[:80]!r}")
            state = answer.json().get("state")
            if state == "queued":
                if wait.seen_waiting_at is None:
                    wait.seen_waiting_at = answer.at
                await self.while_queued(wait)
            else:
                if answer.status not in (200, 503):
                    self.seen.odd.append(f"{self.person.email} waiting: HTTP {answer.status}")
                await asyncio.sleep(float(answer.json().get("retry_after", 2)))
            answer = await self.get(PAGE)
        wait.ready_at = answer.at

    async def while_queued(self, wait: Wait) -> None:
        """Ask for the status as the queue page does, until it is no longer `queued`."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            status = await self.get("/_allocator/status")
            state = status.json().get("state")
            if state != "queued":
                if state == "none":
                    self.seen.odd.append(f"{self.person.email}: no longer queued, not served")
                return

    # -- working --------------------------------------------------------------------------

    async def burst(self, burst: Burst) -> Lost | None:
        for number, step in enumerate(burst.steps):
            asked = self.clock.now()
            answer = await (self.work(step) if step.work else self.get(PAGE))
            if not self.mine(answer):
                self.note_lost(asked, number, step, answer)
                return Lost(asked, answer)
            await asyncio.sleep(step.gap)
        return None

    async def work(self, step: Step) -> Answer:
        polling = asyncio.create_task(self.poll_progress())
        try:
            return await self.get(f"/work?seconds={step.work}")
        finally:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling

    async def poll_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            await self.get("/internal/progress")

    def note_lost(self, asked: float, number: int, step: Step, answer: Answer) -> None:
        where = (
            f"{self.person.email} asked at {asked:.1f} s, answered at {answer.at:.1f} s: "
            f"HTTP {answer.status}"
        )
        if answer.status == 200:
            self.seen.wrong_webui.append(f"{where}, answered by {answer.body[:80]!r}")
            return
        if answer.status != 503 and step.work:
            kind, what = "work", f"{where} during a {step.work:g} s generation"
        elif number > 0:
            kind, what = "burst", f"{where} in the middle of a burst"
        else:
            kind, what = "pause", f"{where} on the first request after a pause"
        what += f" ({answer.json().get('message') or answer.body[:80]!r})"
        self.seen.losses.append(Loss(self.person.email, kind, asked, answer.at, what))

    async def release(self) -> None:
        url = self.rng.choice(self.urls)
        headers = {**self.headers, "Origin": url}
        try:
            async with self.http.post(url + "/_allocator/release", headers=headers) as response:
                body = await response.read()
                if response.status != 200 or not json.loads(body).get("released"):
                    self.seen.odd.append(f"{self.person.email} release: {response.status} {body!r}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.seen.odd.append(f"{self.person.email} release failed: {exc!r}")

    # -- HTTP -----------------------------------------------------------------------------

    def mine(self, answer: Answer) -> bool:
        return answer.status == 200 and answer.body == self.slug

    async def get(self, path: str) -> Answer:
        url = self.rng.choice(self.urls) + path
        self.seen.requests += 1
        try:
            async with self.http.get(url, headers=self.headers) as response:
                body = await response.read()
                return Answer(response.status, body, self.clock.now())
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(0, repr(exc).encode(), self.clock.now())


async def live_all(
    people: tuple[Person, ...], urls: list[str], seconds: float, seed: int
) -> tuple[Seen, Clock]:
    """Everyone in the script, until `seconds` after the start; what they saw."""
    seen, clock = Seen(), Clock()
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        tasks = [
            asyncio.create_task(Visitor(p, urls, http, clock, seen, seed).live()) for p in people
        ]
        await asyncio.wait(tasks, timeout=max(0.0, seconds - clock.now()))
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for person, result in zip(people, results, strict=True):
        if isinstance(result, Exception):
            seen.odd.append(f"{person.email}: {result!r}")
    return seen, clock
