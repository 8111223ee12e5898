"""Scenario: scarcity (issue 13). 30 people, 6 GPUs, time compressed 45-fold; ours for real,
the predecessor's policy simulated with the same people doing the same things.

Ours: two `sd-allocator serve` replicas on this machine (local backend sharing one slot
registry, so 6 WebUIs machine-wide; one real redis-server; header identity), each WebUI a
stand-in (bench/scarcity_webui.py) that starts in a fraction of a second, with a slow
endpoint whose requests keep it busy, and records when it started and stopped. The people
(bench/scarcity_people.py) live in this process. Idle timeout 20 s (15 min), pressure timeout
6 s (5 min), cruiser every 2 s; activity and busy leases written every second, so both reach
Redis well within the pressure timeout.

Then the same script is simulated (bench/scarcity_sim.py) under the predecessor's policy and,
as a check on the simulator, under ours. Every outcome is reduced to figures by the same code
(bench/scarcity_metrics.py).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from allocator.slugs import slug_for
from bench import services
from bench.procs import Processes, Service, free_port, wait_for_http
from bench.scarcity_metrics import Figures, Hold, Outcome, Wait, figures, out_of_order
from bench.scarcity_people import POLL_SECONDS, Loss, Seen, live_all
from bench.scarcity_script import Person, Shape, script
from bench.scarcity_sim import Policy, predecessor, simulate
from bench.tools import BENCH_DIR, ROOT, Tools

WEBUI = BENCH_DIR / "scarcity_webui.py"
DISPATCH_TICK = 1.0  # allocator/dispatch.py WAITING_TICK: the pressure pass runs every turn
FALLBACK_STARTUP = 0.5  # seconds, if nobody in the run found a GPU free at once
SAME_CLOCK = 0.1  # seconds: the people and the WebUIs read the same wall clock
Json = dict[str, Any]
OURS, OURS_SIMULATED, PREDECESSOR = "ours", "ours (simulated)", "predecessor (simulated)"


@dataclass(frozen=True)
class ScarcityLoad:
    seed: int = 13
    seconds: float = 180.0
    gpus: int = 6
    replicas: int = 2
    idle_timeout: float = 20.0
    pressure_timeout: float = 6.0
    cruise_interval: float = 2.0
    activity_interval: float = 1.0
    busy_after: float = 1.0


@dataclass
class WebuiEvents:
    """What the stand-in WebUIs recorded, in run seconds."""

    holds: list[Hold] = field(default_factory=list)
    stopped_while_working: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class ScarcityResults:
    load: ScarcityLoad
    shape: Shape
    people: tuple[Person, ...]
    outcomes: dict[str, Outcome]
    startup_seconds: float
    seen: Seen
    webuis: WebuiEvents
    problems: list[str]

    def figures(self) -> dict[str, Figures]:
        return {name: figures(outcome) for name, outcome in self.outcomes.items()}


def run(
    processes: Processes, found: Tools, load: ScarcityLoad, allocator_command: list[str]
) -> ScarcityResults:
    shape = Shape()
    people = script(load.seed, shape)
    redis = services.start_redis(processes, found.redis_server)
    data_dir = processes.workdir / "scarcity"
    events = data_dir / "webuis.jsonl"
    data_dir.mkdir(parents=True, exist_ok=True)
    replicas = [
        _start_replica(processes, allocator_command, f"allocator-{n}", redis, data_dir, load)
        for n in range(1, load.replicas + 1)
    ]
    urls = [services.base_url(r) for r in replicas]
    print(f"  {len(people)} people, {load.gpus} GPUs, {len(replicas)} replicas, "
          f"{load.seconds:g} s (seed {load.seed})", flush=True)  # fmt: skip
    seen, clock = asyncio.run(live_all(people, urls, load.seconds, load.seed))
    for replica in replicas:  # they stop their WebUIs; events after the run are ignored
        processes.stop(replica, timeout=30)
    processes.stop(redis)
    webuis = read_events(events, clock.started, load.seconds, people)
    ours = _ours(seen, webuis, load.seconds)
    startup = _startup(seen.waits)
    outcomes = {
        OURS: ours,
        OURS_SIMULATED: simulate(people, _ours_policy(load, startup), load.gpus, load.seconds),
        PREDECESSOR: simulate(people, predecessor(startup), load.gpus, load.seconds),
    }
    results = ScarcityResults(load, shape, people, outcomes, startup, seen, webuis, [])
    results.problems = _problems(results)
    return results


def _start_replica(
    processes: Processes,
    command: list[str],
    name: str,
    redis: Service,
    data_dir: Path,
    load: ScarcityLoad,
) -> Service:
    port = free_port()
    events = shlex.quote(str(data_dir / "webuis.jsonl"))
    env = {
        "SDA_BACKEND": "local",
        "SDA_IDENTITY": "header",
        "SDA_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "SDA_PORT": str(port),
        "SDA_METRICS_PORT": "0",
        "SDA_LOG_LEVEL": "info",
        "SDA_DATA_DIR": str(data_dir),
        "SDA_MAX_SESSIONS": str(load.gpus),
        "SDA_LOCAL_COMMAND": f"{{python}} {shlex.quote(str(WEBUI))} {{port}} {{user_dir}} {events}",
        "SDA_IDLE_TIMEOUT": f"{load.idle_timeout:g}",
        "SDA_PRESSURE_IDLE_TIMEOUT": f"{load.pressure_timeout:g}",
        "SDA_CRUISER": "on",
        "SDA_CRUISE_INTERVAL": f"{load.cruise_interval:g}",
        "SDA_ACTIVITY_INTERVAL": f"{load.activity_interval:g}",
        "SDA_BUSY_AFTER": f"{load.busy_after:g}",
    }
    service = processes.start(name, command, env=env, cwd=ROOT, port=port, drop_env_prefix="SDA_")
    wait_for_http(service, services.base_url(service) + "/_allocator/healthz", timeout=60)
    return service


def read_events(
    path: Path, started: float, until: float, people: tuple[Person, ...]
) -> WebuiEvents:
    """Each WebUI's life (start to stop, or to the end of the run) from the events file."""
    emails = {slug_for(p.email): p.email for p in people}
    starts: dict[int, tuple[str, float]] = {}
    stops: dict[int, float] = {}
    found = WebuiEvents()
    lines = path.read_text().splitlines() if path.exists() else []
    for event in map(json.loads, lines):
        at, pid = float(event["at"]) - started, int(event["pid"])
        if at > until:
            continue
        email = emails.get(event["slug"], event["slug"])
        if event["kind"] == "start":
            starts[pid] = (email, at)
        elif event["kind"] == "stop":
            stops[pid] = at
            if event.get("working"):
                found.stopped_while_working.append((email, at))
    found.holds = [Hold(email, at, stops.get(pid)) for pid, (email, at) in starts.items()]
    return found


