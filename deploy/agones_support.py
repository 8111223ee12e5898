"""Which Kubernetes versions each Agones release supports (its `supported_k8s`): a cluster
outside the range runs Agones untested, and GKE's release channels upgrade by themselves."""

from __future__ import annotations

import re

# Agones minor release → the Kubernetes minors it supports (Agones' site, "Kubernetes versions").
SUPPORTED_KUBERNETES = {"1.60": (34, 35, 36)}


def minor(version: str) -> int | None:
    """`1.35.3-gke.1000` (as GKE reports it) → 35."""
    found = re.match(r"v?1\.(\d+)", version)
    return int(found.group(1)) if found else None


def supported_minors(agones_version: str) -> tuple[int, ...] | None:
    """The Kubernetes minors `agones_version` supports; None when we do not know them."""
    release = ".".join(agones_version.split(".")[:2])
    return SUPPORTED_KUBERNETES.get(release)


def kubernetes_problem(kubernetes_version: str, agones_version: str) -> str | None:
    """Why this cluster version does not suit this Agones release, or None if it does (or if
    we cannot tell: an unknown Agones release). `kubernetes_version` as GKE reports it,
    e.g. `1.35.2-gke.1200`."""
    minors = supported_minors(agones_version)
    have = minor(kubernetes_version)
    if minors is None or have is None or have in minors:
        return None
    wanted = ", ".join(f"1.{m}" for m in minors)
    return (
        f"Kubernetes {kubernetes_version} is outside what Agones {agones_version} supports "
        f"({wanted})"
    )
