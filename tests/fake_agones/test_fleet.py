"""The Fleet keeps its replicas: new GameServers walk the lifecycle, lost ones are replaced."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from fake_agones import FakeAgones, GameServerView, NoBacking
from tests.fake_agones.conftest import (
    FAST,
    WAIT,
    Lingering,
    allocate,
    allocation,
    client_for,
    current_rv,
    get_fleet,
    watch_until,
)


def ready(views: list[GameServerView]) -> list[GameServerView]:
    return [view for view in views if view.state == "Ready" and not view.deleting]


def settled(count: int, without: str) -> Callable[[list[GameServerView]], bool]:
    """``count`` Ready GameServers, and ``without`` gone for good."""
    return lambda views: len(ready(views)) == count and without not in {v.name for v in views}


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[tuple[FakeAgones, client.CustomObjectsApi]]:
    server = FakeAgones(replicas=0, timings=FAST, backing=NoBacking(0.01)).start()
    yield server, client_for(server, tmp_path)
    server.stop()


def test_a_new_gameserver_walks_creating_starting_scheduled_requestready_ready(
    empty: tuple[FakeAgones, client.CustomObjectsApi],
) -> None:
    fake, api = empty
    rv = current_rv(api)
    fake.scale(1)
    seen = watch_until(
        api, lambda events: events[-1]["object"]["status"]["state"] == "Ready", resource_version=rv
    )
    assert [(e["type"], e["object"]["status"]["state"]) for e in seen] == [
        ("ADDED", "Creating"),
        ("MODIFIED", "Starting"),
        ("MODIFIED", "Scheduled"),
        ("MODIFIED", "RequestReady"),
        ("MODIFIED", "Ready"),
    ]
    creating, scheduled = seen[0]["object"]["status"], seen[2]["object"]["status"]
    assert (creating["address"], creating["addresses"], creating["ports"]) == ("", None, None)
    assert scheduled["nodeName"] == "gke-fake-gpu-node"
    assert scheduled["addresses"][-1] == {"address": "127.0.0.2", "type": "PodIP"}
    generations = [e["object"]["metadata"]["generation"] for e in seen]
    assert generations == [1, 2, 3, 4, 5]  # no status subresource: every status change counts


def test_a_deleted_gameserver_is_replaced_at_once(
    lingering: tuple[FakeAgones, Lingering],
) -> None:
    fake, pods = lingering
    gone = fake.snapshot()[0].name
    assert fake.delete(gone)
    views = fake.wait_until(lambda views: len(views) == 3, timeout=WAIT)  # before its Pod goes
    assert {view.deleting for view in views} == {True, False}
    pods.let_go()
    fake.wait_until(settled(2, gone), timeout=WAIT)


def test_an_unhealthy_gameserver_is_deleted_and_replaced(fake: FakeAgones) -> None:
    sick = fake.snapshot()[0].name
    assert fake.mark_unhealthy(sick)
    fake.wait_until(settled(2, sick), timeout=WAIT)
    assert fake.delete_counts() == {}  # the Fleet deleted it, not an API client


def test_a_shutdown_gameserver_is_deleted_and_replaced(fake: FakeAgones) -> None:
    done = fake.snapshot()[0].name
    assert fake.shutdown(done)
    fake.wait_until(settled(2, done), timeout=WAIT)


def test_scaling_down_never_removes_an_allocated_gameserver(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    kept = allocate(api, allocation())["status"]["gameServerName"]
    fake.scale(0)
    views = fake.wait_until(lambda views: len(views) == 1, timeout=WAIT)
    assert [(view.name, view.state) for view in views] == [(kept, "Allocated")]
    fleet = get_fleet(api)
    assert fleet["spec"]["replicas"] == 0
    assert fleet["metadata"]["generation"] == 2
    assert (fleet["status"]["replicas"], fleet["status"]["allocatedReplicas"]) == (1, 1)
    fake.scale(3)
    fake.wait_until(lambda views: len(ready(views)) == 2 and len(views) == 3, timeout=WAIT)


def test_pod_ips_are_the_lowest_free_loopback_addresses(fake: FakeAgones) -> None:
    first = {view.pod_ip: view.name for view in fake.snapshot()}
    assert set(first) == {"127.0.0.2", "127.0.0.3"}
    fake.delete(first["127.0.0.2"])
    fake.wait_until(settled(2, first["127.0.0.2"]), timeout=WAIT)
    # the replacement was created while the old Pod still held .2
    assert {view.pod_ip for view in fake.snapshot()} == {"127.0.0.3", "127.0.0.4"}
    fake.scale(3)
    views = fake.wait_ready(3, timeout=WAIT)
    assert {view.pod_ip for view in views} == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}