def _ours(seen: Seen, webuis: WebuiEvents, until: float) -> Outcome:
    """The real run as an `Outcome`: each wait's WebUI is the first that started for that
    person after they asked."""
    starts: dict[str, list[float]] = {}
    for hold in sorted(webuis.holds, key=lambda h: h.start):
        starts.setdefault(hold.email, []).append(hold.start)
    for wait in sorted(seen.waits, key=lambda w: w.asked_at):
        later = [s for s in starts.get(wait.email, []) if s >= wait.asked_at]
        if later:
            wait.started_at = later[0]
            starts[wait.email].remove(later[0])
    busy, in_pause = busy_losses(seen.losses, webuis.stopped_while_working)
    return Outcome(
        policy=OURS,
        run_seconds=until,
        waits=seen.waits,
        holds=webuis.holds,
        left_at=dict(seen.left_at),
        busy_reclaimed=len(busy),
        reclaimed_in_pause=len(in_pause),
    )


def busy_losses(
    losses: list[Loss], stopped_while_working: list[tuple[str, float]]
) -> tuple[list[str], list[Loss]]:
    """Busy WebUIs taken away, and WebUIs taken during a pause. A loss after a pause was a
    busy reclaim when the WebUI recorded its stop in the middle of a generation while that
    very request was under way; a stop in a generation nobody saw end is one too."""

    def during(loss: Loss, email: str, at: float) -> bool:
        return email == loss.email and loss.asked_at - SAME_CLOCK <= at <= loss.answered_at

    busy = [loss.detail for loss in losses if loss.kind != "pause"]
    in_pause = []
    for loss in (loss for loss in losses if loss.kind == "pause"):
        if any(during(loss, email, at) for email, at in stopped_while_working):
            busy.append(loss.detail + ": the WebUI was stopped during this generation")
        else:
            in_pause.append(loss)
    for email, at in stopped_while_working:
        if not any(during(loss, email, at) for loss in losses):
            busy.append(f"{email} at {at:.1f} s: WebUI stopped during a generation")
    return busy, in_pause


def _startup(waits: list[Wait]) -> float:
    """Median time to a WebUI for those who found one free at once (never told to queue)."""
    direct = [
        w.ready_at - w.asked_at
        for w in waits
        if w.ready_at is not None and w.seen_waiting_at is None
    ]
    return round(statistics.median(direct), 3) if direct else FALLBACK_STARTUP


def _ours_policy(load: ScarcityLoad, startup: float) -> Policy:
    return Policy(
        OURS_SIMULATED,
        fifo=True,
        ask_every=POLL_SECONDS,
        idle_timeout=load.idle_timeout,
        pressure_timeout=load.pressure_timeout,
        reclaim_every=DISPATCH_TICK,
        startup=startup,
    )


def _problems(results: ScarcityResults) -> list[str]:
    """What makes the real run's figures wrong or not worth reporting."""
    ours = results.outcomes[OURS]
    problems = [f"someone else's WebUI answered: {w}" for w in results.seen.wrong_webui]
    at_once = figures(ours).most_at_once
    if at_once > results.load.gpus:
        problems.append(f"{at_once} WebUIs ran at once on {results.load.gpus} GPUs")
    if not any(w.ready_at is not None for w in ours.waits):
        problems.append("nobody got a WebUI")
    return problems


def to_json(results: ScarcityResults) -> Json:
    people = results.people
    steps = [s for p in people for b in p.bursts for s in b.steps]
    long_work = [s for s in steps if s.work >= results.shape.long_generation[0]]
    seen = results.seen
    return {
        "load": {**asdict(results.load), "people": len(people)},
        "shape": asdict(results.shape),
        "script": {
            "arrivals": [p.arrival for p in people],
            "planned_seconds": [round(p.planned_seconds, 1) for p in people],
            "releasing": sum(p.releases for p in people),
            "generations": sum(1 for s in steps if s.work),
            "long_generations": len(long_work),
            "long_pauses": sum(
                1 for p in people for b in p.bursts if b.pause >= results.shape.long_pause[0]
            ),
        },
        "startup_seconds": results.startup_seconds,
        "requests": seen.requests,
        "policies": {name: asdict(found) for name, found in results.figures().items()},
        "evidence": {
            "out_of_order": [w.email for w in out_of_order(results.outcomes[OURS].waits)],
            "busy_reclaimed": busy_losses(seen.losses, results.webuis.stopped_while_working)[0],
            "wrong_webui": seen.wrong_webui,
            "odd": seen.odd,
        },
        "problems": results.problems,
    }
