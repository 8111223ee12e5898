"""Memorystore for Redis with AUTH and TLS (server authentication): where the allocator keeps
who has which WebUI. TLS can be chosen only when the instance is created."""

from __future__ import annotations

from typing import Any

from deploy.context import Context
from deploy.types import Secret, StepFailed
from deploy.wait import wait_until

TIERS = {"basic": "basic", "standard_ha": "standard"}  # config value -> gcloud --tier
PLANNED = {
    "state": "READY",
    "host": "<redis-host>",
    "port": "<redis-port>",
    "authEnabled": True,
    "transitEncryptionMode": "SERVER_AUTHENTICATION",
    "serverCaCerts": [{"cert": "<redis-ca-pem>"}],
}


def ensure(ctx: Context) -> None:
    name = ctx.config.redis.instance
    found = ctx.query_json(_command(ctx, "describe", "--format=json"))
    if found is None:
        ctx.say(f"creating instance {name} (about 5-10 minutes)")
        ctx.runner.change(_command(ctx, "create", *_create_flags(ctx)))
        found = ctx.read_json(_command(ctx, "describe", "--format=json"), PLANNED)
        outcome = "created"
    else:
        _check_secure(ctx, found)
        found = _ready(ctx, found)
        outcome = "exists, unchanged"
    auth = ctx.read_json(
        _command(ctx, "get-auth-string", "--format=json"), {"authString": "<redis-auth-string>"}
    )
    ctx.facts["redis_host"] = found["host"]
    ctx.facts["redis_range"] = found.get("reservedIpRange", "")  # the WebUIs' egress policy
    ctx.facts["redis_port"] = str(found["port"])
    ctx.facts["redis_ca"] = ca_bundle(found)
    ctx.facts.redis_auth = Secret(auth["authString"])
    ctx.say(f"instance {name}: {outcome} ({found['host']}:{found['port']}, AUTH and TLS)")


def ca_bundle(found: Any) -> str:
    """Every server CA of the instance: during a CA rotation it has two, and may present a
    certificate from either. Sorted, so that their order never looks like a change."""
    certificates = sorted(entry["cert"].strip() for entry in found["serverCaCerts"])
    return "\n".join(certificates)


def _command(ctx: Context, verb: str, *flags: str) -> list[str]:
    redis = ctx.config.redis
    return ctx.gcloud(
        "redis", "instances", verb, redis.instance, f"--region={ctx.config.region}", *flags
    )


def _create_flags(ctx: Context) -> list[str]:
    redis, config = ctx.config.redis, ctx.config
    return [
        f"--tier={TIERS[redis.tier]}",
        f"--size={redis.size_gb}",
        f"--redis-version={redis.version}",
        f"--network=projects/{config.project}/global/networks/{config.network}",
        "--enable-auth",
        "--transit-encryption-mode=server-authentication",
    ]


def _check_secure(ctx: Context, found: Any) -> None:
    name = ctx.config.redis.instance
    network = str(found.get("authorizedNetwork", "")).rsplit("/", 1)[-1]
    if network and network != ctx.config.network:
        raise StepFailed(
            f"Redis instance {name} is on network {network}, the config says "
            f"{ctx.config.network}: the cluster could not reach it"
        )
    missing = []
    if not found.get("authEnabled"):
        missing.append("AUTH")
    if found.get("transitEncryptionMode") != "SERVER_AUTHENTICATION":
        missing.append("TLS")
    if missing:
        raise StepFailed(
            f"Redis instance {name} exists without {' and '.join(missing)}. TLS can only be "
            "chosen when an instance is created: delete it (gcloud redis instances delete "
            f"{name} --region={ctx.config.region}; sessions are lost, pictures are not) or "
            "set redis.instance to a new name, and run again"
        )


def _ready(ctx: Context, found: Any) -> Any:
    if found.get("state") == "READY":
        return found

    def ready() -> Any:
        current = ctx.read_json(_command(ctx, "describe", "--format=json"), PLANNED)
        state = current.get("state")
        if state in ("CREATING", "UPDATING", "MAINTENANCE", "IMPORTING"):
            return None
        if state != "READY":
            raise StepFailed(f"Redis instance {ctx.config.redis.instance} is {state}")
        return current

    return wait_until(ctx, f"Redis instance {ctx.config.redis.instance}", ready, timeout=1800)
