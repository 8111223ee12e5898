"""Scenario: one cruiser pass over many sessions with a few idle (issue: 100 000 sessions, 1 %
idle, goal ≤ 1 s), and the predecessor's algorithm on the same data in the same run.

Set-up: a real redis-server holds the sessions in the allocator's own layout. The idle ones are
mapped to real GameServers, allocated from the fake Agones API (a separate process) exactly as
the allocator allocates; the active ones point nowhere (they are never candidates). Every hash
also gets a `lastaccess` field, the predecessor's, so its algorithm can decide from HGETALL alone.

- ours: `cruiser.reaper.Reaper.run_pass()`, in this process, with the allocator's store and
  Agones backend: the idle query, an atomic claim per candidate, a DELETE per GameServer through
  the kubernetes client, the mapping dropped. Reconciliation is off: it compares every mapping
  with the GameServers, and the 99 % here have none on purpose.
- predecessor (`stable-diffusion-on-gcp` cruiser): SCAN every key, one HGETALL each, compare
  `lastaccess`; read-only here, and it still is the slower one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

import aiohttp
import redis
from kubernetes import client, config

from allocator.backends.agones import AgonesBackend
from allocator.backends.agones.client import KubeApi
from allocator.backends.agones.gameservers import allocation_request, pod_ip, port_named
from allocator.identity.emails import person_from_email
from allocator.store import ACTIVITY, ALLOCATED, SessionStore, _encode_session
from allocator.types import Placement, Session
from bench import fake_cluster, services
from bench.procs import Processes, free_port
from bench.tools import Tools
from cruiser.reaper import CruiseOptions, Reaper

IDLE_TIMEOUT = 900.0
BATCH = 2_000


@dataclass(frozen=True)
class CruiseSizes:
    sessions: int = 100_000
    idle_percent: float = 1.0
    concurrency: int = 16

    @property
    def idle(self) -> int:
        return max(1, round(self.sessions * self.idle_percent / 100))


@dataclass
class CruiseResult:
    sessions: int
    idle: int
    pass_seconds: float = 0.0
    dry_run_seconds: float = 0.0  # the same pass without the releases: the store's share
    candidates_query_seconds: float = 0.0
    reclaimed: int = 0
    failed: int = 0
    deletes_seen: int = 0
    predecessor_seconds: float = 0.0
    predecessor_found: int = 0
    setup_seconds: float = 0.0

    @property
    def speedup(self) -> float | None:
        return self.predecessor_seconds / self.pass_seconds if self.pass_seconds else None


def run(processes: Processes, found: Tools, sizes: CruiseSizes) -> CruiseResult:
    began = time.monotonic()
    redis_service = services.start_redis(processes, found.redis_server)
    redis_url = f"redis://127.0.0.1:{redis_service.port}/0"
    cluster = fake_cluster.start(processes, free_port(), sizes.idle, latency_ms=0)
    result = CruiseResult(sizes.sessions, sizes.idle)
    idle_sessions = asyncio.run(_allocate_all(cluster, sizes.idle))
    # In a cluster, refilling the Fleet is Agones' work on other machines; here it would be the
    # fake's, on the cores the cruiser is measured on. Deleted GameServers are not replaced.
    cluster.scale(0)
    _fill(redis_url, idle_sessions, sizes.sessions)
    result.setup_seconds = time.monotonic() - began
    print(f"  {sizes.sessions} sessions, {sizes.idle} idle; set up in "
          f"{result.setup_seconds:.1f} s", flush=True)  # fmt: skip

    result.predecessor_seconds, result.predecessor_found = _predecessor(redis_url)
    asyncio.run(_ours(redis_url, cluster, sizes, result))
    result.deletes_seen = sum(cluster.deletes().values())
    _check(result)
    return result


async def _allocate_all(cluster: fake_cluster.FakeCluster, count: int) -> list[Session]:
    """One GameServer per idle person, allocated as the allocator does it."""
    headers = {**cluster.headers, "Content-Type": "application/json"}
    limit = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(number: int) -> Session:
            person = person_from_email(f"idle{number}@example.com")
            assert person is not None
            async with limit:
                body = allocation_request(person, fake_cluster.FLEET, time.time())
                async with http.post(cluster.allocation_url, json=body) as response:
                    status = (await response.json())["status"]
            if status["state"] != "Allocated":
                raise RuntimeError(f"fake_agones did not allocate: {status}")
            port = port_named(status["ports"], "sd")
            host = pod_ip(status["addresses"])
            assert port is not None and host is not None
            placement = Placement(status["gameServerName"], host, port, {"namespace": "default"})
            return Session(person.email, person.slug, "agones", placement, 0.0)

        return list(await asyncio.gather(*(one(n) for n in range(count))))


def _fill(redis_url: str, idle: list[Session], total: int) -> None:
    """The idle sessions (last activity long ago) and the active rest, in batches."""
    now = time.time()
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    sessions = [*idle, *(_active(n) for n in range(total - len(idle)))]
    for start in range(0, len(sessions), BATCH):
        with connection.pipeline(transaction=False) as pipe:
            for session in sessions[start : start + BATCH]:
                stamp = now - 2 * IDLE_TIMEOUT if session in idle else now - 60
                fields = {**_encode_session(session), "lastaccess": str(int(stamp))}
                pipe.hset(f"sda:session:{session.email}", mapping=fields)  # type: ignore[arg-type]
                pipe.zadd(ACTIVITY, {session.email: stamp})
                pipe.zadd(ALLOCATED, {session.email: stamp})
            pipe.execute()
    connection.close()


def _active(number: int) -> Session:
    email = f"active{number}@example.com"
    placement = Placement(f"active-{number}", "127.0.0.1", 1, {"namespace": "default"})
    return Session(email, f"active{number}", "agones", placement, time.time())


def _predecessor(redis_url: str) -> tuple[float, int]:
    """SCAN every key, one HGETALL each, `now - lastaccess >= timeout` (read-only here)."""
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    began = time.perf_counter()
    now = time.time()
    found = 0
    for key in connection.scan_iter(count=1000):
        if connection.type(key) != "hash":
            continue
        data = connection.hgetall(key)
        if now - int(data.get("lastaccess", now)) >= IDLE_TIMEOUT:
            found += 1
    seconds = time.perf_counter() - began
    connection.close()
    return seconds, found


async def _ours(
    redis_url: str, cluster: fake_cluster.FakeCluster, sizes: CruiseSizes, result: CruiseResult
) -> None:
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        str(cluster.kubeconfig), client_configuration=configuration
    )
    backend = AgonesBackend(KubeApi(fake_cluster.NAMESPACE, 10.0, configuration), "sd-webui")
    store = SessionStore.from_url(redis_url)
    options = CruiseOptions(
        idle_timeout=IDLE_TIMEOUT, concurrency=sizes.concurrency, reconcile=False
    )
    try:
        queried = time.perf_counter()
        await store.idle(time.time() - IDLE_TIMEOUT)
        result.candidates_query_seconds = time.perf_counter() - queried
        dry = await Reaper(store, backend, replace(options, dry_run=True)).run_pass()
        result.dry_run_seconds = dry.seconds
        summary = await Reaper(store, backend, options).run_pass()
    finally:
        await store.close()
        await backend.close()
    result.pass_seconds = summary.seconds
    result.reclaimed = summary.reclaimed
    result.failed = summary.failed


def _check(result: CruiseResult) -> None:
    problems = []
    if result.reclaimed != result.idle:
        problems.append(f"reclaimed {result.reclaimed} of {result.idle} idle sessions")
    if result.deletes_seen != result.idle:
        problems.append(f"the fake saw {result.deletes_seen} DELETEs for {result.idle}")
    if result.predecessor_found != result.idle:
        problems.append(f"the predecessor found {result.predecessor_found} of {result.idle}")
    if problems:
        raise RuntimeError("cruise benchmark is wrong: " + "; ".join(problems))
