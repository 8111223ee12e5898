"""Scenario 1: throughput and latency of nginx, configurable-http-proxy and the allocator in
front of the same 1 KiB origin, measured with the same wrk load in one run."""

from __future__ import annotations

import resource
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

import fake_iap
from bench import services, wrk
from bench.nginx import BODY_SIZE, ORIGIN_BODY
from bench.procs import Processes, Service, StartupError, tree_cpu_seconds
from bench.tools import Tools, allocator_problem

METHODS = ("GET", "POST")


@dataclass
class Measurement:
    result: wrk.WrkResult
    # CPU used during the measured run, in % of one core (machine: % of all cores).
    cpu_percent: dict[str, float]


@dataclass
class Contestant:
    name: str
    description: str
    missing: str | None = None  # why it was not measured
    rounds: dict[str, list[Measurement]] = field(default_factory=dict)  # by HTTP method
    runs: dict[str, Measurement] = field(default_factory=dict)  # the median round, by method


@dataclass
class ThroughputResults:
    load: wrk.Load
    contestants: dict[str, Contestant]


def check_answers(url: str, headers: dict[str, str]) -> None:
    """One GET and one 1 KiB POST must come back 200 with the origin's exact body."""
    for method, data in (("GET", None), ("POST", b"b" * BODY_SIZE)):
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        if status != 200 or body != ORIGIN_BODY.encode():
            raise StartupError(
                f"{method} {url} answered {status} with {len(body)} bytes "
                f"(expected 200 and the origin's {BODY_SIZE}-byte body): {body[:200]!r}"
            )


def _measure(
    processes: Processes,
    tools: Tools,
    load: wrk.Load,
    url: str,
    lua: Path,
    watched: dict[str, Service],
) -> Measurement:
    """One measured wrk run, with the CPU used meanwhile by `watched`, wrk and the rest."""
    headers = services.identity()
    before = {name: tree_cpu_seconds(s.pid) for name, s in watched.items()}
    before["wrk"] = _reaped_children_cpu_seconds()
    psutil.cpu_percent(interval=None)
    started = time.monotonic()
    result = wrk.run(processes, tools.wrk, url, load, duration_s=load.duration_s, lua=lua,
                     headers=headers)  # fmt: skip
    elapsed = time.monotonic() - started
    machine = psutil.cpu_percent(interval=None)
    used = {name: tree_cpu_seconds(s.pid) for name, s in watched.items()}
    used["wrk"] = _reaped_children_cpu_seconds()
    cpu = {name: round(100 * (used[name] - before[name]) / elapsed, 1) for name in used}
    # Whatever else ran on the machine meanwhile (other programs, the kernel's share).
    everything = machine * (psutil.cpu_count() or 1)
    cpu["other"] = round(max(0.0, everything - sum(cpu.values())), 1)
    cpu["machine"] = machine
    return Measurement(result=result, cpu_percent=cpu)


