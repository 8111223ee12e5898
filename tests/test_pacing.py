"""Pacer: a few callers per turn of the event loop, in order; other work runs in between."""

from __future__ import annotations

import asyncio

from allocator.pacing import Pacer
from tests.support.turns import LoopTurns, one_turn


async def test_callers_go_on_a_few_per_turn_in_the_order_they_came() -> None:
    pacer = Pacer(per_turn=2)
    went: list[tuple[int, int]] = []  # (caller, turn)

    async with LoopTurns() as turns:

        async def caller(number: int) -> None:
            await pacer.turn()
            went.append((number, turns.count))

        await asyncio.gather(*(caller(n) for n in range(10)))
    assert [number for number, _ in went] == list(range(10))
    per_turn: dict[int, int] = {}
    for _, turn in went:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) == 2 and len(per_turn) == 5


async def test_a_caller_cancelled_while_waiting_takes_no_place() -> None:
    pacer = Pacer(per_turn=1)
    went: list[str] = []

    async def caller(name: str) -> None:
        await pacer.turn()
        went.append(name)

    first = asyncio.create_task(caller("first"))
    gone = asyncio.create_task(caller("gone"))
    last = asyncio.create_task(caller("last"))
    await one_turn()  # all three wait now
    gone.cancel()
    await asyncio.gather(first, last)
    assert went == ["first", "last"] and gone.cancelled()


def test_a_pacer_serves_the_next_event_loop_after_one_closed_with_callers_waiting() -> None:
    pacer = Pacer(per_turn=1)
    old = asyncio.new_event_loop()
    try:
        callers = [old.create_task(pacer.turn()) for _ in range(5)]
        old.run_until_complete(one_turn())  # one turn a caller: most still wait
        assert not callers[-1].done()
    finally:
        old.close()
    asyncio.run(asyncio.wait_for(pacer.turn(), 10))
