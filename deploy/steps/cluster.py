"""The zonal GKE cluster and its GPU node pool; then credentials for kubectl and helm, and the
endpoint and CA certificate the Cloud Function uses to reach the cluster's API."""

from __future__ import annotations

from typing import Any

from deploy.context import Context
from deploy.names import GPU_POOL, kube_context
from deploy.types import StepFailed
from deploy.wait import wait_until

# --addons disables every addon it does not list.
ADDONS = (
    "HttpLoadBalancing",
    "HorizontalPodAutoscaling",
    "GcePersistentDiskCsiDriver",
    "GcpFilestoreCsiDriver",
)
BUSY = ("PROVISIONING", "RECONCILING")
PLANNED = {
    "status": "RUNNING",
    "endpoint": "<cluster-endpoint>",
    "masterAuth": {"clusterCaCertificate": "<cluster-ca-base64>"},
    "addonsConfig": {"gcpFilestoreCsiDriverConfig": {"enabled": True}},
    "networkConfig": {"datapathProvider": "ADVANCED_DATAPATH"},
}


def ensure(ctx: Context) -> None:
    found = _cluster(ctx)
    if ctx.config.cluster.create:
        _gpu_pool(ctx)
    ctx.runner.local(
        ctx.gcloud("container", "clusters", "get-credentials", ctx.config.cluster.name, _zone(ctx))
    )
    ctx.facts["kube_context"] = kube_context(ctx.config)
    ctx.facts["cluster_endpoint"] = found["endpoint"]
    ctx.facts["cluster_ca"] = found["masterAuth"]["clusterCaCertificate"]


def _zone(ctx: Context) -> str:
    return f"--zone={ctx.config.zone}"


def _describe(ctx: Context) -> list[str]:
    name = ctx.config.cluster.name
    return ctx.gcloud("container", "clusters", "describe", name, _zone(ctx), "--format=json")


def _cluster(ctx: Context) -> Any:
    cluster = ctx.config.cluster
    # A plan assumes an empty project, except for a cluster the config says exists.
    found = ctx.query_json(_describe(ctx), None if cluster.create else PLANNED)
    if found is None and not cluster.create:
        raise StepFailed(
            f"cluster {cluster.name} not found in {ctx.config.zone}, and cluster.create is false"
        )
    if found is None:
        ctx.say(f"creating cluster {cluster.name} (about 5-10 minutes)")
        ctx.runner.change(_create_command(ctx))
        ctx.say(f"cluster {cluster.name}: created")
        return ctx.read_json(_describe(ctx), PLANNED)
    found = _running(ctx, found)
    if not _addons(ctx, found):
        ctx.say(f"cluster {cluster.name}: exists, unchanged")
    if not _enforces_network_policy(found):
        ctx.say(
            f"WARNING: cluster {cluster.name} does not enforce NetworkPolicies (no Dataplane V2 "
            "or network policy add-on): anyone in the cluster can reach every WebUI pod"
        )
    return found


def _create_command(ctx: Context) -> list[str]:
    config = ctx.config
    return ctx.gcloud(
        "container",
        "clusters",
        "create",
        config.cluster.name,
        _zone(ctx),
        "--release-channel=regular",
        f"--workload-pool={config.project}.svc.id.goog",
        f"--addons={','.join(ADDONS)}",
        "--enable-ip-alias",
        # Enforces the chart's NetworkPolicies: only allocator pods may reach a WebUI.
        "--enable-dataplane-v2",
        f"--network={config.network}",
        f"--machine-type={config.cluster.machine_type}",
        f"--num-nodes={config.cluster.nodes}",
    )


def _enforces_network_policy(found: Any) -> bool:
    advanced = found.get("networkConfig", {}).get("datapathProvider") == "ADVANCED_DATAPATH"
    return advanced or bool(found.get("networkPolicy", {}).get("enabled"))


