"""The VPC network everything attaches to, and (function mode) room in it for the VPC
connector's /28."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from deploy.checks import Finding, ok, stop
from deploy.context import Context
from deploy.types import DeployError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Where to look for a free /28 to suggest (the predecessor's connector used 192.168.240.16/28).
SUGGESTIONS = ipaddress.IPv4Network("192.168.240.0/24")


def exists(ctx: Context) -> list[Finding]:
    """Organizations enforcing constraints/compute.skipDefaultNetworkCreation make projects
    without the `default` network."""
    name = ctx.config.network
    if ctx.query_json(ctx.gcloud("compute", "networks", "describe", name, "--format=json")):
        return [ok(f"network {name} exists")]
    return [
        stop(
            f"network {name} does not exist (organizations enforcing "
            "constraints/compute.skipDefaultNetworkCreation make projects without default)",
            f"gcloud compute networks create {name} --subnet-mode=auto "
            f"--project={ctx.config.project}\n"
            "or set network in the config to one that exists (gcloud compute networks list)",
        )
    ]


def connector_range(ctx: Context) -> list[Finding]:
    """The connector's /28 must not overlap a subnet of its network, or it cannot be made."""
    cruiser, network = ctx.config.cruiser, ctx.config.network
    wanted = ipaddress.ip_network(cruiser.connector_range)
    if _connector_exists(ctx):
        return [ok(f"connector {cruiser.connector} exists (the connector step compares it)")]
    listed = ctx.query_json(
        ctx.gcloud(
            "compute", "networks", "subnets", "list", f"--network={network}", "--format=json"
        )
    )
    used = list(_ranges(listed or []))
    clashes = [f"{name} {cidr}" for name, cidr in used if cidr.overlaps(wanted)]
    if not clashes:
        return [ok(f"connector range {wanted} overlaps no subnet of network {network}")]
    return [
        stop(
            f"cruiser.connector_range {wanted} overlaps subnet {', '.join(clashes)} of network "
            f"{network}: the VPC connector could not be created",
            f"set cruiser.connector_range to an unused private /28{_suggestion(used)}",
        )
    ]


def _connector_exists(ctx: Context) -> bool:
    """An existing connector holds its range already. A failing read (its API still off, so
    no connector yet) counts as none."""
    command = ctx.gcloud(
        "compute", "networks", "vpc-access", "connectors", "describe",
        ctx.config.cruiser.connector, f"--region={ctx.config.region}", "--format=json",
    )  # fmt: skip
    try:
        return ctx.query_json(command) is not None
    except DeployError:
        return False


def _ranges(subnets: list[Any]) -> Iterator[tuple[str, Network]]:
    """Each subnet's primary and secondary ranges (GKE's pods and services are secondary)."""
    for subnet in subnets:
        secondary = [r.get("ipCidrRange") for r in subnet.get("secondaryIpRanges", [])]
        for cidr in (subnet.get("ipCidrRange"), *secondary):
            if cidr:
                yield str(subnet.get("name", "?")), ipaddress.ip_network(cidr, strict=False)


def _suggestion(used: list[tuple[str, Network]]) -> str:
    for candidate in SUGGESTIONS.subnets(new_prefix=28):
        if not any(candidate.overlaps(cidr) for _, cidr in used):
            return f", e.g. {candidate}"
    return ""
