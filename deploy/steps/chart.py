"""Our Helm chart, with values generated from the config and what earlier steps found.

The allocator needs the IAP audience to start, and the audience names a backend service that
only exists once the chart's Ingress does. Without one in the config, the chart is installed
first without waiting, the audience is looked up, and the chart is upgraded with it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from deploy import helm, yamlfile
from deploy.context import Context
from deploy.names import NAMESPACE, REDIS_SECRET, RELEASE, cruiser_email, registry_path
from deploy.steps import oauth_secret
from deploy.steps.audience import discover

CHART = "helm/sd-allocator"
VALUES_FILE = "values.yaml"


def ensure(ctx: Context) -> None:
    if ctx.config.iap.oauth_secret:
        oauth_secret.check(ctx, ctx.config.iap.oauth_secret)
    audience = ctx.config.iap.audience or discover(ctx, wait=False)
    revision = helm.last_revision(ctx, RELEASE, NAMESPACE)
    wanted = _prepare(ctx, audience)
    outcome = "upgraded" if revision else "installed"
    if helm.up_to_date(ctx, revision, RELEASE, NAMESPACE, wanted):
        outcome = "deployed, unchanged"
    elif audience:
        _upgrade(ctx, wanted, wait=True)
    else:
        audience = _install_then_discover(ctx, wanted)
    if audience is None:
        ctx.say(f"release {RELEASE}: {outcome}, without the IAP audience (see the next steps)")
        return
    ctx.facts["audience"] = audience
    ctx.say(f"release {RELEASE}: {outcome} (IAP audience {audience})")


def _install_then_discover(ctx: Context, wanted: str) -> str | None:
    ctx.say("installing without the IAP audience: the Ingress creates the backend service it names")
    ctx.note("the allocator cannot start before it has the IAP audience: install, look it up")
    _upgrade(ctx, wanted, wait=False)
    audience = discover(ctx, wait=True)
    if audience is not None:
        _upgrade(ctx, _prepare(ctx, audience), wait=True)
    return audience


def values(ctx: Context, audience: str | None) -> dict[str, Any]:
    """The chart's values that come from the config and the earlier steps (the keys of
    helm/sd-allocator/values.yaml; its values.schema.json refuses any other)."""
    config = ctx.config
    store = config.filestore
    cruiser: dict[str, Any] = {"mode": config.cruiser.mode, "schedule": config.cruiser.schedule}
    if config.function_mode:
        cruiser["functionServiceAccount"] = cruiser_email(config)
    chosen: dict[str, Any] = {
        "image": {"registry": registry_path(config), "tag": ctx.facts["image_tag"]},
        "ingress": {"host": config.domain, "staticIpName": config.static_ip_name},
        "allocator": {
            "iapAudience": audience or "",
            "admins": list(config.admins),
            "idleTimeoutSeconds": config.cruiser.idle_minutes * 60,
        },
        "redis": {"secretName": REDIS_SECRET},
        "webui": {"gpuType": config.cluster.gpu.type},
        "fleet": {
            "buffer": config.fleet.buffer,
            "minReplicas": config.fleet.min,
            "maxReplicas": config.fleet.max,
        },
        "storage": {
            "mode": "filestore",
            "size": capacity(store.capacity_gb),
            "filestore": {
                "ip": ctx.facts["filestore_ip"],
                "zone": config.zone,
                "instance": store.instance,
                "share": store.share,
            },
        },
        "cruiser": cruiser,
    }
    if config.iap.oauth_secret:  # otherwise Google's managed OAuth client
        chosen["iap"] = {"oauthSecretName": config.iap.oauth_secret}
    chosen["networkPolicy"] = {"webuiEgress": webui_egress(ctx.facts.values)}
    return chosen


def webui_egress(found: dict[str, str]) -> dict[str, list[str]]:
    """The ranges the WebUI pods' egress policy needs, from what the cluster and Redis steps
    found: the control plane (Agones' SDK server in each pod talks to it), and the ranges
    never reachable even with the internet allowed (Redis, the cluster's Pods and Services).
    Placeholders of a plan are left out."""
    endpoints = (found.get("cluster_endpoint", ""), found.get("cluster_private_endpoint", ""))
    # reservedIpRange is a CIDR for DIRECT_PEERING, a range's name for PRIVATE_SERVICE_ACCESS
    redis = (found.get("redis_range", ""), f"{found.get('redis_host', '')}/32")
    return {
        "kubernetesApiCidrs": ipv4_ranges(f"{address}/32" for address in endpoints),
        "redisCidrs": ipv4_ranges(redis),
        "clusterCidrs": ipv4_ranges(found.get("cluster_ranges", "").split(",")),
    }


def ipv4_ranges(candidates: Iterable[str]) -> list[str]:
    ranges = []
    for candidate in candidates:
        try:
            ranges.append(str(ipaddress.IPv4Network(candidate.strip(), strict=False)))
        except ValueError:
            continue  # "<cluster-endpoint>/32" in a plan, or nothing found
    return ranges


def capacity(gigabytes: int) -> str:
    """Filestore's GB are GiB: 1024 -> 1Ti."""
    return f"{gigabytes // 1024}Ti" if gigabytes % 1024 == 0 else f"{gigabytes}Gi"


def _prepare(ctx: Context, audience: str | None) -> str:
    """Write the values file; the description naming this chart and these values."""
    text = yamlfile.dump(values(ctx, audience))
    ctx.write(ctx.work_dir / VALUES_FILE, text)
    return helm.description(ctx, [text], trees=[ctx.root / CHART])


def _upgrade(ctx: Context, description: str, *, wait: bool) -> None:
    waiting = ["--wait", "--timeout=15m"] if wait else []
    if wait:
        ctx.say("waiting for the chart's pods to be ready (up to 15 minutes)")
    ctx.runner.change(
        ctx.helm(
            "upgrade",
            "--install",
            RELEASE,
            CHART,
            f"--namespace={NAMESPACE}",
            "--create-namespace",
            f"--values={ctx.shown(ctx.work_dir / VALUES_FILE)}",
            *waiting,
            f"--description={description}",
        )
    )
