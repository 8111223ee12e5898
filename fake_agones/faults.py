"""Faults and slowness the tests and benchmarks inject.

Allocation faults queue up in the order they were asked for and each takes one allocation
request (one that decoded and validated; a malformed request still gets its real answer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["fail", "hang", "contention", "lose"]
FAULT_KINDS: tuple[FaultKind, ...] = ("fail", "hang", "contention", "lose")


@dataclass(frozen=True)
class AllocationFault:
    """fail: a plain-text error as Agones writes one (500 by default); hang: no answer until
    the client gives up; contention: 201 with state Contention; lose: allocate, then close
    the connection without answering (Agones issue #607: the orphan this leaves)."""

    kind: FaultKind
    status: int = 500
    message: str = "could not update the selected GameServer"


class Faults:
    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency = latency_ms / 1000
        self.pod_ip_delay = 0.0
        self._pod_ips_now = asyncio.Event()  # set: delays still running end at once
        self._allocation: deque[AllocationFault] = deque()
        self.failing_deletes = 0  # the next N GameServer DELETEs answer 500 (etcd trouble)
        # Watch requests are counted, and while this is clear they wait before they are
        # looked at: a client away for exactly as long as a test needs, whatever its speed.
        self.watches_open = asyncio.Event()
        self.watches_open.set()
        self.watch_requests = 0

    def set_pod_ip_delay(self, seconds: float) -> None:
        """New pods get their IP this long after Ready; 0 also ends the delays under way,
        so a test can hold addresses back for exactly as long as it needs."""
        self.pod_ip_delay = seconds
        if seconds > 0:
            self._pod_ips_now.clear()
        else:
            self._pod_ips_now.set()

    async def pod_ip_wait(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._pod_ips_now.wait(), delay)

    def queue(self, fault: AllocationFault, count: int) -> None:
        self._allocation.extend([fault] * count)

    def next_allocation(self) -> AllocationFault | None:
        return self._allocation.popleft() if self._allocation else None

    def take_delete_failure(self) -> bool:
        if self.failing_deletes <= 0:
            return False
        self.failing_deletes -= 1
        return True

    def pending(self) -> int:
        return len(self._allocation)
