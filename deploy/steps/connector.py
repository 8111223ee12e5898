"""The Serverless VPC Access connector through which the cruiser function reaches Redis,
which has only a private address (function mode only)."""

from __future__ import annotations

from deploy.context import Context


def ensure(ctx: Context) -> None:
    cruiser = ctx.config.cruiser
    name = cruiser.connector
    found = ctx.query_json(_command(ctx, "describe", "--format=json"))
    if found is None:
        ctx.say(f"creating connector {name} (a few minutes)")
        ctx.runner.change(
            _command(
                ctx,
                "create",
                f"--network={ctx.config.network}",
                f"--range={cruiser.connector_range}",
            )
        )
        ctx.say(f"connector {name}: created")
        return
    have = (found.get("network"), found.get("ipCidrRange"))
    if have != (ctx.config.network, cruiser.connector_range):
        ctx.say(
            f"note: connector {name} has network {have[0]}, range {have[1]} (config: "
            f"{ctx.config.network}, {cruiser.connector_range}); a connector cannot change "
            "them, so it is left as it is"
        )
        return
    ctx.say(f"connector {name}: exists, unchanged")


def _command(ctx: Context, verb: str, *flags: str) -> list[str]:
    return ctx.gcloud(
        "compute",
        "networks",
        "vpc-access",
        "connectors",
        verb,
        ctx.config.cruiser.connector,
        f"--region={ctx.config.region}",
        *flags,
    )
