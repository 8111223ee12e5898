"""Store-wide gauges: every replica reads the same figures from the store (GPU time, reclaims,
the last cruiser pass), and says when the store does not answer."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from allocator.gauges import StoreGauges
from allocator.store import SessionStore
from allocator.types import Placement, Session
from allocator.usage import UsageBook


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_gauges_carry_what_the_store_counted_whoever_counted_it() -> None:
    store = SessionStore.from_url("memory")
    start = time.time() - 120
    placement = Placement("gs-1", "10.0.0.1", 7860, {})
    await store.save(Session("ann@example.com", "ann", "static", placement, start), start)
    cruiser = UsageBook(store)  # as a cruiser elsewhere would
    await cruiser.add_busy({"ann@example.com": 30.0}, time.time())
    await cruiser.count_reclaims({"over_quota": 2})
    await cruiser.record_pass(1234.0, failures=1)
    await StoreGauges(store).refresh()  # counts the running session's time too
    allocated = sample("sda_gpu_allocated_seconds", scope="store")
    assert allocated is not None and allocated >= 120
    assert sample("sda_gpu_busy_seconds", scope="store") == 30.0
    assert sample("sda_reclaims", reason="over_quota") == 2
    assert sample("sda_cruise_last_pass_timestamp_seconds") == 1234.0
    assert sample("sda_cruise_last_pass_failures") == 1
    assert sample("sda_store_up") == 1
    assert sample("sda_active_sessions") == 1
    await store.close()


async def test_a_store_that_does_not_answer_sets_store_up_to_zero() -> None:
    dead = SessionStore.from_url("redis://127.0.0.1:1/0")
    await StoreGauges(dead).refresh()
    assert sample("sda_store_up") == 0
    await dead.close()
