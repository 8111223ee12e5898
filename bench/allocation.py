"""Scenario 4: what allocating a WebUI costs on top of the Kubernetes API's own latency.

The allocator (`SDA_BACKEND=agones`, header identity, a real Redis) in front of the fake Agones
API (bench/fake_cluster.py), which delays every API request by a fixed latency; an nginx origin
answers on every Pod IP. Each round, on a Fleet with room for both steps:

1. `people` concurrent GameServerAllocations straight to the API, with the body the allocator
   sends: the API's own latency under the same burst;
2. `people` new people each sending their first request to the allocator at once: the time
   until the complete 200 from their WebUI (allocation, recording it, forwarding).

Every answer is checked (201 Allocated; 200 with the origin's body) and the fake must have
logged exactly one Allocated outcome per person. Then the allocated GameServers are deleted and
the Fleet refills. One unrecorded warm-up round comes first.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import queue
import resource
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil
import uvloop

from allocator.backends.agones.gameservers import USER_LABEL, allocation_request
from allocator.slugs import slug_for
from allocator.types import Person
from bench import fake_cluster, services
from bench.fake_cluster import FakeCluster
from bench.nginx import ORIGIN_BODY
from bench.procs import Processes, Service, StartupError, free_port, tree_cpu_seconds
from bench.tools import Tools, allocator_problem

SETTLE_S = 0.5  # after each step, so that the allocator's watch events are handled
REQUEST_TIMEOUT_S = 30.0


class WrongAnswers(RuntimeError):
    """The allocator or the API answered the burst wrongly; the message says how."""


@dataclass(frozen=True)
class AllocationLoad:
    people: int = 50
    rounds: int = 5  # a p99 of some 250 requests is their third slowest: noisy on 2 cores
    api_latency_ms: float = 5.0
    spare: int = 5  # Ready GameServers left over after both steps
    known_connections: int = 8  # a person already working, during a storm and without one
    known_requests: int = 400  # without a storm, in all connections

    @property
    def replicas(self) -> int:
        return 2 * self.people + self.spare + 1  # + the known person's


@dataclass
class Step:
    """One burst: each request's latency (ms), the API requests it caused, CPU meanwhile."""

    latencies_ms: list[float]
    api_requests: int
    seconds: float
    cpu_ms: dict[str, float] = field(default_factory=dict)  # by process, plus "other"

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


@dataclass
class Round:
    api: Step
    allocator: Step
    known_alone: list[float] = field(default_factory=list)  # ms, no storm
    known_storm: list[float] = field(default_factory=list)  # ms, started during a storm
    # The same client straight to a WebUI (nginx), no allocator in between: what a storm
    # costs any program on these cores, the allocator's share left out.
    webui_alone: list[float] = field(default_factory=list)
    webui_storm: list[float] = field(default_factory=list)


@dataclass
class AllocationResults:
    load: AllocationLoad
    description: str
    missing: str | None = None  # why it could not be measured
    failed: str | None = None  # how the allocator answered wrongly
    rounds: list[Round] = field(default_factory=list)

    def median(self, step: str, q: float) -> float | None:
        values = [getattr(r, step).percentile(q) for r in self.rounds]
        return round(statistics.median(values), 2) if values else None


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q % of all at or below it (of 50
    values, p99 is the slowest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# -- one burst ---------------------------------------------------------------------------

Timed = tuple[float, str | None]  # ms, what was wrong with the answer (None: nothing)
Call = Callable[[], Awaitable[str | None]]  # one request, checking its answer


async def _timed(call: Call) -> Timed:
    started = time.perf_counter()
    try:
        problem = await call()
    except (aiohttp.ClientError, TimeoutError) as e:
        problem = f"{type(e).__name__}: {e}"
    return 1000 * (time.perf_counter() - started), problem


async def _burst(calls: list[Call]) -> list[Timed]:
    return await asyncio.gather(*(_timed(call) for call in calls))


def _session() -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout)


async def _direct(cluster: FakeCluster, people: list[Person]) -> list[Timed]:
    """A GameServerAllocation per person, all at once, straight to the API."""
    headers = {**cluster.headers, "Content-Type": "application/json"}
    bodies = [json.dumps(allocation_request(p, fake_cluster.FLEET, time.time())) for p in people]
    async with _session() as session:

        async def post(body: str) -> str | None:
            async with session.post(cluster.allocation_url, data=body, headers=headers) as answer:
                text = await answer.read()
            state = _state(text)
            if answer.status != 201 or state != "Allocated":
                return f"HTTP {answer.status}, state {state!r}: {text[:120]!r}"
            return None

        return await _burst([functools.partial(post, body) for body in bodies])


