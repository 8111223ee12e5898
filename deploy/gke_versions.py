"""Which Kubernetes version a new cluster gets, and whether a cluster's version suits Agones:
read from `gcloud container get-server-config` and `gcloud container clusters describe`
(both as JSON). Pure functions; the cluster step runs the commands."""

from __future__ import annotations

from typing import Any

from deploy.agones_support import kubernetes_problem, minor, supported_minors

CHANNEL = "regular"  # the release channel the cluster follows
# Exclusion scopes that stop GKE from moving the control plane to another minor version.
MINOR_SCOPES = ("NO_MINOR_UPGRADES", "NO_MINOR_OR_NODE_UPGRADES")


def channel_minors(server_config: Any, channel: str = CHANNEL) -> list[int]:
    """The minors a new cluster on `channel` may start at, highest first."""
    for entry in server_config.get("channels") or []:
        if str(entry.get("channel", "")).lower() == channel:
            offered = {minor(v) for v in entry.get("validVersions") or []}
            return sorted((m for m in offered if m is not None), reverse=True)
    return []


def pick_minor(server_config: Any, agones_version: str) -> int | None:
    """The highest minor the channel offers that Agones supports; None if there is none."""
    supported = supported_minors(agones_version) or ()
    return next((m for m in channel_minors(server_config) if m in supported), None)


def no_version_problem(server_config: Any, agones_version: str, zone: str) -> str:
    offered = ", ".join(f"1.{m}" for m in channel_minors(server_config)) or "no versions"
    wanted = ", ".join(f"1.{m}" for m in supported_minors(agones_version) or ())
    return (
        f"the {CHANNEL} release channel in {zone} offers {offered}, and Agones "
        f"{agones_version} supports {wanted}: no cluster can be created for it. Set "
        "agones.version to a release that supports one of the offered versions, then run again"
    )


def version_problem(cluster: Any, agones_version: str, where: str) -> tuple[str, str] | None:
    """Why this cluster's control plane does not suit Agones, and the fix; None if it does.
    `where`: the cluster's gcloud arguments, `NAME --zone=ZONE`."""
    current = str(cluster.get("currentMasterVersion", ""))
    problem = kubernetes_problem(current, agones_version)
    supported = supported_minors(agones_version)
    have = minor(current)
    if problem is None or supported is None or have is None:
        return None
    if have < min(supported):
        return problem, (
            f"Upgrade it: gcloud container clusters upgrade {where} --master "
            f"--cluster-version=1.{min(supported)}, then each node pool (gcloud container "
            f"clusters upgrade {where} --node-pool=POOL), and run again"
        )
    return problem, (
        f"A control plane cannot go back to an older minor version: set "
        f"agones.version to a release that supports 1.{have}, or delete the cluster "
        f"(gcloud container clusters delete {where}) and run again to create one "
        f"on 1.{max(supported)}"
    )


def holds_minor(cluster: Any) -> bool:
    """Whether a maintenance exclusion keeps the control plane on its minor version until
    that version's end of support (a dated exclusion lapses, so it does not count)."""
    window = (cluster.get("maintenancePolicy") or {}).get("window") or {}
    exclusions = window.get("maintenanceExclusions") or {}
    return any(_holds(exclusion) for exclusion in exclusions.values())


def has_exclusion(cluster: Any, name: str) -> bool:
    window = (cluster.get("maintenancePolicy") or {}).get("window") or {}
    return name in (window.get("maintenanceExclusions") or {})


def _holds(exclusion: Any) -> bool:
    options = exclusion.get("maintenanceExclusionOptions") or {}
    return (
        options.get("scope") in MINOR_SCOPES
        and options.get("endTimeBehavior") == "UNTIL_END_OF_SUPPORT"
    )
