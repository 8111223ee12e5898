"""A person's next WebUI waits, bounded, for their previous pod to hand over on its way out."""

from __future__ import annotations

import asyncio
from typing import Any

from allocator.backends.agones.gameservers import EMAIL_ANNOTATION, USER_LABEL
from allocator.backends.agones.handover import FORGET_AFTER, Handovers


def gameserver(name: str, slug: str | None, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {}, "annotations": {}}
    if slug:
        metadata["labels"][USER_LABEL] = slug
        metadata["annotations"][EMAIL_ANNOTATION] = f"{slug}@example.com"
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-05T04:00:00Z"
    return {"metadata": metadata, "status": {"state": "Allocated"}}


async def test_the_next_webui_waits_until_the_stopping_pod_is_gone() -> None:
    handovers = Handovers(wait=60.0)
    handovers.observe("MODIFIED", gameserver("gs-1", "ann", deleting=True))
    assert handovers.waiting_for("ann") == ["gs-1"]
    assert handovers.waiting_for("bob") == []
    waiting = asyncio.create_task(handovers.handed_over("ann"))
    done, _ = await asyncio.wait({waiting}, timeout=0)  # lets it start waiting
    assert not done
    handovers.observe("DELETED", gameserver("gs-1", "ann", deleting=True))
    assert await waiting == []


async def test_a_pod_that_never_goes_holds_nobody_longer_than_the_wait() -> None:
    handovers = Handovers(wait=0.01)
    handovers.stopping("ann", "gs-1")
    assert await handovers.handed_over("ann") == ["gs-1"]


async def test_pods_of_nobody_and_pods_still_working_are_not_waited_for() -> None:
    handovers = Handovers()
    handovers.observe("MODIFIED", gameserver("gs-1", None, deleting=True))
    handovers.observe("MODIFIED", gameserver("gs-2", "ann"))
    assert handovers.waiting_for("ann") == [] and await handovers.handed_over("ann") == []


async def test_a_missed_deletion_is_forgotten_after_a_while() -> None:
    now = [1000.0]
    handovers = Handovers(clock=lambda: now[0])
    handovers.stopping("ann", "gs-1")
    now[0] += FORGET_AFTER + 1
    assert handovers.waiting_for("ann") == []
