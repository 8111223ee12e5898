"""Watching GameServers with kubernetes.watch.Watch, as the product does, and on the wire."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from fake_agones import FakeAgones, GameServerView, Timings
from tests.fake_agones.conftest import (
    WAIT,
    Event,
    allocate,
    allocation,
    client_for,
    confirmed,
    current_rv,
    delete_gs,
    new_watch,
    patch_gs,
    watch_gs,
    watch_until,
    wire_until,
)

USER = "sd-allocator/user"


def summary(events: list[Event]) -> list[tuple[str, str, str]]:
    return [
        (e["type"], e["object"]["metadata"]["name"], e["object"]["status"]["state"]) for e in events
    ]


def has(kind: str, name: str) -> Callable[[list[Event]], bool]:
    return lambda events: any(
        e["type"] == kind and e["object"]["metadata"]["name"] == name for e in events
    )


def test_a_watch_starts_with_every_gameserver_as_added(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    seen = watch_until(api, lambda events: len(events) == 2)
    assert sorted(summary(seen)) == sorted(("ADDED", v.name, "Ready") for v in fake.snapshot())


def test_a_watch_resumes_after_a_resource_version_with_every_change_since(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    rv = current_rv(api)
    name = allocate(api, allocation(labels={USER: "alice"}))["status"]["gameServerName"]
    confirmed(fake, name)  # the sidecar's change, before the delete on any machine
    delete_gs(api, name)
    fake.wait_until(
        lambda vs: name not in {v.name for v in vs} and len(_ready(vs)) == 2, timeout=WAIT
    )

    def enough(events: list[Event]) -> bool:
        return has("DELETED", name)(events) and len(_ready_events(events)) == 1

    seen = summary(watch_until(api, enough, resource_version=rv))
    mine = [event for event in seen if event[1] == name]
    assert mine == [
        ("MODIFIED", name, "Allocated"),  # allocated
        ("MODIFIED", name, "Allocated"),  # its outputs confirmed
        ("MODIFIED", name, "Allocated"),  # terminating
        ("DELETED", name, "Allocated"),
    ]
    (replacement,) = {event[1] for event in seen} - {name}
    assert [(kind, state) for kind, who, state in seen if who == replacement] == [
        ("ADDED", "Creating"),
        ("MODIFIED", "Starting"),
        ("MODIFIED", "Scheduled"),
        ("MODIFIED", "RequestReady"),
        ("MODIFIED", "Ready"),
    ]


def _ready(views: list[GameServerView]) -> list[GameServerView]:
    return [view for view in views if view.state == "Ready" and not view.deleting]


def _ready_events(events: list[Event]) -> list[Event]:
    return [e for e in events if e["object"]["status"]["state"] == "Ready"]


def test_resource_versions_only_grow(fake: FakeAgones, http: httpx.Client) -> None:
    fake.delete(fake.snapshot()[0].name)
    fake.wait_until(lambda views: len(views) == 2 and len(_ready(views)) == 2, timeout=WAIT)
    seen = wire_until(http, lambda events: len(_ready_events(events)) >= 3, resourceVersion="1")
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen]
    assert versions == sorted(set(versions))


def test_a_resource_version_older_than_the_history_is_410_expired(
    fake: FakeAgones, api: client.CustomObjectsApi, http: httpx.Client
) -> None:
    rv = current_rv(api)
    fake.set_watch_history(2)
    allocate(api, allocation())
    allocate(api, allocation())
    again = {"matchLabels": {"agones.dev/fleet": "sd-webui"}, "gameServerState": "Allocated"}
    allocate(api, allocation(again))  # a third change: the first is forgotten

    (event,) = wire_until(http, lambda events: False, resourceVersion=rv)
    assert event["type"] == "ERROR"
    status = event["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith(f"too old resource version: {rv} (")

    with pytest.raises(client.ApiException) as raised:
        watch_until(api, lambda events: True, resource_version=rv)
    assert raised.value.status == 410
    stream = watch_gs(new_watch(), api, resource_version=rv)  # no timeout: one retry, then raises
    with pytest.raises(client.ApiException) as raised:
        next(iter(stream))
    assert raised.value.status == 410


def test_a_future_resource_version_is_waited_for_then_refused(http: httpx.Client) -> None:
    started = time.monotonic()
    (event,) = wire_until(http, lambda events: False, resourceVersion="999999", timeoutSeconds="1")
    assert time.monotonic() - started >= 1
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 504
    assert event["object"]["message"].startswith("Too large resource version: 999999, current: ")


def test_selectors_turn_changes_into_added_and_deleted(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    rv = current_rv(api)
    name = allocate(api, allocation(labels={USER: "alice"}))["status"]["gameServerName"]
    confirmed(fake, name)  # the sidecar's change, before the label goes on any machine
    patch_gs(api, name, {"metadata": {"labels": {USER: None}}})

    by_label = watch_until(api, has("DELETED", name), resource_version=rv, label_selector=USER)
    assert [(kind, who) for kind, who, _ in summary(by_label)] == [
        ("ADDED", name),
        ("MODIFIED", name),
        ("DELETED", name),
    ]
    ready = watch_until(
        api, has("DELETED", name), resource_version=rv, field_selector="status.state=Ready"
    )
    assert [(kind, who) for kind, who, _ in summary(ready)] == [("DELETED", name)]
    assert ready[0]["object"]["status"]["state"] == "Ready"  # the last content that matched
    allocated = watch_until(
        api,
        lambda events: len(events) == 2,
        resource_version=rv,
        field_selector="status.state=Allocated",
    )
    assert [kind for kind, _, _ in summary(allocated)] == ["ADDED", "MODIFIED"]


def test_a_deleted_event_carries_the_last_state_at_a_new_resource_version(
    fake: FakeAgones, api: client.CustomObjectsApi, http: httpx.Client
) -> None:
    rv = current_rv(api)
    name = fake.snapshot()[0].name
    deleting = delete_gs(api, name)
    seen = wire_until(http, has("DELETED", name), resourceVersion=rv)
    last = seen[-1]["object"]["metadata"]
    assert last["deletionTimestamp"] == deleting["metadata"]["deletionTimestamp"]
    assert int(last["resourceVersion"]) > int(deleting["metadata"]["resourceVersion"])


@pytest.fixture
def bookmarking(tmp_path: Path) -> Iterator[tuple[FakeAgones, client.CustomObjectsApi]]:
    server = FakeAgones(replicas=1, timings=Timings(step=0.01, bookmark_interval=0.2)).start()
    server.wait_ready(1, timeout=WAIT)
    yield server, client_for(server, tmp_path)
    server.stop()


def test_bookmarks_carry_the_current_resource_version(
    bookmarking: tuple[FakeAgones, client.CustomObjectsApi],
) -> None:
    _, api = bookmarking
    rv = current_rv(api)
    stream = new_watch()
    seen = []
    for event in watch_gs(
        stream, api, allow_watch_bookmarks=True, resource_version=rv, timeout_seconds=int(WAIT)
    ):
        seen.append(event)
        if len(seen) == 2:
            stream.stop()
    assert [event["type"] for event in seen] == ["BOOKMARK", "BOOKMARK"]
    assert seen[0]["raw_object"] == {
        "apiVersion": "agones.dev/v1",
        "kind": "GameServer",
        "metadata": {"resourceVersion": rv},
    }
    assert stream.resource_version == rv


def test_a_live_watch_sees_changes_as_they_happen_and_ends_at_its_timeout(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    received: queue.Queue[tuple[str, str]] = queue.Queue()
    rv = current_rv(api)

    def follow() -> None:
        for event in watch_gs(new_watch(), api, resource_version=rv, timeout_seconds=1):
            received.put((event["type"], event["object"]["status"]["state"]))
        received.put(("END", ""))

    started = time.monotonic()
    thread = threading.Thread(target=follow)
    thread.start()
    allocate(api, allocation())
    assert received.get(timeout=WAIT) == ("MODIFIED", "Allocated")
    assert received.get(timeout=WAIT) == ("END", "")
    thread.join()
    assert time.monotonic() - started > 0.9  # the stream lasted its timeout, then ended


def test_closing_watches_ends_open_streams(fake: FakeAgones, api: client.CustomObjectsApi) -> None:
    done = threading.Event()
    rv = current_rv(api)

    def follow() -> None:
        for _ in watch_gs(new_watch(), api, resource_version=rv, timeout_seconds=600):
            pass
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    closed = 0
    deadline = time.monotonic() + WAIT
    while not closed and time.monotonic() < deadline:
        closed = fake.close_watches()
        time.sleep(0.02)
    assert closed == 1
    assert done.wait(WAIT)
