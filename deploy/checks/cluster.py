"""An existing cluster: its Kubernetes version against the Agones release (only reported;
the cluster step decides the version a new cluster gets)."""

from __future__ import annotations

from deploy.agones_support import kubernetes_problem
from deploy.checks import Finding, note, ok, stop
from deploy.context import Context


def kubernetes_version(ctx: Context) -> list[Finding]:
    cluster, zone, agones = ctx.config.cluster, ctx.config.zone, ctx.config.agones.version
    found = ctx.query_json(
        ctx.gcloud("container", "clusters", "describe", cluster.name, f"--zone={zone}",
                   "--format=json")
    )  # fmt: skip
    if found is None and cluster.create:
        return [ok(f"cluster {cluster.name}: not there yet (the cluster step creates it)")]
    if found is None:
        return [
            stop(
                f"cluster {cluster.name} not found in {zone}, and cluster.create is false",
                "set cluster.name and zone to an existing cluster, or cluster.create: true",
            )
        ]
    version = str(found.get("currentMasterVersion") or "")
    problem = kubernetes_problem(version, agones) if version else None
    if problem is None:
        return [ok(f"cluster {cluster.name}: Kubernetes {version or '(unknown)'}, Agones {agones}")]
    return [
        note(
            f"cluster {cluster.name}: {problem}",
            "Agones runs there untested: choose an agones.version that supports it, or move the "
            "cluster to a supported minor\n"
            f"(gcloud container clusters upgrade {cluster.name} --master "
            f"--cluster-version=1.MINOR --zone={zone})",
        )
    ]
