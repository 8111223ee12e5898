"""Test and benchmark controls: the operations, and the same as HTTP under ``/_fake/``.

Everything here runs on the fake's event loop; ``FakeAgones`` calls these from other threads
through it. HTTP endpoints (JSON in and out, the same bearer token as the API):

  GET    /_fake/gameservers                        snapshot: name, state, labels, pod IP ...
  GET    /_fake/ready?count=N&timeout=S            wait for N Ready GameServers (504 if not)
  GET    /_fake/deletes                            DELETE requests answered 200, per name
  GET    /_fake/allocations                        every allocation request and its outcome
  POST   /_fake/gameservers/{name}/unhealthy       mark Unhealthy (the Fleet replaces it)
  POST   /_fake/gameservers/{name}/shutdown        SDK Shutdown (deleted, replaced)
  POST   /_fake/gameservers/{name}/crash           the WebUI dies; Unhealthy shortly after
  DELETE /_fake/gameservers/{name}                 delete, as kubectl would
  POST   /_fake/fleet          {"replicas": N}     scale the Fleet
  POST   /_fake/latency        {"ms": X}           delay every API request by X ms
  POST   /_fake/faults         {"kind": "fail"|"hang"|"contention"|"lose", "count": N,
                                "status": 500, "message": "..."}   next N allocations
  POST   /_fake/pod-ip-delay   {"seconds": S}      new Pods get their PodIP S s after Ready
  POST   /_fake/delete-failures {"count": N}       the next N GameServer DELETEs answer 500
  POST   /_fake/watch-history  {"size": N}         keep only N changes for watch resumption
  POST   /_fake/watches/close                      end every open watch stream
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from aiohttp import web

from fake_agones.cluster import Cluster
from fake_agones.faults import FAULT_KINDS, AllocationFault
from fake_agones.views import AllocationRecord, GameServerView

Check = Callable[[list[GameServerView]], bool]


class Controls:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    # --- operations ---------------------------------------------------------------------

    async def snapshot(self) -> list[GameServerView]:
        return [GameServerView.of(gs) for gs in self.cluster.store.view()]

    async def wait_until(self, check: Check, within: float) -> list[GameServerView]:
        async with asyncio.timeout(within):
            while True:
                views = await self.snapshot()
                if check(views):
                    return views
                await self.cluster.store.changed()

    async def wait_ready(self, count: int, within: float) -> list[GameServerView]:
        views = await self.wait_until(lambda vs: len(_ready_views(vs)) >= count, within)
        return _ready_views(views)

    async def set_state(self, name: str, state: str) -> bool:
        return self.cluster.gameservers.set_state(self._key(name), state)

    async def delete(self, name: str) -> bool:
        return self.cluster.gameservers.delete(self.cluster.namespace, name) is not None

    async def crash(self, name: str) -> bool:
        return await self.cluster.gameservers.crash(self._key(name))

    async def scale(self, replicas: int) -> None:
        self.cluster.fleet.scale(replicas)

    async def set_latency(self, ms: float) -> None:
        self.cluster.faults.latency = ms / 1000

    async def queue_fault(self, fault: AllocationFault, count: int) -> None:
        self.cluster.faults.queue(fault, count)

    async def set_pod_ip_delay(self, seconds: float) -> None:
        self.cluster.faults.set_pod_ip_delay(seconds)

    async def fail_deletes(self, count: int) -> None:
        self.cluster.faults.failing_deletes = count

    async def set_watch_history(self, size: int) -> None:
        self.cluster.store.set_history_size(size)

    async def close_watches(self) -> int:
        return self.cluster.store.close_watchers()

    async def hold_watches(self, held: bool) -> None:
        if held:
            self.cluster.faults.watches_open.clear()
        else:
            self.cluster.faults.watches_open.set()

    async def watch_requests(self) -> int:
        return self.cluster.faults.watch_requests

    async def delete_counts(self) -> dict[str, int]:
        return dict(self.cluster.gameservers.deletes)

    async def allocation_log(self) -> list[AllocationRecord]:
        return [dataclasses.replace(record) for record in self.cluster.allocations]

    def _key(self, name: str) -> tuple[str, str]:
        return self.cluster.namespace, name

    # --- HTTP ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/_fake/gameservers", self._snapshot)
        app.router.add_get("/_fake/ready", self._ready)
        app.router.add_get("/_fake/deletes", self._deletes)
        app.router.add_get("/_fake/allocations", self._allocations)
        app.router.add_post("/_fake/gameservers/{name}/{action}", self._act)
        app.router.add_delete("/_fake/gameservers/{name}", self._delete)
        app.router.add_post("/_fake/fleet", self._scale)
        app.router.add_post("/_fake/latency", self._latency)
        app.router.add_post("/_fake/faults", self._faults)
        app.router.add_post("/_fake/pod-ip-delay", self._pod_ip_delay)
        app.router.add_post("/_fake/delete-failures", self._delete_failures)
        app.router.add_post("/_fake/watch-history", self._watch_history)
        app.router.add_post("/_fake/watches/close", self._close_watches)

    async def _snapshot(self, request: web.Request) -> web.Response:
        return _json([dataclasses.asdict(view) for view in await self.snapshot()])

    async def _ready(self, request: web.Request) -> web.Response:
        count = int(request.query.get("count", "1"))
        try:
            views = await self.wait_ready(count, float(request.query.get("timeout", "30")))
        except TimeoutError:
            return _json({"error": f"fewer than {count} Ready GameServers"}, 504)
        return _json([dataclasses.asdict(view) for view in views])

    async def _deletes(self, request: web.Request) -> web.Response:
        return _json(await self.delete_counts())

    async def _allocations(self, request: web.Request) -> web.Response:
        return _json([dataclasses.asdict(record) for record in await self.allocation_log()])

    async def _act(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        if action == "unhealthy":
            done = await self.set_state(name, "Unhealthy")
        elif action == "shutdown":
            done = await self.set_state(name, "Shutdown")
        elif action == "crash":
            done = await self.crash(name)
        else:
            return _json({"error": f"unknown action {action}"}, 404)
        return _done(done, name)

    async def _delete(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return _done(await self.delete(name), name)

    async def _scale(self, request: web.Request) -> web.Response:
        await self.scale(int((await request.json())["replicas"]))
        return _json({"ok": True})

    async def _latency(self, request: web.Request) -> web.Response:
        await self.set_latency(float((await request.json())["ms"]))
        return _json({"ok": True})

    async def _faults(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        if body.get("kind") not in FAULT_KINDS:
            return _json({"error": f"kind must be one of {', '.join(FAULT_KINDS)}"}, 400)
        fault = AllocationFault(
            body["kind"],
            int(body.get("status", 500)),
            str(body.get("message", AllocationFault.message)),
        )
        await self.queue_fault(fault, int(body.get("count", 1)))
        return _json({"ok": True})

    async def _pod_ip_delay(self, request: web.Request) -> web.Response:
        await self.set_pod_ip_delay(float((await request.json())["seconds"]))
        return _json({"ok": True})

    async def _delete_failures(self, request: web.Request) -> web.Response:
        await self.fail_deletes(int((await request.json())["count"]))
        return _json({"ok": True})

    async def _watch_history(self, request: web.Request) -> web.Response:
        await self.set_watch_history(int((await request.json())["size"]))
        return _json({"ok": True})

    async def _close_watches(self, request: web.Request) -> web.Response:
        return _json({"closed": await self.close_watches()})


def _ready_views(views: list[GameServerView]) -> list[GameServerView]:
    return [view for view in views if view.state == "Ready" and not view.deleting]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _done(done: bool, name: str) -> web.Response:
    return _json({"ok": True}) if done else _json({"error": f"no GameServer {name}"}, 404)
