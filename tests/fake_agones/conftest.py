"""A fresh fake cluster per test, and the real `kubernetes` client pointed at it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config, watch

from fake_agones import FakeAgones, NoBacking, Timings

JSON = {"Content-Type": "application/json"}
GSA = {"group": "allocation.agones.dev", "version": "v1", "plural": "gameserverallocations"}
GS = {"group": "agones.dev", "version": "v1", "plural": "gameservers"}
FAST = Timings(step=0.01, delete_delay=0.05, unhealthy_delay=0.05)


@pytest.fixture
def fake() -> Iterator[FakeAgones]:
    server = FakeAgones(replicas=2, timings=FAST, backing=NoBacking(0.01)).start()
    server.wait_ready(2, timeout=10)
    yield server
    server.stop()


def client_for(server: FakeAgones, directory: Path) -> client.CustomObjectsApi:
    """Through a kubeconfig, as the product loads one, without touching the global default."""
    path = server.write_kubeconfig(directory / "kubeconfig")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    return client.CustomObjectsApi(client.ApiClient(configuration))


@pytest.fixture
def api(fake: FakeAgones, tmp_path: Path) -> client.CustomObjectsApi:
    return client_for(fake, tmp_path)


@pytest.fixture
def http(fake: FakeAgones) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fake.token}"}
    with httpx.Client(base_url=fake.url, headers=headers, timeout=10) as session:
        yield session


def allocation(
    *selectors: dict[str, Any],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A GameServerAllocation body; by default: any Ready GameServer of the fleet."""
    chosen = list(selectors) or [{"matchLabels": {"agones.dev/fleet": "sd-webui"}}]
    body: dict[str, Any] = {"selectors": chosen, **spec}
    if labels or annotations:
        body["metadata"] = {"labels": labels or {}, "annotations": annotations or {}}
    return {"apiVersion": "allocation.agones.dev/v1", "kind": "GameServerAllocation", "spec": body}


def allocate(api: client.CustomObjectsApi, body: dict[str, Any], namespace: str = "default") -> Any:
    return api.create_namespaced_custom_object(
        **GSA, namespace=namespace, body=body, _headers=dict(JSON)
    )


Event = dict[str, Any]


def watch_until(
    api: client.CustomObjectsApi,
    enough: Callable[[list[Event]], bool],
    timeout: int = 5,
    **options: Any,
) -> list[Event]:
    """Events of one watch (kubernetes.watch.Watch) until ``enough(events)`` holds."""
    stream = watch.Watch()
    seen: list[Event] = []
    for event in stream.stream(
        api.list_namespaced_custom_object,
        **GS,
        namespace="default",
        timeout_seconds=timeout,
        **options,
    ):
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
    query = {"watch": "1", "timeoutSeconds": "5", **params}
    with http.stream("GET", "/apis/agones.dev/v1/gameservers", params=query) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            seen.append(json.loads(line))
            if enough(seen):
                break
    return seen
