"""Read-outs for tests and benchmarks: plain data, safe to hand to another thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fake_agones.objects import is_being_deleted, pod_ip_of, state_of


@dataclass(frozen=True)
class GameServerView:
    name: str
    namespace: str
    state: str
    labels: dict[str, str]
    annotations: dict[str, str]
    pod_ip: str | None
    deleting: bool
    resource_version: str

    @classmethod
    def of(cls, gs: dict[str, Any]) -> GameServerView:
        metadata = gs["metadata"]
        return cls(
            name=metadata["name"],
            namespace=metadata["namespace"],
            state=state_of(gs),
            labels=dict(metadata.get("labels") or {}),
            annotations=dict(metadata.get("annotations") or {}),
            pod_ip=pod_ip_of(gs),
            deleting=is_being_deleted(gs),
            resource_version=metadata["resourceVersion"],
        )


@dataclass
class AllocationRecord:
    """One allocation request: what came in and what it got."""

    headers: dict[str, str]
    body: str
    status: int = 0
    outcome: str = ""
    game_server: str = ""
    fault: str = ""
