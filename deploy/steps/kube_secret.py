"""The namespace and the Secret the allocator reads Redis from (keys `url`, `ca.crt`).

Both exist before Agones (whose chart puts its SDK service account into the namespace) and
before our chart, whose pods need the Secret to start. The Secret goes to kubectl on standard
input, never on the command line; plans and logs show `<not shown>`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from deploy.context import Context
from deploy.names import NAMESPACE, REDIS_SECRET, RELEASE
from deploy.types import NOT_SHOWN, Stdin


def ensure(ctx: Context) -> None:
    _namespace(ctx)
    data = {
        "url": _b64(ctx.facts.redis_url().reveal()),
        "ca.crt": _b64(ctx.facts["redis_ca"]),
    }
    current = ctx.query_json(
        ctx.kubectl("get", "secret", REDIS_SECRET, f"--namespace={NAMESPACE}", "--output=json")
    )
    if current is not None and current.get("data") == data:
        ctx.say(f"secret {REDIS_SECRET}: exists, unchanged")
        return
    verb = "create" if current is None else "replace"
    stdin = Stdin(json.dumps(_manifest(data)), json.dumps(_manifest(_hidden(data)), indent=2))
    ctx.runner.change(ctx.kubectl(verb, "--filename=-"), stdin=stdin)
    ctx.say(f"secret {REDIS_SECRET}: {'created' if current is None else 'updated'}")
    if current is not None:
        _restart_allocator(ctx)


def _restart_allocator(ctx: Context) -> None:
    """The allocator reads the Secret when it starts: running pods keep the old URL."""
    deployment = ("deployment", RELEASE, f"--namespace={NAMESPACE}")
    if ctx.query_json(ctx.kubectl("get", *deployment, "--output=json")) is None:
        return
    ctx.runner.change(ctx.kubectl("rollout", "restart", *deployment))
    ctx.say("allocator pods restarted to read it")


def _namespace(ctx: Context) -> None:
    if ctx.query_json(ctx.kubectl("get", "namespace", NAMESPACE, "--output=json")) is not None:
        ctx.say(f"namespace {NAMESPACE}: exists, unchanged")
        return
    ctx.runner.change(ctx.kubectl("create", "namespace", NAMESPACE))
    ctx.say(f"namespace {NAMESPACE}: created")


def _manifest(data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": REDIS_SECRET,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "sd-allocator-deploy"},
        },
        "type": "Opaque",
        "data": data,
    }


def _hidden(data: dict[str, str]) -> dict[str, str]:
    return dict.fromkeys(data, NOT_SHOWN)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
