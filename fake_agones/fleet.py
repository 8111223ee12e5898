"""The Fleet and its GameServerSet controller, for one Fleet.

From agones ``pkg/gameserversets/controller.go`` (computeReconciliationAction, computeStatus):
GameServers being deleted (deletionTimestamp or Shutdown) do not count; Unhealthy ones are
deleted and do not count; Allocated and Reserved ones count and are never removed on
scale-down; fewer than ``replicas`` -> create, more -> delete surplus, not-yet-Ready ones
first. Status counts what is not being deleted. The Fleet has a status subresource, so only
spec changes bump its generation; every status change takes a new resourceVersion.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fake_agones import objects
from fake_agones.controller import GameServerController
from fake_agones.objects import FLEET_LABEL, is_being_deleted, labels_of, state_of
from fake_agones.store import ObjectStore, clone

Json = dict[str, Any]
_KEPT = ("Allocated", "Reserved")


class FleetController:
    def __init__(
        self,
        store: ObjectStore,
        gameservers: GameServerController,
        namespace: str,
        name: str,
        replicas: int,
    ) -> None:
        self.store = store
        self.gameservers = gameservers
        self.namespace = namespace
        self.name = name
        self.owner = {"name": f"{name}-{objects.suffix()}", "uid": objects.new_uid()}
        self._fleet = objects.fleet(namespace, name, replicas, gameservers.port)
        self._fleet["metadata"]["resourceVersion"] = str(store.next_rv())
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        store.add_listener(lambda _change: self._kick.set())

    @property
    def replicas(self) -> int:
        replicas: int = self._fleet["spec"]["replicas"]
        return replicas

    def fleet(self) -> Json:
        return clone(self._fleet)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._kick.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def scale(self, replicas: int) -> None:
        if replicas != self.replicas:
            self._fleet["spec"]["replicas"] = replicas
            self._fleet["metadata"]["generation"] += 1
            self._fleet["metadata"]["resourceVersion"] = str(self.store.next_rv())
        self._kick.set()

    async def _run(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            self.reconcile()

    def reconcile(self) -> None:
        mine = [
            gs
            for gs in self.store.view(self.namespace)
            if labels_of(gs).get(FLEET_LABEL) == self.name
        ]
        for gs in mine:
            if state_of(gs) == "Unhealthy":
                self.gameservers.delete(self.namespace, gs["metadata"]["name"])
        up = [gs for gs in mine if not is_being_deleted(gs) and state_of(gs) != "Unhealthy"]
        for _ in range(self.replicas - len(up)):
            self.gameservers.create(
                objects.game_server(self.namespace, self.name, self.owner, self.gameservers.port)
            )
        for gs in _surplus(up, len(up) - self.replicas):
            self.gameservers.delete(self.namespace, gs["metadata"]["name"])
        self._set_status(up)

    def _set_status(self, up: list[Json]) -> None:
        states = [state_of(gs) for gs in up]
        status = {
            **self._fleet["status"],
            "allocatedReplicas": states.count("Allocated"),
            "readyReplicas": states.count("Ready"),
            "replicas": len(up),
            "reservedReplicas": states.count("Reserved"),
        }
        if status != self._fleet["status"]:
            self._fleet["status"] = status
            self._fleet["metadata"]["resourceVersion"] = str(self.store.next_rv())


def _surplus(up: list[Json], count: int) -> list[Json]:
    if count <= 0:
        return []
    removable = [gs for gs in up if state_of(gs) not in _KEPT]
    removable.sort(key=lambda gs: (state_of(gs) == "Ready", gs["metadata"]["creationTimestamp"]))
    return removable[:count]
