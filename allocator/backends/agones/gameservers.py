"""Agones objects as we write and read them: the allocation request and what a GameServer says.

Pure functions over the JSON, so every rule here is testable without an API server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from allocator.types import Person

FLEET_LABEL = "agones.dev/fleet"
USER_LABEL = "sd-allocator/user"
EMAIL_ANNOTATION = "sd-allocator/email"
ALLOCATED_AT_ANNOTATION = "sd-allocator/allocated-at"
POD_IP = "PodIP"
# Set (through the Agones SDK, hence the prefix) by our sidecar once the pod saves into the
# person's own outputs folder; its value is their slug.
OUTPUTS_ANNOTATION = "agones.dev/sdk-sd-allocator-outputs"
# A GameServer in one of these states (or being deleted) will never serve again.
GONE_STATES = frozenset({"Shutdown", "Error", "Unhealthy"})
# On their way to Ready (agones.dev/v1 GameServerState): a Fleet scaling up, or replacing one.
STARTING_STATES = frozenset({"PortAllocation", "Creating", "Starting", "Scheduled", "RequestReady"})


def allocation_request(person: Person, fleet: str, now: float) -> dict[str, Any]:
    """A GameServerAllocation that re-attaches the person's own GameServer if it is still
    Allocated, and otherwise takes a Ready one from the Fleet and labels it theirs."""
    mine = {"matchLabels": {FLEET_LABEL: fleet, USER_LABEL: person.slug}}
    ready = {"matchLabels": {FLEET_LABEL: fleet}}
    return {
        "apiVersion": "allocation.agones.dev/v1",
        "kind": "GameServerAllocation",
        "spec": {
            "selectors": [
                {**mine, "gameServerState": "Allocated"},
                {**ready, "gameServerState": "Ready"},
            ],
            "scheduling": "Packed",
            "metadata": {
                "labels": {USER_LABEL: person.slug},
                "annotations": {
                    EMAIL_ANNOTATION: person.email,
                    ALLOCATED_AT_ANNOTATION: rfc3339(now),
                },
            },
        },
    }


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_ip(addresses: list[dict[str, Any]] | None) -> str | None:
    """The pod's own address. Never the node's: with `portPolicy: None` nothing listens there."""
    for address in addresses or ():
        if address.get("type") == POD_IP and address.get("address"):
            return str(address["address"])
    return None


def port_named(ports: list[dict[str, Any]] | None, name: str) -> int | None:
    """The port called `name`; ports are found by name, never by position."""
    for port in ports or ():
        if port.get("name") == name and isinstance(port.get("port"), int):
            return int(port["port"])
    return None


def is_gone(gameserver: dict[str, Any]) -> bool:
    """Deleted, being deleted, or in a state it never comes back from."""
    metadata = gameserver.get("metadata") or {}
    state = (gameserver.get("status") or {}).get("state")
    return bool(metadata.get("deletionTimestamp")) or state in GONE_STATES


def owner(gameserver: dict[str, Any]) -> tuple[str | None, str | None]:
    """(slug, email) of the person this GameServer was allocated to, if any."""
    metadata = gameserver.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    return labels.get(USER_LABEL), annotations.get(EMAIL_ANNOTATION)


def allocated_at(gameserver: dict[str, Any]) -> float:
    """When it was last given to someone: our annotation, else Agones' own, else creation.
    0 when none parses (an orphan of unknown age counts as old)."""
    metadata = gameserver.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    for text in (
        annotations.get(ALLOCATED_AT_ANNOTATION),
        annotations.get("agones.dev/last-allocated"),
        metadata.get("creationTimestamp"),
    ):
        if text:
            try:
                return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


def outputs_ready(metadata: dict[str, Any] | None, slug: str) -> bool:
    """Whether the sidecar confirmed that this pod saves into `slug`'s folder."""
    annotations = (metadata or {}).get("annotations") or {}
    return annotations.get(OUTPUTS_ANNOTATION) == slug


def fleet_capacity(gameservers: list[dict[str, Any]]) -> tuple[int, int]:
    """(Ready, on their way to Ready) among a Fleet's GameServers, leaving out any being
    deleted."""
    ready = starting = 0
    for gameserver in gameservers:
        if (gameserver.get("metadata") or {}).get("deletionTimestamp"):
            continue
        state = (gameserver.get("status") or {}).get("state")
        ready += state == "Ready"
        starting += state in STARTING_STATES
    return ready, starting