def _reaped_children_cpu_seconds() -> float:
    """CPU seconds of children already waited for — here: every finished wrk run."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _print_run(method: str, result: wrk.WrkResult, cpu: dict[str, float]) -> None:
    flag = f"  ERRORS: {result.errors}" if result.flagged else ""
    lat = result.latency_ms
    cpus = ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items())
    print(
        f"    {method:<4} {result.rps:>9.0f} req/s  p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}"
        f"  p99 {lat['p99']:.2f} ms  (cpu: {cpus}){flag}",
        flush=True,
    )


class Missing(Exception):
    """A contestant that cannot run on this machine yet (not a failure of the harness)."""


Starter = Callable[[Processes, Tools, int], Service]


def _start_nginx(processes: Processes, tools: Tools, origin_port: int) -> Service:
    return services.start_nginx_proxy(processes, tools.nginx, origin_port)


def _start_chp(processes: Processes, tools: Tools, origin_port: int) -> Service:
    return services.start_chp(processes, tools.chp, origin_port)


def _allocator_starter(command: list[str], iap: bool = False) -> Starter:
    def start(processes: Processes, tools: Tools, origin_port: int) -> Service:
        problem = allocator_problem(command)
        if problem:
            raise Missing(problem)
        redis = services.start_redis(processes, tools.redis_server)
        assert redis.port is not None
        keys_url = _iap_keys() if iap else None
        allocator = services.start_allocator(processes, command, origin_port, redis.port, keys_url)
        services.wait_until_ready(allocator)
        return allocator

    return start


def _iap_keys() -> str:
    """Our JWK set, served from this process for as long as it runs (fetched once at start)."""
    server = fake_iap.KeyServer(services.IAP_KEY).start()
    return server.url


def run(
    processes: Processes,
    tools: Tools,
    load: wrk.Load,
    allocator_command: list[str],
) -> ThroughputResults:
    """Start every contestant, then measure them in turn (in `load.rounds` rounds, keeping each
    one's median run), so that a disturbance on the machine hits all of them alike."""
    workdir = processes.workdir
    scripts = {
        "GET": wrk.script(workdir / "get.lua", "GET", 0),
        "POST": wrk.script(workdir / "post.lua", "POST", BODY_SIZE),
    }
    origin = services.start_origin(processes, tools.nginx)
    assert origin.port is not None
    plan: list[tuple[str, str, Starter | None]] = [
        ("origin", f"nginx origin alone (1 worker, fixed {BODY_SIZE}-byte body), no proxy", None),
        ("nginx", "nginx proxy_pass, 1 worker, upstream keepalive 64", _start_nginx),
        ("chp", "configurable-http-proxy, one node process", _start_chp),
        ("allocator", "sd-allocator, 1 worker, static backend, header identity, Redis",
         _allocator_starter(allocator_command)),
        ("allocator-iap", "the same with iap identity (ES256 token verified once, then cached)",
         _allocator_starter(allocator_command, iap=True)),
    ]  # fmt: skip
    contestants: dict[str, Contestant] = {}
    targets: dict[str, dict[str, Service]] = {}  # name -> the processes whose CPU we watch
    for name, description, start in plan:
        contestant = contestants[name] = Contestant(name=name, description=description)
        already_running = processes.running()
        try:
            proxy = start(processes, tools, origin.port) if start else None
            check_answers(services.base_url(proxy or origin) + "/", services.identity())
            # Helpers started with the proxy (the allocator's Redis) are watched too.
            started = [s for s in processes.running() if s not in already_running]
            helpers = {s.name: s for s in started if s is not proxy}
            targets[name] = {"proxy": proxy, **helpers} if proxy else {}
            targets[name]["origin"] = origin
        except Missing as e:
            contestant.missing = str(e)
            print(f"  {name}: SKIPPED: {e}", flush=True)
        except (StartupError, RuntimeError, ValueError) as e:
            contestant.missing = f"failed to start: {e}"
            print(f"  {name}: FAILED: {e}", flush=True)

    for round_ in range(load.rounds):
        for name, watched in list(targets.items()):
            contestant = contestants[name]
            print(f"  {name} (round {round_ + 1}/{load.rounds}): {contestant.description}",
                  flush=True)  # fmt: skip
            url = services.base_url(watched.get("proxy", origin)) + "/"
            try:
                for method in METHODS:
                    if round_ == 0:
                        wrk.run(processes, tools.wrk, url, load, duration_s=load.warmup_s,
                                lua=scripts[method], headers=services.identity())  # fmt: skip
                    measurement = _measure(processes, tools, load, url, scripts[method], watched)
                    contestant.rounds.setdefault(method, []).append(measurement)
                    _print_run(method, measurement.result, measurement.cpu_percent)
            except (RuntimeError, ValueError) as e:
                contestant.missing = f"failed while measuring: {e}"
                print(f"    FAILED: {e}", flush=True)
                del targets[name]
                if "proxy" in watched:
                    processes.stop(watched["proxy"])

    for contestant in contestants.values():
        if contestant.missing:
            continue
        for method, measured in contestant.rounds.items():
            by_rps = sorted(measured, key=lambda m: m.result.rps)
            contestant.runs[method] = by_rps[(len(by_rps) - 1) // 2]
    return ThroughputResults(load=load, contestants=contestants)