def _state(answer: bytes) -> str:
    """`status.state` of a GameServerAllocation answer ("" if it is not one)."""
    try:
        return str((json.loads(answer).get("status") or {}).get("state", ""))
    except (ValueError, AttributeError):
        return ""


async def _first_requests(url: str, people: list[Person]) -> list[Timed]:
    """Each person's first request to the allocator, all at once, until the complete 200."""
    expected = ORIGIN_BODY.encode()
    # Signed before the burst: making a token is the client's work, not the allocator's.
    identities = {person.email: services.identity(person.email) for person in people}
    async with _session() as session:

        async def get(email: str) -> str | None:
            async with session.get(url, headers=identities[email]) as answer:
                body = await answer.read()
            if answer.status != 200 or body != expected:
                return f"HTTP {answer.status}: {body[:120]!r}"
            return None

        return await _burst([functools.partial(get, person.email) for person in people])


KNOWN = "known@example.com"
# When a request started (time.monotonic: CLOCK_MONOTONIC, the same clock in every process on
# Linux), and how long it took in ms.
Timing = tuple[float, float]


async def _known_loops(
    url: str, connections: int, keep_going: Callable[[int], bool], warm: Callable[[], None]
) -> list[Timing]:
    """The known person's GETs on `connections` connections, each one after the other, while
    `keep_going(done so far)`. Each connection's first request (its TCP connect, a fresh
    process's first run) is not counted; `warm()` once every connection has made it."""
    headers = services.identity(KNOWN)
    expected = ORIGIN_BODY.encode()
    found: list[Timing] = []
    warmed: list[None] = []
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def get() -> Timing:
            began = time.monotonic()
            async with session.get(url, headers=headers) as answer:
                body = await answer.read()
            if answer.status != 200 or body != expected:
                raise WrongAnswers(f"the known person got HTTP {answer.status}")
            return began, 1000 * (time.monotonic() - began)

        async def loop() -> None:
            await get()
            warmed.append(None)
            if len(warmed) == connections:
                warm()
            while keep_going(len(found)):
                found.append(await get())

        await asyncio.gather(*(loop() for _ in range(connections)))
    return found


def _known_client(
    url: str,
    connections: int,
    requests: int | None,
    warm: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    out: multiprocessing.queues.Queue[list[Timing] | str],
) -> None:
    """The known person's client in a process of its own, as wrk would be: it shares neither
    an event loop nor a time slice with the storm's 50 clients. `requests` of them, or until
    `stop` is set; the timings (or what went wrong) go to `out`."""

    def keep_going(done: int) -> bool:
        return done < requests if requests is not None else not stop.is_set()

    try:
        out.put(uvloop.run(_known_loops(url, connections, keep_going, warm.set)))
    except Exception as e:  # the parent reports it
        out.put(f"{type(e).__name__}: {e}")


