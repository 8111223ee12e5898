"""A fresh fake cluster per test, and the real `kubernetes` client pointed at it.

The client's custom-object calls answer ``object`` and its watch and kubeconfig loaders are not
annotated: the helpers here call them as the product does and give the answers their JSON type.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypedDict, cast

import httpx
import pytest
from kubernetes import client, config, watch

from fake_agones import Backing, FakeAgones, GameServerView, NoBacking, Pod, Timings

JSON = {"Content-Type": "application/json"}
FAST = Timings(step=0.01, delete_delay=0.05, unhealthy_delay=0.05)
WAIT = 30.0
"""Seconds to wait for something that takes milliseconds: a deadline no machine comes near."""
OUTPUTS_ANNOTATION = "agones.dev/sdk-sd-allocator-outputs"
"""What the fake's sidecar sets on a GameServer some time after an allocation labels it."""

Json = dict[str, Any]
Event = dict[str, Any]


class Resource(TypedDict):
    group: str
    version: str
    plural: str


GSA: Resource = {
    "group": "allocation.agones.dev",
    "version": "v1",
    "plural": "gameserverallocations",
}
GS: Resource = {"group": "agones.dev", "version": "v1", "plural": "gameservers"}


@pytest.fixture
def fake() -> Iterator[FakeAgones]:
    server = FakeAgones(replicas=2, timings=FAST, backing=NoBacking(0.01)).start()
    server.wait_ready(2, timeout=WAIT)
    yield server
    server.stop()


class Lingering:
    """A backing whose Pods, once stopped, linger until the test lets them go.

    ``stop`` stops the workload at once but returns only after `let_go`, and the GameServer's
    finalizer waits for it: a deleted GameServer stays terminating for as long as the test needs,
    on any machine. With ``crashed_only``, only Pods whose workload crashed linger (a crash stops
    the workload itself first, which must not wait)."""

    def __init__(self, inner: Backing, crashed_only: bool = False) -> None:
        self.inner = inner
        self.crashed_only = crashed_only
        self._gone = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def let_go(self) -> None:
        """From the test's thread: every lingering Pod goes, and any stopped later too."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._gone.set)

    async def start(self, pod: Pod) -> None:
        self._loop = asyncio.get_running_loop()
        await self.inner.start(pod)

    async def stop(self, pod: Pod) -> None:
        await self.inner.stop(pod)
        if not self.crashed_only or pod.exited.is_set():
            await self._gone.wait()


@pytest.fixture
def lingering() -> Iterator[tuple[FakeAgones, Lingering]]:
    """Like `fake`, but a deleted GameServer stays terminating until ``let_go()``."""
    backing = Lingering(NoBacking(0.01))
    server = FakeAgones(replicas=2, timings=FAST, backing=backing).start()
    server.wait_ready(2, timeout=WAIT)
    yield server, backing
    backing.let_go()
    server.stop()


class _LoadKubeConfig(Protocol):
    def __call__(self, *, config_file: str, client_configuration: client.Configuration) -> None: ...


def client_for_kubeconfig(path: Path) -> client.CustomObjectsApi:
    """Through a kubeconfig, as the product loads one, without touching the global default."""
    configuration = client.Configuration()
    load = cast(_LoadKubeConfig, config.load_kube_config)
    load(config_file=str(path), client_configuration=configuration)
    return client.CustomObjectsApi(client.ApiClient(configuration))


def client_for(server: FakeAgones, directory: Path) -> client.CustomObjectsApi:
    return client_for_kubeconfig(server.write_kubeconfig(directory / "kubeconfig"))


@pytest.fixture
def api(fake: FakeAgones, tmp_path: Path) -> client.CustomObjectsApi:
    return client_for(fake, tmp_path)


@pytest.fixture
def http(fake: FakeAgones) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fake.token}"}
    with httpx.Client(base_url=fake.url, headers=headers, timeout=WAIT) as session:
        yield session


# --- the custom-object API, typed ---------------------------------------------------------


def as_json(answer: object) -> Json:
    """A custom-object answer: JSON, though the client types it ``object``."""
    assert isinstance(answer, dict), answer
    return answer


def get_gs(api: client.CustomObjectsApi, name: str) -> Json:
    return as_json(api.get_namespaced_custom_object(**GS, namespace="default", name=name))


def list_gs(api: client.CustomObjectsApi, **options: Any) -> Json:
    return as_json(api.list_namespaced_custom_object(**GS, namespace="default", **options))


def current_rv(api: client.CustomObjectsApi) -> str:
    rv: str = list_gs(api)["metadata"]["resourceVersion"]
    return rv


def delete_gs(api: client.CustomObjectsApi, name: str, **options: Any) -> Json:
    return as_json(
        api.delete_namespaced_custom_object(**GS, namespace="default", name=name, **options)
    )


def patch_gs(api: client.CustomObjectsApi, name: str, body: Json) -> Json:
    return as_json(
        api.patch_namespaced_custom_object(**GS, namespace="default", name=name, body=body)
    )


def get_fleet(api: client.CustomObjectsApi, name: str = "sd-webui") -> Json:
    return as_json(api.get_namespaced_custom_object("agones.dev", "v1", "default", "fleets", name))


def error_body(error: client.ApiException) -> Json:
    assert error.body is not None
    body: Json = json.loads(error.body)
    return body


def content_type(error: client.ApiException) -> str:
    assert error.headers is not None
    value: str = error.headers["Content-Type"]
    return value


def allocation(
    *selectors: dict[str, Any],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> Json:
    """A GameServerAllocation body; by default: any Ready GameServer of the fleet."""
    chosen = list(selectors) or [{"matchLabels": {"agones.dev/fleet": "sd-webui"}}]
    body: Json = {"selectors": chosen, **spec}
    if labels or annotations:
        body["metadata"] = {"labels": labels or {}, "annotations": annotations or {}}
    return {"apiVersion": "allocation.agones.dev/v1", "kind": "GameServerAllocation", "spec": body}


def allocate(api: client.CustomObjectsApi, body: Json, namespace: str = "default") -> Json:
    return as_json(
        api.create_namespaced_custom_object(
            **GSA, namespace=namespace, body=body, _headers=dict(JSON)
        )
    )


def confirmed(fake: FakeAgones, name: str) -> list[GameServerView]:
    """Once the fake's sidecar has confirmed the outputs folder of the allocated ``name``: a
    test that counts a GameServer's changes waits for this one, which comes on its own."""
    return fake.wait_until(
        lambda views: any(v.name == name and OUTPUTS_ANNOTATION in v.annotations for v in views),
        timeout=WAIT,
    )


