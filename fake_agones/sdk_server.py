"""A pod's Agones SDK server: the REST gateway the sidecar calls, bridged to the fake's store.

In a real pod the ``sdk-server`` container listens on ``localhost:9358`` and reads and writes its
own GameServer through the Kubernetes API; here one `PodSDK` per pod listens on a free loopback
port (the pod's ``AGONES_SDK_HTTP_PORT``) and reads and writes the fake's store directly, so what
the sidecar does is what the allocator sees through its real Kubernetes watch. Paths and JSON
follow agones ``pkg/sdkserver/sdkserver.go`` and ``cmd/sdk-server/main.go`` (grpc-gateway with
``UseProtoNames`` and ``EmitUnpopulated``):

- ``GET /gameserver``: the GameServer as ``convert`` makes it (snake_case ``object_meta``,
  ``spec.health``, ``status``; int64 fields are strings, as protojson writes them);
- ``GET /watch/gameserver``: NDJSON ``{"result": GameServer}``, the GameServer now and then after
  every change to it; it ends when the GameServer is gone or the server closes;
- ``POST /ready``: state RequestReady, which the controller turns into Ready (``updateState``:
  not for a GameServer being deleted, shut down or Unhealthy);
- ``POST /health``: counted; missed pings are not modelled;
- ``POST /shutdown``: state Shutdown, after which the controller deletes the GameServer;
- ``PUT /metadata/annotation`` and ``/metadata/label`` with ``{"key": k, "value": v}``:
  ``agones.dev/sdk-<k>`` on the GameServer. The real server applies these in batches every
  ``requestsRateLimit`` (500 ms); here at once, which only makes tests faster.

It listens only once the pod's backing asks (`PodSDK.listen`), so pods without a sidecar cost
no socket, and readiness stays the controller's business for them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from background import serve
from fake_agones.objects import is_being_deleted, state_of
from fake_agones.store import Change, ObjectStore

Json = dict[str, Any]
Key = tuple[str, str]
SDK_PREFIX = "agones.dev/sdk-"
CANNOT_LEAVE = frozenset({"Unhealthy"})
"""States an SDK state change never leaves (besides being deleted or shut down)."""


class PodSDK:
    """One pod's SDK server. ``request_ready`` is the controller's answer to ``POST /ready``."""

    def __init__(
        self, store: ObjectStore, key: Key, request_ready: Callable[[], None], host: str
    ) -> None:
        self.store = store
        self.key = key
        self.host = host
        self.health_pings = 0
        self._port = 0
        self._request_ready = request_ready
        self._streams: set[asyncio.Queue[Json | None]] = set()
        self._runner: web.AppRunner | None = None

    @property
    def listening(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int | None:
        return self._port if self._runner is not None else None

    async def listen(self) -> int:
        """Start serving (once); the port, for the pod's ``AGONES_SDK_HTTP_PORT``."""
        if self._runner is None:
            self._runner, self._port = await serve(
                self._application(), self.host, 0, shutdown_timeout=1.0
            )
            self.store.add_listener(self._on_change)
        return self._port

    async def close(self) -> None:
        """End every watch stream and stop listening, as the pod's sdk-server container goes."""
        self._end_streams()
        if self._runner is not None:
            self.store.remove_listener(self._on_change)
            await self._runner.cleanup()
            self._runner = None

    def _application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/gameserver", self._get_gameserver)
        app.router.add_get("/watch/gameserver", self._watch)
        app.router.add_post("/ready", self._ready)
        app.router.add_post("/health", self._health)
        app.router.add_post("/shutdown", self._shutdown)
        app.router.add_put("/metadata/annotation", self._metadata)
        app.router.add_put("/metadata/label", self._metadata)
        return app

    # --- reading --------------------------------------------------------------------------

    async def _get_gameserver(self, request: web.Request) -> web.Response:
        gs = self.store.get(*self.key)
        if gs is None:
            return _grpc_error(404, 5, "the GameServer is gone")
        return web.json_response(sdk_gameserver(gs))

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        gs = self.store.get(*self.key)
        if gs is None:
            return _grpc_error(404, 5, "the GameServer is gone")
        queue: asyncio.Queue[Json | None] = asyncio.Queue()
        self._streams.add(queue)  # before the first answer: no change falls in between
        update: Json | None = sdk_gameserver(gs)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
        except BaseException:
            self._streams.discard(queue)
            raise
        try:
            while update is not None:
                await response.write(json.dumps({"result": update}).encode() + b"\n")
                update = await queue.get()
        finally:
            self._streams.discard(queue)
        return response

    def _on_change(self, change: Change) -> None:
        metadata = change.obj["metadata"]
        if (metadata["namespace"], metadata["name"]) != self.key:
            return
        if change.type == "DELETED":
            self._end_streams()
            return
        update = sdk_gameserver(change.obj)
        for queue in self._streams:
            queue.put_nowait(update)

    def _end_streams(self) -> None:
        for queue in self._streams:
            queue.put_nowait(None)

    # --- writing --------------------------------------------------------------------------

    async def _ready(self, request: web.Request) -> web.Response:
        if not await _empty_message(request):
            return _bad_body()
        self._request_ready()
        return web.json_response({})

    async def _health(self, request: web.Request) -> web.Response:
        if not await _empty_message(request):
            return _bad_body()
        self.health_pings += 1
        return web.json_response({})

    async def _shutdown(self, request: web.Request) -> web.Response:
        if not await _empty_message(request):
            return _bad_body()

        def shut_down(gs: Json) -> None:
            if not is_being_deleted(gs):
                gs["status"]["state"] = "Shutdown"

        self.store.update(*self.key, shut_down)
        return web.json_response({})

    async def _metadata(self, request: web.Request) -> web.Response:
        pair = await _key_value(request)
        if pair is None:
            return _grpc_error(400, 3, "expected {'key': string, 'value': string}")
        field = "annotations" if request.path.endswith("/annotation") else "labels"
        name, value = SDK_PREFIX + pair[0], pair[1]

        def set_metadata(gs: Json) -> None:
            gs["metadata"].setdefault(field, {})[name] = value

        if self.store.update(*self.key, set_metadata) is None:
            return _grpc_error(404, 5, "the GameServer is gone")
        return web.json_response({})


