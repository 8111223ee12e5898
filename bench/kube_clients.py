"""Scenario: which Kubernetes client the allocator's hot paths should use (issue 15).

The same calls through each candidate, in this process, against the fake Agones API (its own
process, every request delayed by the API latency): `people` calls at once, `rounds` times,
for a GameServer GET and a GameServerAllocation create (on a Fleet with nothing Ready, so the
answer is UnAllocated and the fake's state never changes). What is measured is this process's
CPU time per call (`time.process_time`, all threads: the client's work, not the API's) and the
latency of each call.

Candidates:
- `sync`: the official `kubernetes` client on a thread pool (what the allocator used);
- `kubernetes.aio`: the asyncio client shipped in the same `kubernetes` package (37.x);
- `kubernetes_asyncio`: the separately maintained asyncio port;
- `aiohttp`: a plain request with the bearer token through one `aiohttp` session.
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from allocator.backends.agones.gameservers import allocation_request
from allocator.types import Person
from bench import fake_cluster
from bench.fake_cluster import FLEET, NAMESPACE, FakeCluster
from bench.procs import Processes, free_port

AGONES = ("agones.dev", "v1")
ALLOCATION = ("allocation.agones.dev", "v1")
JSON = {"Content-Type": "application/json"}
LATENCY_MS = 5.0

Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class ClientsLoad:
    people: int = 50
    rounds: int = 20


@dataclass
class Measured:
    cpu_ms_per_call: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Candidate:
    name = ""

    async def open(self, cluster: FakeCluster) -> None: ...

    async def close(self) -> None: ...

    async def get(self, name: str) -> Any: ...

    async def allocate(self, body: dict[str, Any]) -> Any: ...


class Sync(Candidate):
    name = "sync (kubernetes, thread pool)"

    async def open(self, cluster: FakeCluster) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(str(cluster.kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 16
        self._api = client.ApiClient(configuration)
        self._objects = client.CustomObjectsApi(self._api)
        self._pool = ThreadPoolExecutor(16)

    async def close(self) -> None:
        self._pool.shutdown()
        self._api.close()

    async def get(self, name: str) -> Any:
        return await self._run(
            self._objects.get_namespaced_custom_object, *AGONES, NAMESPACE, "gameservers", name
        )

    async def allocate(self, body: dict[str, Any]) -> Any:
        return await self._run(
            self._objects.create_namespaced_custom_object,
            *ALLOCATION, NAMESPACE, "gameserverallocations", body, _headers=JSON,
        )  # fmt: skip

    async def _run(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: method(*args, **kwargs))


class GeneratedAsync(Candidate):
    """An OpenAPI-generated asyncio client: ``package`` has ``client`` and ``config``."""

    package = ""
    create_options: dict[str, Any] = {}

    async def open(self, cluster: FakeCluster) -> None:
        client = importlib.import_module(f"{self.package}.client")
        config = importlib.import_module(f"{self.package}.config")
        configuration = client.Configuration()
        await config.load_kube_config(str(cluster.kubeconfig), client_configuration=configuration)
        self._api = client.ApiClient(configuration)
        self._objects = client.CustomObjectsApi(self._api)

    async def close(self) -> None:
        await self._api.close()

    async def get(self, name: str) -> Any:
        return await self._objects.get_namespaced_custom_object(
            *AGONES, NAMESPACE, "gameservers", name
        )

    async def allocate(self, body: dict[str, Any]) -> Any:
        return await self._objects.create_namespaced_custom_object(
            *ALLOCATION, NAMESPACE, "gameserverallocations", body, **self.create_options
        )


class KubernetesAio(GeneratedAsync):
    name = package = "kubernetes.aio"
    create_options = {"_headers": JSON}


class KubernetesAsyncio(GeneratedAsync):
    name = package = "kubernetes_asyncio"


class PlainAiohttp(Candidate):
    name = "aiohttp (plain requests)"

    async def open(self, cluster: FakeCluster) -> None:
        text = await asyncio.to_thread(Path(cluster.kubeconfig).read_text)
        user = yaml.safe_load(text)["users"][0]["user"]
        self._base = cluster.url
        headers = {"Authorization": f"Bearer {user['token']}", "Accept": "application/json"}
        self._session = aiohttp.ClientSession(headers=headers)

    async def close(self) -> None:
        await self._session.close()

    async def get(self, name: str) -> Any:
        path = f"/apis/{'/'.join(AGONES)}/namespaces/{NAMESPACE}/gameservers/{name}"
        async with self._session.get(self._base + path) as response:
            response.raise_for_status()
            return await response.json()

    async def allocate(self, body: dict[str, Any]) -> Any:
        path = f"/apis/{'/'.join(ALLOCATION)}/namespaces/{NAMESPACE}/gameserverallocations"
        async with self._session.post(self._base + path, json=body) as response:
            response.raise_for_status()
            return await response.json()


CANDIDATES: tuple[type[Candidate], ...] = (Sync, KubernetesAio, KubernetesAsyncio, PlainAiohttp)


async def measure(calls: list[Call]) -> tuple[float, list[float]]:
    """(CPU seconds of this process, each call's latency in ms) for the calls made at once."""

    async def timed(call: Call) -> float:
        began = time.perf_counter()
        await call()
        return (time.perf_counter() - began) * 1000

    cpu = time.process_time()
    latencies = await asyncio.gather(*(timed(call) for call in calls))
    return time.process_time() - cpu, list(latencies)


async def run_candidate(
    kind: type[Candidate], cluster: FakeCluster, load: ClientsLoad, gameserver: str
) -> dict[str, Measured]:
    candidate = kind()
    await candidate.open(cluster)
    person = Person("storm@example.com", "storm-example-com")
    body = allocation_request(person, FLEET, time.time())
    body["spec"]["selectors"] = [{"matchLabels": {"agones.dev/fleet": "none-ready"}}]
    results: dict[str, Measured] = {}
    try:
        for what, call in (
            ("GET GameServer", lambda: candidate.get(gameserver)),
            ("create GameServerAllocation", lambda: candidate.allocate(body)),
        ):
            await measure([call])  # warm: connections, lazy imports
            measured = Measured()
            cpu_total = 0.0
            for _ in range(load.rounds):
                cpu, latencies = await measure([call] * load.people)
                cpu_total += cpu
                measured.latencies_ms += latencies
            measured.cpu_ms_per_call = cpu_total * 1000 / (load.rounds * load.people)
            results[what] = measured
    finally:
        await candidate.close()
    return results


def run(cluster: FakeCluster, load: ClientsLoad) -> dict[str, dict[str, Measured]]:
    gameserver = str(cluster.game_servers()[0]["name"])
    return {
        kind.name: asyncio.run(run_candidate(kind, cluster, load, gameserver))
        for kind in CANDIDATES
    }


def to_json(results: dict[str, dict[str, Measured]], load: ClientsLoad) -> dict[str, Any]:
    return {
        "load": {"people": load.people, "rounds": load.rounds, "api_latency_ms": LATENCY_MS},
        "clients": {
            name: {
                what: {
                    "cpu_ms_per_call": round(measured.cpu_ms_per_call, 3),
                    "p50_ms": round(statistics.median(measured.latencies_ms), 2),
                    "p99_ms": round(measured.percentile(99), 2),
                    "calls": len(measured.latencies_ms),
                }
                for what, measured in calls.items()
            }
            for name, calls in results.items()
        },
    }


def table(data: dict[str, Any]) -> str:
    """The comparison as a Markdown table, from `to_json`'s form."""
    lines = ["| client | call | CPU ms per call | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for name, calls in data["clients"].items():
        for what, measured in calls.items():
            lines.append(
                f"| {name} | {what} | {measured['cpu_ms_per_call']:.2f} | "
                f"{measured['p50_ms']:.1f} | {measured['p99_ms']:.1f} |"
            )
    return "\n".join(lines)


def method(data: dict[str, Any]) -> str:
    load = data["load"]
    return (
        f"The Kubernetes calls of the hot paths through each candidate client, in one process, "
        f"against the fake Agones API answering every request after {load['api_latency_ms']:g} "
        f"ms: {load['people']} calls at once, {load['rounds']} times, for a GameServer GET and a "
        "GameServerAllocation create (answered UnAllocated, so nothing changes). CPU is the "
        "calling process's own (`time.process_time`, all its threads); with many calls at once "
        "it is what queues them on one core, so it shows in their latency too. The allocator "
        "now sends these calls with plain aiohttp requests (`allocator/backends/agones/"
        "transport.py`), the official package still loading the credentials and TLS settings."
    )


def run_in(processes: Processes, load: ClientsLoad) -> dict[str, Any]:
    cluster = fake_cluster.start(processes, free_port(), replicas=1, latency_ms=LATENCY_MS)
    return to_json(run(cluster, load), load)


def main() -> None:
    """`python -m bench.kube_clients`: the comparison alone, printed as a Markdown table."""
    with Processes(Path(tempfile.mkdtemp(prefix="sda-kube-clients-"))) as processes:
        print(table(run_in(processes, ClientsLoad())))


if __name__ == "__main__":
    main()
