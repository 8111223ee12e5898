"""Activity: throttled writes, busy leases for long work, exempt paths, outage tolerance."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from allocator.activity import ActivityTracker
from allocator.cache import SessionCache
from allocator.settings import DEFAULT_IDLE_EXEMPT
from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Placement, Session


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    opened = SessionStore.from_url("memory")
    yield opened
    await opened.close()


def session(email: str) -> Session:
    return Session(email, "slug", "static", Placement("gs", "127.0.0.1", 1), allocated_at=0.0)


def tracker_for(store: SessionStore, busy_after: float = 0.0) -> ActivityTracker:
    return ActivityTracker(store, DEFAULT_IDLE_EXEMPT.split(","), 5.0, busy_after, 30.0)


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/gradio_api/heartbeat/abc123", True),
        ("/heartbeat/abc", True),
        ("/internal/progress", True),
        ("/sdapi/v1/progress", True),
        ("/gradio_api/queue/join", False),
        ("/gradio_api/queue/data", False),
        ("/sdapi/v1/txt2img", False),
        ("/", False),
        ("/internal/progress/extra", False),
    ],
)
def test_default_exempt_paths(store: SessionStore, path: str, exempt: bool) -> None:
    assert tracker_for(store).is_exempt(path) is exempt


async def test_back_after_half_a_short_timeout_the_request_waits_for_its_write(
    store: SessionStore,
) -> None:
    """With a 6 s (pressure) timeout, someone back after 3 s of quiet is a return: the
    request has the write to wait for, so a pass in another replica sees them active."""
    await store.save(session("a@x.com"), now=100)
    tracker = ActivityTracker(store, [], 1.0, 1.0, 30.0, return_after=3.0)
    first = tracker.begin("a@x.com")
    assert first is not None
    await first
    tracker.end("a@x.com")
    assert await store.idle(cutoff=101) == []
    assert tracker.begin("a@x.com") is None  # written a moment ago: no wait
    tracker.end("a@x.com")


async def test_a_return_is_written_at_once_then_once_per_flush(store: SessionStore) -> None:
    await store.save(session("a@x.com"), now=100)
    tracker = tracker_for(store)
    tracker.begin("a@x.com")  # the first request this process sees from a@x.com
    tracker.end("a@x.com")
    await tracker.returns_written()
    assert await store.idle(cutoff=101) == []  # a cruiser pass now would keep the session

    await store.save(session("a@x.com"), now=200)  # mark the store to see later writes
    for _ in range(1000):
        tracker.begin("a@x.com")
        tracker.end("a@x.com")
    await tracker.returns_written()
    assert await store.idle(cutoff=201) == [("a@x.com", 200.0)]  # not per request
    await tracker.flush()
    assert await store.idle(cutoff=201) == []


async def test_long_work_holds_a_lease_until_it_ends(store: SessionStore) -> None:
    await store.save(session("a@x.com"), now=time.time())
    tracker = tracker_for(store, busy_after=0.0)
    tracker.begin("a@x.com")
    tracker.begin("a@x.com")  # a second overlapping request
    await tracker.flush()
    assert (await store.view("a@x.com", time.time())).busy  # type: ignore[union-attr]
    tracker.end("a@x.com")
    await tracker.flush()
    assert (await store.view("a@x.com", time.time())).busy  # type: ignore[union-attr]
    tracker.end("a@x.com")
    await tracker.flush()
    assert not (await store.view("a@x.com", time.time())).busy  # type: ignore[union-attr]


async def test_short_work_never_costs_a_lease(store: SessionStore) -> None:
    await store.save(session("a@x.com"), now=time.time())
    tracker = tracker_for(store, busy_after=60.0)
    tracker.begin("a@x.com")
    await tracker.flush()
    assert not (await store.view("a@x.com", time.time())).busy  # type: ignore[union-attr]
    tracker.end("a@x.com")


async def test_activity_survives_a_store_outage(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.save(session("a@x.com"), now=100)
    tracker = tracker_for(store)
    tracker.begin("a@x.com")
    tracker.end("a@x.com")

    async def down(stamps: dict[str, float]) -> None:
        raise StoreUnavailable("down")

    with monkeypatch.context() as patch:
        patch.setattr(store, "touch", down)
        with pytest.raises(StoreUnavailable):
            await tracker.flush()
    await tracker.flush()
    assert await store.idle(cutoff=101) == []


async def test_cache_serves_known_people_through_a_short_outage(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.save(session("a@x.com"), now=100)
    cache = SessionCache(store, ttl=0.0, outage_grace=60.0)
    assert await cache.lookup("a@x.com") == session("a@x.com")

    async def down(email: str) -> Session | None:
        raise StoreUnavailable("down")

    monkeypatch.setattr(store, "get", down)
    assert await cache.lookup("a@x.com") == session("a@x.com")
    with pytest.raises(StoreUnavailable):
        await cache.lookup("new@x.com")


async def test_cache_does_not_wait_on_a_store_that_just_failed(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.save(session("a@x.com"), now=100)
    cache = SessionCache(store, ttl=0.0, outage_grace=60.0)
    await cache.lookup("a@x.com")
    calls = []

    async def down(email: str) -> Session | None:
        calls.append(email)
        raise StoreUnavailable("down")

    monkeypatch.setattr(store, "get", down)
    for _ in range(5):
        assert await cache.lookup("a@x.com") == session("a@x.com")
    assert calls == ["a@x.com"]  # one try, then a second of not asking
    with pytest.raises(StoreUnavailable):
        await cache.lookup("new@x.com")  # unknown people still ask: nothing else to serve
    assert calls == ["a@x.com", "new@x.com"]


async def test_a_first_request_to_a_new_webui_has_no_write_to_wait_for(
    store: SessionStore,
) -> None:
    """Saving the mapping recorded activity: the request that follows an allocation does not
    write it again (one Redis round trip less for each of 50 people arriving at once)."""
    now = time.time()
    await store.save(session("a@x.com"), now=now)
    tracker = tracker_for(store)
    assert tracker.begin("a@x.com", recorded=now) is None
    tracker.end("a@x.com")
    assert tracker.begin("b@x.com", recorded=now - 3600) is not None  # allocated long ago
    tracker.end("b@x.com")
    await tracker.returns_written()