def _running(ctx: Context, found: Any) -> Any:
    """An interrupted earlier run may have left the cluster still being created."""
    if found.get("status") not in BUSY:
        return found

    def ready() -> Any:
        current = ctx.read_json(_describe(ctx), planned=found)
        return None if current.get("status") in BUSY else current

    return wait_until(ctx, f"cluster {ctx.config.cluster.name}", ready, timeout=1800, interval=20)


def _addons(ctx: Context, found: Any) -> bool:
    """Ingress and Filestore need their addons; turning them on is safe on a live cluster.
    Whether it had to."""
    addons = found.get("addonsConfig", {})
    off = []
    if addons.get("httpLoadBalancing", {}).get("disabled"):
        off.append("HttpLoadBalancing")
    if not addons.get("gcpFilestoreCsiDriverConfig", {}).get("enabled"):
        off.append("GcpFilestoreCsiDriver")
    if not off:
        return False
    enable = ",".join(f"{addon}=ENABLED" for addon in off)
    name = ctx.config.cluster.name
    ctx.runner.change(
        ctx.gcloud("container", "clusters", "update", name, _zone(ctx), f"--update-addons={enable}")
    )
    ctx.say(f"cluster {name}: updated (enabled {', '.join(off)})")
    return True


def _gpu_pool(ctx: Context) -> None:
    cluster = ctx.config.cluster.name
    where = (f"--cluster={cluster}", _zone(ctx))
    found = ctx.query_json(
        ctx.gcloud("container", "node-pools", "describe", GPU_POOL, *where, "--format=json")
    )
    if found is None:
        ctx.runner.change(
            ctx.gcloud("container", "node-pools", "create", GPU_POOL, *where, *_pool_flags(ctx))
        )
        ctx.say(f"node pool {GPU_POOL}: created")
        return
    _same_hardware(ctx, found)
    autoscaling = found.get("autoscaling", {})
    gpu = ctx.config.cluster.gpu
    if (
        autoscaling.get("enabled")
        and int(autoscaling.get("minNodeCount", 0)) == gpu.min_nodes
        and int(autoscaling.get("maxNodeCount", 0)) == gpu.max_nodes
    ):
        ctx.say(f"node pool {GPU_POOL}: exists, unchanged")
        return
    ctx.runner.change(
        ctx.gcloud(
            "container",
            "node-pools",
            "update",
            GPU_POOL,
            *where,
            "--enable-autoscaling",
            f"--min-nodes={gpu.min_nodes}",
            f"--max-nodes={gpu.max_nodes}",
        )
    )
    ctx.say(f"node pool {GPU_POOL}: updated (autoscaling {gpu.min_nodes}-{gpu.max_nodes})")


def _pool_flags(ctx: Context) -> list[str]:
    gpu = ctx.config.cluster.gpu
    flags = [
        f"--machine-type={gpu.machine_type}",
        # Without gpu-driver-version gcloud installs no driver (reference §4.5).
        f"--accelerator=type={gpu.type},count={gpu.count},gpu-driver-version={gpu.driver_version}",
        "--image-type=COS_CONTAINERD",
        "--enable-autoscaling",
        f"--min-nodes={gpu.min_nodes}",
        f"--max-nodes={gpu.max_nodes}",
        f"--num-nodes={gpu.min_nodes}",
        "--workload-metadata=GKE_METADATA",
    ]
    return [*flags, "--spot"] if gpu.spot else flags


def _same_hardware(ctx: Context, found: Any) -> None:
    """Machine and GPU type cannot change in place; pods would never fit a wrong pool."""
    gpu = ctx.config.cluster.gpu
    node = found.get("config", {})
    accelerators = node.get("accelerators") or [{}]
    have = (node.get("machineType"), accelerators[0].get("acceleratorType"))
    if have != (gpu.machine_type, gpu.type):
        raise StepFailed(
            f"node pool {GPU_POOL} has {have[0]} with {have[1]}, the config asks for "
            f"{gpu.machine_type} with {gpu.type}. A node pool cannot change that in place: "
            f"delete it (gcloud container node-pools delete {GPU_POOL} "
            f"--cluster={ctx.config.cluster.name} --zone={ctx.config.zone}) and run again"
        )
