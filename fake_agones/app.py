"""The aiohttp application: errors as Status, bearer-token auth, injected latency, routes."""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from fake_agones.api import KubeApi, not_found_handler
from fake_agones.cluster import Cluster
from fake_agones.control import Controls
from fake_agones.errors import ApiError, PlainError, unauthorized


@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (ApiError, PlainError) as error:
        return error.response()


def bearer_token(token: str) -> Middleware:
    """kube-apiserver's bearer authenticator: scheme case-insensitive, token exact."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip(), token):
            return unauthorized().response()
        return await handler(request)

    return check


def latency(cluster: Cluster) -> Middleware:
    """Each API request waits on its own: concurrent requests are delayed, not queued."""

    @web.middleware
    async def wait(request: web.Request, handler: Handler) -> web.StreamResponse:
        if cluster.faults.latency > 0 and not request.path.startswith("/_fake/"):
            await asyncio.sleep(cluster.faults.latency)
        return await handler(request)

    return wait


def application(cluster: Cluster, token: str) -> web.Application:
    app = web.Application(middlewares=[answer_errors, latency(cluster), bearer_token(token)])
    KubeApi(cluster).add_routes(app)
    Controls(cluster).add_routes(app)
    app.router.add_route("*", "/{tail:.*}", not_found_handler)
    return app