# --- watching -----------------------------------------------------------------------------


class KubeWatch(Protocol):
    """The part of kubernetes.watch.Watch the tests use."""

    resource_version: str | None

    def stream(self, func: Callable[..., object], *args: Any, **kwargs: Any) -> Iterator[Event]: ...

    def stop(self) -> None: ...


def new_watch() -> KubeWatch:
    return cast(Callable[[], KubeWatch], watch.Watch)()


def watch_gs(stream: KubeWatch, api: client.CustomObjectsApi, **options: Any) -> Iterator[Event]:
    """``stream.stream`` over the GameServers of namespace default, as the product watches."""
    return stream.stream(api.list_namespaced_custom_object, **GS, namespace="default", **options)


def watch_until(
    api: client.CustomObjectsApi,
    enough: Callable[[list[Event]], bool],
    timeout: int = int(WAIT),
    **options: Any,
) -> list[Event]:
    """Events of one watch (kubernetes.watch.Watch) until ``enough(events)`` holds."""
    stream = new_watch()
    seen: list[Event] = []
    for event in watch_gs(stream, api, timeout_seconds=timeout, **options):
        seen.append(event)
        if enough(seen):
            stream.stop()
            return seen
    raise AssertionError(f"the watch ended before enough events: {seen}")


def wire_until(
    http: httpx.Client, enough: Callable[[list[Event]], bool], **params: str
) -> list[Event]:
    """Raw watch events off the wire until ``enough(events)`` holds or the stream ends."""
    seen: list[Event] = []
    query = {"watch": "1", "timeoutSeconds": str(int(WAIT)), **params}
    with http.stream("GET", "/apis/agones.dev/v1/gameservers", params=query) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            seen.append(json.loads(line))
            if enough(seen):
                break
    return seen
