"""Everything the fake cluster holds, living on the fake's event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fake_agones.backing import Backing
from fake_agones.controller import GameServerController, Timings
from fake_agones.faults import Faults
from fake_agones.fleet import FleetController
from fake_agones.store import ObjectStore
from fake_agones.views import AllocationRecord


class Cluster:
    def __init__(
        self,
        *,
        namespace: str,
        fleet: str,
        replicas: int,
        port: int,
        backing: Backing,
        faults: Faults,
        timings: Timings,
        history_size: int,
        data_dir: Path,
    ) -> None:
        self.namespace = namespace
        self.store = ObjectStore(history_size)
        self.faults = faults
        self.timings = timings
        self.gameservers = GameServerController(
            self.store, backing, faults, timings, port, data_dir
        )
        self.fleet = FleetController(self.store, self.gameservers, namespace, fleet, replicas)
        self.allocations: list[AllocationRecord] = []
        self.stopping = asyncio.Event()

    def start(self) -> None:
        self.fleet.start()

    async def stop(self) -> None:
        self.stopping.set()
        self.store.close_watchers()
        await self.fleet.stop()
        await self.gameservers.stop()
