"""An existing cluster: its Kubernetes version against the Agones release (the cluster step
decides the version a new cluster gets, and stops on the same problem)."""

from __future__ import annotations

from deploy.checks import Finding, ok, stop
from deploy.context import Context
from deploy.gke_versions import version_problem


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
    version = str(found.get("currentMasterVersion") or "(unknown)")
    problem = version_problem(found, agones, f"{cluster.name} --zone={zone}")
    if problem is None:
        return [ok(f"cluster {cluster.name}: Kubernetes {version}, Agones {agones}")]
    # The cluster step would stop on it too, after the steps before it had run.
    return [stop(f"cluster {cluster.name}: {problem[0]}", problem[1])]
