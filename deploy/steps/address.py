"""The global static IP address the Ingress uses; DNS for the domain points at it."""

from __future__ import annotations

from deploy.context import Context


def ensure(ctx: Context) -> None:
    name = ctx.config.static_ip_name
    describe = ctx.gcloud("compute", "addresses", "describe", name, "--global", "--format=json")
    found = ctx.query_json(describe)
    outcome = "exists, unchanged"
    if found is None:
        ctx.runner.change(ctx.gcloud("compute", "addresses", "create", name, "--global"))
        found = ctx.read_json(describe, planned={"address": "<static-ip>"})
        outcome = "created"
    ctx.facts["static_ip"] = found["address"]
    ctx.say(f"address {name}: {outcome} ({found['address']})")