def may_request_ready(gs: Json | None) -> bool:
    """Whether SDK Ready changes the state (``updateState``'s early returns)."""
    return gs is not None and not is_being_deleted(gs) and state_of(gs) not in CANNOT_LEAVE


def sdk_gameserver(gs: Json) -> Json:
    """The GameServer as the SDK server answers it (``convert`` in sdkserver.go)."""
    metadata = gs["metadata"]
    health = (gs.get("spec") or {}).get("health") or {}
    status = gs.get("status") or {}
    return {
        "object_meta": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid", ""),
            "resource_version": metadata.get("resourceVersion", ""),
            "generation": str(metadata.get("generation", 0)),
            "creation_timestamp": str(_unix(metadata.get("creationTimestamp"))),
            "deletion_timestamp": str(_unix(metadata.get("deletionTimestamp"))),
            "annotations": dict(metadata.get("annotations") or {}),
            "labels": dict(metadata.get("labels") or {}),
        },
        "spec": {
            "health": {
                "disabled": bool(health.get("disabled", False)),
                "period_seconds": int(health.get("periodSeconds", 0)),
                "failure_threshold": int(health.get("failureThreshold", 0)),
                "initial_delay_seconds": int(health.get("initialDelaySeconds", 0)),
            }
        },
        "status": {
            "state": status.get("state", ""),
            "address": status.get("address", ""),
            "addresses": [
                {"address": a["address"], "type": a["type"]} for a in status.get("addresses") or []
            ],
            "ports": [{"name": p["name"], "port": p["port"]} for p in status.get("ports") or []],
            "players": None,
            "counters": {},
            "lists": {},
        },
    }


def _unix(timestamp: str | None) -> int:
    """metav1.Time to Unix seconds; 0 for none (the proto's unset int64)."""
    return int(datetime.fromisoformat(timestamp).timestamp()) if timestamp else 0


async def _empty_message(request: web.Request) -> bool:
    """grpc-gateway decodes the body into ``sdk.Empty``: nothing, or a JSON object."""
    text = await request.text()
    if not text.strip():
        return True
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


async def _key_value(request: web.Request) -> tuple[str, str] | None:
    try:
        body = json.loads(await request.text())
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    key, value = body.get("key"), body.get("value")
    if not isinstance(key, str) or not key or not isinstance(value, str):
        return None
    return key, value


def _bad_body() -> web.Response:
    return _grpc_error(400, 3, "the body must be empty or a JSON object")


def _grpc_error(status: int, code: int, message: str) -> web.Response:
    """grpc-gateway's error body: the gRPC code, the message, no details."""
    return web.json_response({"code": code, "message": message, "details": []}, status=status)