class KnownClient:
    """Starts `_known_client` and collects its timings."""

    def __init__(self, url: str, connections: int, requests: int | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self._warm, self._stop = context.Event(), context.Event()
        self._out: multiprocessing.queues.Queue[list[Timing] | str] = context.Queue()
        args = (url, connections, requests, self._warm, self._stop, self._out)
        self._process = context.Process(target=_known_client, args=args, daemon=True)
        self._process.start()

    def warmed_up(self) -> bool:
        """Whether every connection has made its uncounted first request (waits for it)."""
        return self._warm.wait(REQUEST_TIMEOUT_S)

    def results(self) -> list[Timing]:
        """Its timings, once it is done (told to stop now, if it runs until told)."""
        self._stop.set()
        try:
            found = self._out.get(timeout=REQUEST_TIMEOUT_S)
        except queue.Empty:
            found = "it sent nothing"
        finally:
            self._process.join(REQUEST_TIMEOUT_S)
            if self._process.is_alive():
                self._process.kill()
        if isinstance(found, str):
            raise WrongAnswers(f"the known person's client: {found}")
        return found


def _known_alone(url: str, load: AllocationLoad) -> list[float]:
    client = KnownClient(url, load.known_connections, load.known_requests)
    return [ms for _, ms in client.results()]


def _known_during_storm(
    url: str, known_url: str, load: AllocationLoad, people: list[Person]
) -> tuple[list[float], list[Timed]]:
    """The known person's requests (to `known_url`) that started while `people` made their
    first requests to the allocator at `url`."""
    client = KnownClient(known_url, load.known_connections)
    if not client.warmed_up():
        client.results()  # says what went wrong
        raise WrongAnswers("the known person's client did not get going")
    try:
        begun = time.monotonic()
        answers = uvloop.run(_first_requests(url, people))
        ended = time.monotonic()
    finally:
        known = client.results()
    return [ms for started, ms in known if begun <= started <= ended], answers


# -- checking what happened --------------------------------------------------------------


def _problems(answers: list[Timed], what: str) -> None:
    wrong = [problem for _, problem in answers if problem]
    if wrong:
        raise WrongAnswers(f"{len(wrong)} of {len(answers)} {what} went wrong; first: {wrong[0]}")


def _allocated(records: list[fake_cluster.Json], people: list[Person], what: str) -> list[str]:
    """The GameServers the fake allocated to `people`: exactly one each, nobody else's."""
    slugs = {person.slug for person in people}
    allocated: dict[str, str] = {}
    for record in records:
        labels = json.loads(record["body"])["spec"]["metadata"]["labels"]
        slug = labels.get(USER_LABEL, "")
        if slug not in slugs:
            raise WrongAnswers(f"{what}: the fake got an allocation for a stranger ({slug!r})")
        if record["outcome"] == "Allocated":
            if slug in allocated:
                raise WrongAnswers(f"{what}: {slug} was allocated twice")
            allocated[slug] = record["game_server"]
    if len(allocated) != len(slugs):
        outcomes = sorted({r["outcome"] for r in records})
        raise WrongAnswers(
            f"{what}: the fake logged {len(allocated)} Allocated outcomes for {len(slugs)} "
            f"people (outcomes seen: {', '.join(outcomes) or 'none'})"
        )
    return list(allocated.values())


# -- measuring a step --------------------------------------------------------------------


class CpuWatch:
    """CPU used by the watched processes, this process and everything else during a step."""

    def __init__(self, watched: dict[str, Service]) -> None:
        self.watched = watched

    def __enter__(self) -> CpuWatch:
        self._before = self._now()
        self._started = time.perf_counter()
        psutil.cpu_percent(interval=None)
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self._started
        machine = psutil.cpu_percent(interval=None) / 100 * (psutil.cpu_count() or 1) * elapsed
        used = {name: 1000 * (t - self._before[name]) for name, t in self._now().items()}
        used["other"] = max(0.0, 1000 * machine - sum(used.values()))
        self.cpu_ms = {name: round(ms, 1) for name, ms in used.items()}
        self.seconds = round(elapsed, 4)

    def _now(self) -> dict[str, float]:
        now = {name: tree_cpu_seconds(s.pid) for name, s in self.watched.items()}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        now["harness"] = usage.ru_utime + usage.ru_stime
        return now


@dataclass
class Setup:
    cluster: FakeCluster
    allocator: Service
    watched: dict[str, Service]
    webui: str  # a WebUI's own address (nginx answers the same at every Pod IP)


Burst = Callable[[list[Person]], Coroutine[Any, Any, list[Timed]]]


def _step(setup: Setup, burst: Burst, people: list[Person], what: str) -> tuple[Step, list[str]]:
    """One burst for `people`, checked against the fake's allocation log; the step and the
    GameServers it allocated."""
    cluster = setup.cluster
    seen = len(cluster.allocations())
    with CpuWatch(setup.watched) as cpu:
        answers = uvloop.run(burst(people))
    records = cluster.allocations()[seen:]
    _problems(answers, what)
    names = _allocated(records, people, what)
    step = Step([ms for ms, _ in answers], len(records), cpu.seconds, cpu.cpu_ms)
    return step, names


def _round(setup: Setup, load: AllocationLoad, label: str, control_first: bool = False) -> Round:
    """Both bursts on a full Fleet; then their GameServers are deleted and the Fleet refills."""
    cluster, url = setup.cluster, services.base_url(setup.allocator) + "/"
    cluster.settled(allocated=1)  # the known person's
    direct = [_person(f"direct-{label}-{i}") for i in range(load.people)]
    people = [_person(f"{label}-{i}") for i in range(load.people)]

    to_api: Burst = functools.partial(_direct, cluster)
    to_allocator: Burst = functools.partial(_first_requests, url)
    api, names = _step(setup, to_api, direct, "direct allocations")
    time.sleep(SETTLE_S)
    allocator, more = _step(setup, to_allocator, people, "first requests to the allocator")
    for name in names + more:
        cluster.delete(name)
    time.sleep(SETTLE_S)
    cluster.settled(allocated=1)
    targets = [(url, f"storm-{label}"), (setup.webui, f"control-{label}")]
    if control_first:  # rounds alternate: neither measurement always comes second
        targets.reverse()
    measured = {target: _known_person(setup, load, target, name) for target, name in targets}
    (alone, during), (webui_alone, webui_during) = measured[url], measured[setup.webui]
    return Round(api, allocator, alone, during, webui_alone, webui_during)


def _known_person(
    setup: Setup, load: AllocationLoad, known_url: str, label: str
) -> tuple[list[float], list[float]]:
    """The known person's latencies at `known_url` alone, then while 50 new people make their
    first requests to the allocator; their GameServers are deleted afterwards."""
    cluster, url = setup.cluster, services.base_url(setup.allocator) + "/"
    alone = _known_alone(known_url, load)
    stormers = [_person(f"{label}-{i}") for i in range(load.people)]
    seen = len(cluster.allocations())
    during, answers = _known_during_storm(url, known_url, load, stormers)
    _problems(answers, "first requests during the known person's")
    for name in _allocated(cluster.allocations()[seen:], stormers, "the storm"):
        cluster.delete(name)
    time.sleep(SETTLE_S)
    cluster.settled(allocated=1)
    return alone, during


def _person(name: str) -> Person:
    email = f"{name}@example.com"
    return Person(email, slug_for(email))


def _print_round(label: str, measured: Round) -> None:
    api, alloc = measured.api, measured.allocator
    print(
        f"    {label}: API p50 {api.percentile(50):6.2f}  p99 {api.percentile(99):6.2f} ms;"
        f"  allocator p50 {alloc.percentile(50):6.2f}  p99 {alloc.percentile(99):6.2f} ms;"
        f"  overhead p99 {alloc.percentile(99) - api.percentile(99):+.2f} ms"
        f"  (allocator CPU {alloc.cpu_ms.get('allocator', 0):.0f} ms,"
        f" {alloc.api_requests} API requests)",
        flush=True,
    )
    for who, alone, storm in (
        ("a known person's", measured.known_alone, measured.known_storm),
        ("the same, straight to a WebUI:", measured.webui_alone, measured.webui_storm),
    ):
        if storm:
            print(
                f"      {who} p99 {percentile(alone, 99):.2f} ms alone, "
                f"{percentile(storm, 99):.2f} ms during the storm ({len(storm)} requests then)",
                flush=True,
            )


# -- the harness side --------------------------------------------------------------------


def _start(
    processes: Processes, tools: Tools, load: AllocationLoad, allocator_command: list[str]
) -> Setup:
    webui_port = free_port()
    pods = services.start_pods_origin(processes, tools.nginx, fake_cluster.pod_ips(), webui_port)
    redis = services.start_redis(processes, tools.redis_server)
    cluster = fake_cluster.start(processes, webui_port, load.replicas, load.api_latency_ms)
    assert redis.port is not None
    allocator = services.start_agones_allocator(
        processes, allocator_command, redis.port, cluster.kubeconfig,
        fake_cluster.NAMESPACE, fake_cluster.FLEET,
    )  # fmt: skip
    watched = {"allocator": allocator, "fake": cluster.service, "redis": redis, "origin": pods}
    webui = f"http://{fake_cluster.pod_ips()[0]}:{webui_port}/"
    return Setup(cluster, allocator, watched, webui)


def _too_many(load: AllocationLoad) -> str | None:
    """The fake has 253 Pod IPs; the GameServers of a round still hold theirs while the Fleet's
    replacements take new ones."""
    needed = load.replicas + 2 * load.people
    available = len(fake_cluster.POD_IP_NUMBERS)
    return f"{needed} Pod IPs needed, the fake has {available}" if needed > available else None


def run(
    processes: Processes, tools: Tools, load: AllocationLoad, allocator_command: list[str]
) -> AllocationResults:
    description = (
        f"{load.people} people at once, fake Agones API answering after "
        f"{load.api_latency_ms:g} ms, Fleet of {load.replicas}"
    )
    results = AllocationResults(load=load, description=description)
    problem = _too_many(load) or allocator_problem(allocator_command)
    if problem:
        results.missing = problem
        print(f"  allocation: SKIPPED: {problem}", flush=True)
        return results
    already_running = processes.running()
    try:
        setup = _start(processes, tools, load, allocator_command)
        url = services.base_url(setup.allocator) + "/"
        _known_alone(url, AllocationLoad(known_connections=1, known_requests=1))  # their WebUI
        _round(setup, load, "warmup")
        print("    warm-up round done", flush=True)
        for n in range(load.rounds):
            label = f"round {n + 1}/{load.rounds}"
            measured = _round(setup, load, f"r{n + 1}", control_first=n % 2 == 1)
            results.rounds.append(measured)
            _print_round(label, measured)
    except WrongAnswers as e:
        results.failed = str(e)
        print(f"  allocation: FAILED: {e}", flush=True)
    except (StartupError, RuntimeError, ValueError) as e:
        results.missing = f"failed: {e}"
        print(f"  allocation: FAILED: {e}", flush=True)
    finally:
        for service in processes.running():
            if service not in already_running:
                processes.stop(service)
    return results
