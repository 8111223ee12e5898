"""The Kubernetes API paths the product uses, on one aiohttp application.

Custom resources (GameServer, Fleet) are unstructured on a real apiserver, so their JSON has
sorted keys; typed answers (GameServerAllocation, Status) keep Go's field order. An unknown
path is kube's 404 Status "the server could not find the requested resource"; a verb the
fake does not model on a known path is 405 MethodNotAllowed. Paths under
``/apis/allocation.agones.dev/v1/namespaces/`` belong to the Agones extension server (behind
the aggregator) and fail in its plain-text way.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from fake_agones import allocation, patch, query
from fake_agones.cluster import Cluster
from fake_agones.controller import mark_deleting
from fake_agones.errors import (
    ApiError,
    PlainError,
    bad_request,
    conflict,
    invalid,
    method_not_allowed,
    no_such_path,
    not_found,
)
from fake_agones.faults import AllocationFault
from fake_agones.gsa import GameServerAllocation
from fake_agones.objects import API_VERSION, GROUP
from fake_agones.store import clone
from fake_agones.views import AllocationRecord
from fake_agones.watch import WatchStream

Json = dict[str, Any]
GS = "/apis/agones.dev/v1/namespaces/{namespace}/gameservers"
GSA = "/apis/allocation.agones.dev/v1/namespaces/{namespace}/gameserverallocations"


def unstructured(body: Json, status: int = 200) -> web.Response:
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    return web.Response(status=status, text=text, content_type="application/json")


def typed(body: Json, status: int = 200) -> web.Response:
    text = json.dumps(body, separators=(",", ":"))
    return web.Response(status=status, text=text, content_type="application/json")


class KubeApi:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", GSA, self.allocate)
        app.router.add_route(
            "*", "/apis/allocation.agones.dev/v1/namespaces/{rest:.*}", self.extension_404
        )
        app.router.add_route("*", GS, self.gameservers)
        app.router.add_route("*", "/apis/agones.dev/v1/gameservers", self.gameservers)
        app.router.add_route("*", GS + "/{name}", self.gameserver)
        app.router.add_route(
            "*", "/apis/agones.dev/v1/namespaces/{namespace}/fleets/{name}", self.fleet
        )
        app.router.add_route("*", "/apis/allocation.agones.dev/v1", self.allocation_resources)
        app.router.add_route("*", "/version", self.version)

    # --- allocation (Agones extension server) ---------------------------------------------

    async def allocate(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            raise PlainError(405, "Method not supported")
        body = await request.read()
        headers = {
            k: "Bearer ***" if k == "Authorization" else v for k, v in request.headers.items()
        }
        record = AllocationRecord(headers, body.decode("utf-8", "replace"))
        self.cluster.allocations.append(record)
        try:
            return await self._allocate(request, body, record)
        except (ApiError, PlainError) as error:
            record.status, record.outcome = error.code, "error"
            raise

    async def _allocate(
        self, request: web.Request, body: bytes, record: AllocationRecord
    ) -> web.StreamResponse:
        gsa = self._decoded(request, body)
        fault = self.cluster.faults.next_allocation()
        record.fault = fault.kind if fault else ""
        if fault is not None and fault.kind != "lose":
            return await self._faulty(fault, gsa, record)
        answer = self._allocated(request.match_info["namespace"], gsa, record)
        if fault is not None and request.transport is not None:
            record.status, record.outcome = 0, "lost"
            request.transport.abort()
        return answer

    def _decoded(self, request: web.Request, body: bytes) -> GameServerAllocation:
        """Decoded, defaulted, validated and converted, or the error Agones answers."""
        gsa = allocation.decode(request.headers.get("Content-Type"), body)
        allocation.prepare(gsa, request.match_info["namespace"])
        errors = allocation.validate(gsa)
        if errors:
            name = gsa.metadata.get("name", "")
            raise invalid("GameServerAllocation", "allocation.agones.dev", name, errors)
        allocation.convert(gsa)
        if gsa.spec.multi_cluster_enabled:
            raise PlainError(500, "no multi-cluster allocation policy is specified")
        return gsa

    async def _faulty(
        self, fault: AllocationFault, gsa: GameServerAllocation, record: AllocationRecord
    ) -> web.Response:
        if fault.kind == "contention":
            return self._answer(record, "Contention", allocation.not_allocated(gsa, "Contention"))
        if fault.kind == "fail":
            raise PlainError(fault.status, fault.message)
        record.outcome = "hang"
        await self.cluster.stopping.wait()
        raise PlainError(503, "the fake is stopping")

    def _allocated(
        self, namespace: str, gsa: GameServerAllocation, record: AllocationRecord
    ) -> web.Response:
        store = self.cluster.store
        pool = allocation.candidates(store.view(namespace), namespace, gsa.spec.scheduling)
        chosen = allocation.choose(gsa, pool)
        if chosen is None:
            return self._answer(record, "UnAllocated", allocation.not_allocated(gsa, "UnAllocated"))
        record.game_server = chosen["metadata"]["name"]
        self.cluster.gameservers.confirm_outputs_later((namespace, record.game_server))
        updated = store.update(
            namespace, record.game_server, lambda gs: allocation.apply_to(gsa, gs)
        )
        assert updated is not None
        return self._answer(record, "Allocated", allocation.allocated(gsa, updated))

    def _answer(self, record: AllocationRecord, outcome: str, body: Json) -> web.Response:
        record.status, record.outcome = 201, outcome
        return typed(body, 201)

    async def extension_404(self, request: web.Request) -> web.Response:
        raise PlainError(404, "404 page not found")

    # --- GameServers (custom resource) ----------------------------------------------------

    async def gameservers(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            raise method_not_allowed()
        namespace = request.match_info.get("namespace")
        asked = query.parse(namespace, request.query)
        if asked.watch:
            self.cluster.faults.watch_requests += 1
            await self.cluster.faults.watches_open.wait()
            stream = WatchStream(self.cluster.store, asked, self.cluster.timings.bookmark_interval)
            return await stream.serve(request)
        return unstructured(self._list(asked))

    def _list(self, asked: query.ListQuery) -> Json:
        store = self.cluster.store
        items = [gs for gs in store.view(asked.namespace) if asked.matches(gs)]
        if asked.continue_after is not None:
            items = [gs for gs in items if _list_key(gs) > asked.continue_after]
        metadata: Json = {"continue": "", "resourceVersion": str(store.resource_version)}
        if 0 < asked.limit < len(items):
            metadata["remainingItemCount"] = len(items) - asked.limit
            items = items[: asked.limit]
            metadata["continue"] = query.continue_token(
                store.resource_version, _list_key(items[-1])
            )
        return {
            "apiVersion": API_VERSION,
            "items": items,
            "kind": "GameServerList",
            "metadata": metadata,
        }

    async def gameserver(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if request.method == "GET":
            return unstructured(self._existing(namespace, name))
        if request.method == "DELETE":
            return await self._delete(request, namespace, name)
        if request.method == "PATCH":
            return await self._patch(request, namespace, name)
        raise method_not_allowed()

    def _existing(self, namespace: str, name: str) -> Json:
        gs = self.cluster.store.get(namespace, name)
        if gs is None:
            raise not_found(name)
        return gs

    async def _delete(self, request: web.Request, namespace: str, name: str) -> web.Response:
        options = _delete_options(await request.read())
        gs = self._existing(namespace, name)
        _check_preconditions(gs, options.get("preconditions") or {})
        if self.cluster.faults.take_delete_failure():
            raise ApiError(500, "InternalError", "Internal error occurred: etcdserver: timed out")
        if request.query.get("dryRun") == "All":
            preview = clone(gs)
            if not gs["metadata"].get("deletionTimestamp"):
                mark_deleting(preview)
            return unstructured(preview)
        self.cluster.gameservers.deletes[name] += 1
        deleted = self.cluster.gameservers.delete(namespace, name)
        assert deleted is not None
        # kube answers 202 for a deletion left pending only when orphanDependents is false
        return unstructured(deleted, 202 if options.get("orphanDependents") is False else 200)

    async def _patch(self, request: web.Request, namespace: str, name: str) -> web.Response:
        patch.check_media_type(request.headers.get("Content-Type"))
        try:
            document = json.loads(await request.read())
        except ValueError as error:
            raise bad_request(f"error decoding patch: {error}") from None
        current = self._existing(namespace, name)
        merged = patch.apply(current, document)

        def replace(gs: Json) -> None:
            gs.clear()
            gs.update(merged)

        updated = self.cluster.store.update(namespace, name, replace)
        assert updated is not None
        return unstructured(updated)

    # --- Fleet, discovery ------------------------------------------------------------------

    async def fleet(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            raise method_not_allowed()
        fleet = self.cluster.fleet
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if (namespace, name) != (fleet.namespace, fleet.name):
            raise not_found(name, "fleets")
        return unstructured(fleet.fleet())

    async def allocation_resources(self, request: web.Request) -> web.Response:
        resource = {
            "name": "gameserverallocations",
            "singularName": "gameserverallocation",
            "namespaced": True,
            "kind": "GameServerAllocation",
            "verbs": ["create"],
            "shortNames": ["gsa"],
        }
        body = {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "allocation.agones.dev/v1",
        }
        return typed({**body, "resources": [resource]})

    async def version(self, request: web.Request) -> web.Response:
        return typed(
            {
                "major": "1",
                "minor": "35",
                "gitVersion": "v1.35.0-gke.1000",
                "platform": "linux/amd64",
            }
        )


async def not_found_handler(request: web.Request) -> web.Response:
    raise no_such_path()


def _list_key(gs: Json) -> str:
    return f"{gs['metadata']['namespace']}/{gs['metadata']['name']}"


def _delete_options(body: bytes) -> Json:
    if not body.strip():
        return {}
    try:
        options = json.loads(body)
    except ValueError as error:
        raise bad_request(f"couldn't get version/kind; json parse error: {error}") from None
    if not isinstance(options, dict):
        raise bad_request("couldn't get version/kind; json parse error: not an object")
    return options


def _check_preconditions(gs: Json, preconditions: Json) -> None:
    metadata = gs["metadata"]
    key = f"/registry/{GROUP}/gameservers/{metadata['namespace']}/{metadata['name']}"
    for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        wanted = preconditions.get(field)
        if wanted is not None and wanted != metadata[field]:
            raise conflict(
                metadata["name"],
                f"StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, "
                f"AdditionalErrorMsg: Precondition failed: {label} in precondition: {wanted}, "
                f"{label} in object meta: {metadata[field]}",
            )
