"""GPU quota: without it the GPU node pool is created, but its nodes never start and every
WebUI waits forever. New projects often have none, and raising it can take a day or two."""

from __future__ import annotations

from typing import Any

from deploy.checks import Finding, note, ok, stop
from deploy.config import Gpu
from deploy.context import Context

REGIONAL = {"nvidia-l4": "NVIDIA_L4_GPUS", "nvidia-tesla-t4": "NVIDIA_T4_GPUS"}
ALL_REGIONS = "GPUS_ALL_REGIONS"


def metrics(gpu: Gpu) -> tuple[str, ...]:
    """The regional quotas the GPU nodes may count against: Spot VMs use the preemptible one
    where the project has it, the standard one otherwise (Google's GPU quota docs)."""
    name = REGIONAL[gpu.type]
    return (f"PREEMPTIBLE_{name}", name) if gpu.spot else (name,)


def gpus(ctx: Context) -> list[Finding]:
    """The region's quota for the GPU type and the project's GPUS_ALL_REGIONS must each hold
    cluster.gpu.max_nodes x count GPUs."""
    config = ctx.config
    region = ctx.query_json(
        ctx.gcloud("compute", "regions", "describe", config.region, "--format=json")
    )
    project = ctx.query_json(ctx.gcloud("compute", "project-info", "describe", "--format=json"))
    regional, limit = _largest(region, metrics(config.cluster.gpu))
    return [
        _enough(ctx, regional, f"in {config.region}", limit),
        _enough(ctx, ALL_REGIONS, "(all regions)", _limit(project, ALL_REGIONS)),
    ]


def _largest(found: Any, names: tuple[str, ...]) -> tuple[str, float | None]:
    """Of the quotas the nodes may use, the one that holds the most (the first if none is
    listed)."""
    limits = [(name, _limit(found, name)) for name in names]
    listed = [(name, limit) for name, limit in limits if limit is not None]
    return max(listed, key=lambda item: item[1]) if listed else limits[0]


def _limit(found: Any, name: str) -> float | None:
    """`quotas[]` of `compute regions describe` or `compute project-info describe`."""
    for quota in (found or {}).get("quotas", []):
        if quota.get("metric") == name:
            return float(quota.get("limit", 0))
    return None


def _enough(ctx: Context, name: str, where: str, limit: float | None) -> Finding:
    gpu = ctx.config.cluster.gpu
    needed = gpu.max_nodes * gpu.count
    if limit is None:
        return note(
            f"GPU quota {name} {where} not found; the deploy needs {needed}",
            f"look it up in IAM & Admin → Quotas: {_page(ctx)}",
        )
    if limit >= needed:
        return ok(f"GPU quota {name} {where}: {limit:g}, enough for {needed}")
    fewer = int(limit) // gpu.count
    lower = f"\nor lower cluster.gpu.max_nodes to {fewer}" if fewer >= 1 else ""
    return stop(
        f"GPU quota {name} {where} is {limit:g}, below cluster.gpu.max_nodes {gpu.max_nodes} "
        f"x count {gpu.count} = {needed}: GPU nodes could not start",
        f"request more in IAM & Admin → Quotas (filter {name}, select it, Edit quotas;\n"
        f"granting can take a day or two): {_page(ctx)}{lower}",
    )


def _page(ctx: Context) -> str:
    return f"https://console.cloud.google.com/iam-admin/quotas?project={ctx.config.project}"
