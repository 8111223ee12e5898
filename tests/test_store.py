"""SessionStore on real Redis and on the embedded store: same behaviour, same answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Placement, Progress, Session, State
from tests.support.processes import RedisServer


@pytest.fixture(params=["redis", "memory"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url
    else:
        url = "memory"
    opened = SessionStore.from_url(url)
    yield opened
    await opened.close()


def session(email: str, server: str = "gs-1") -> Session:
    return Session(
        email,
        email.split("@")[0],
        "static",
        Placement(server, "10.0.0.1", 7860, {"pid": 42}),
        allocated_at=1000.0,
    )


async def test_mapping_round_trips_and_drop_is_conditional(store: SessionStore) -> None:
    await store.save(session("a@x.com"), now=100)
    assert await store.get("a@x.com") == session("a@x.com")
    assert not await store.drop("a@x.com", server="someone-elses")
    assert await store.get("a@x.com") is not None
    assert await store.drop("a@x.com", server="gs-1")
    assert await store.get("a@x.com") is None
    assert await store.count() == 0


async def test_idle_query_returns_only_the_idle_ones_oldest_first(store: SessionStore) -> None:
    for index in range(50):
        await store.save(session(f"u{index}@x.com"), now=1000 + index)
    idle = await store.idle(cutoff=1004.5)
    assert [email for email, _ in idle] == [f"u{i}@x.com" for i in range(5)]
    assert await store.idle(cutoff=1004.5, limit=2) == idle[:2]


async def test_touch_only_moves_forward_and_never_resurrects(store: SessionStore) -> None:
    await store.save(session("a@x.com"), now=100)
    await store.touch({"a@x.com": 200, "gone@x.com": 300})
    await store.touch({"a@x.com": 150})
    assert await store.idle(cutoff=1000) == [("a@x.com", 200.0)]
    assert await store.get("gone@x.com") is None


async def test_busy_leases_expire_and_are_per_holder(store: SessionStore) -> None:
    await store.save(session("a@x.com"), now=time.time())
    now = time.time()
    await store.hold_busy(["a@x.com"], "replica-1", now + 30)
    await store.hold_busy(["a@x.com"], "replica-2", now + 30)
    view = await store.view("a@x.com", now)
    assert view is not None and view.busy
    await store.release_busy(["a@x.com"], "replica-1")
    assert (await store.view("a@x.com", now)).busy  # type: ignore[union-attr]
    await store.release_busy(["a@x.com"], "replica-2")
    assert not (await store.view("a@x.com", now)).busy  # type: ignore[union-attr]
    await store.hold_busy(["a@x.com"], "crashed-replica", now - 1)
    assert not (await store.view("a@x.com", now)).busy  # type: ignore[union-attr]


async def test_lock_admits_one_holder_and_only_it_can_renew_or_release(store: SessionStore) -> None:
    results = await asyncio.gather(*(store.acquire_lock("a@x.com", f"t{i}", 5) for i in range(20)))
    assert results.count(True) == 1
    winner = f"t{results.index(True)}"
    assert not await store.renew_lock("a@x.com", "not-the-winner", 5)
    assert await store.renew_lock("a@x.com", winner, 5)
    await store.release_lock("a@x.com", "not-the-winner")
    assert await store.lock_held("a@x.com")
    await store.release_lock("a@x.com", winner)
    assert not await store.lock_held("a@x.com")


async def test_lock_expires(store: SessionStore) -> None:
    assert await store.acquire_lock("a@x.com", "t", 0.2)
    assert not await store.acquire_lock("a@x.com", "u", 5)  # held
    deadline = time.monotonic() + 30
    while not await store.acquire_lock("a@x.com", "u", 5):  # until the expiry frees it
        assert time.monotonic() < deadline, "the lock never expired"
        await asyncio.sleep(0.05)


async def test_progress_is_kept_and_cleared_by_a_saved_session(store: SessionStore) -> None:
    await store.set_progress("a@x.com", Progress(State.STARTING, "Starting", 5.0), ttl=10)
    assert await store.get_progress("a@x.com") == Progress(State.STARTING, "Starting", 5.0)
    await store.save(session("a@x.com"), now=10)
    assert await store.get_progress("a@x.com") is None


async def test_unreachable_redis_is_one_clear_error_without_the_password() -> None:
    store = SessionStore.from_url("redis://:hunter2@127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable) as error:
        await store.get("a@x.com")
    assert "hunter2" not in str(error.value)
    await store.close()


async def test_save_with_a_lock_token_only_while_that_lock_is_held(store: SessionStore) -> None:
    assert await store.acquire_lock("a@x.com", "mine", 5)
    assert await store.save(session("a@x.com", "gs-1"), now=10, lock_token="mine")
    assert (await store.get("a@x.com")) == session("a@x.com", "gs-1")
    await store.release_lock("a@x.com", "mine")
    assert await store.acquire_lock("a@x.com", "theirs", 5)
    assert not await store.save(session("a@x.com", "gs-2"), now=11, lock_token="mine")
    assert (await store.get("a@x.com")) == session("a@x.com", "gs-1")
    assert await store.idle(cutoff=100) == [("a@x.com", 10.0)]
