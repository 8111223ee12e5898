"""The zonal GKE cluster and its GPU node pool; then credentials for kubectl and helm, and the
endpoint and CA certificate the Cloud Function uses to reach the cluster's API.

The cluster follows the regular release channel but starts at the highest Kubernetes minor
version Agones supports, and a maintenance exclusion keeps it on that minor until the
version's end of support (GKE still applies patches). Every run checks the control plane's
version against Agones' range."""

from __future__ import annotations

import shlex
from typing import Any

from deploy.agones_support import supported_minors
from deploy.config import Gpu
from deploy.context import Context
from deploy.gke_versions import (
    CHANNEL,
    has_exclusion,
    holds_minor,
    no_version_problem,
    pick_minor,
    version_problem,
)
from deploy.names import GPU_POOL, kube_context, node_email
from deploy.types import CommandFailed, StepFailed
from deploy.wait import wait_until

# --addons disables every addon it does not list.
ADDONS = (
    "HttpLoadBalancing",
    "HorizontalPodAutoscaling",
    "GcePersistentDiskCsiDriver",
    "GcpFilestoreCsiDriver",
)
BUSY = ("PROVISIONING", "RECONCILING")
EXCLUSION = "agones-supported-minor"  # the maintenance exclusion the deploy adds
PLANNED = {
    "status": "RUNNING",
    "endpoint": "<cluster-endpoint>",
    "currentMasterVersion": "1.35.3-gke.1000",
    "masterAuth": {"clusterCaCertificate": "<cluster-ca-base64>"},
    "addonsConfig": {"gcpFilestoreCsiDriverConfig": {"enabled": True}},
    "networkConfig": {"datapathProvider": "ADVANCED_DATAPATH"},
    "maintenancePolicy": {
        "window": {
            "maintenanceExclusions": {
                EXCLUSION: {
                    "maintenanceExclusionOptions": {
                        "scope": "NO_MINOR_UPGRADES",
                        "endTimeBehavior": "UNTIL_END_OF_SUPPORT",
                    }
                }
            }
        }
    },
}
PLANNED_SERVER_CONFIG = {
    "channels": [
        {
            "channel": "REGULAR",
            "defaultVersion": "1.35.3-gke.1000",
            "validVersions": ["1.35.3-gke.1000", "1.34.6-gke.1100"],
        }
    ]
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
    # For the WebUI pods' egress policy: the Pod and Service ranges, a private endpoint.
    ranges = (found.get("clusterIpv4Cidr"), found.get("servicesIpv4Cidr"))
    ctx.facts["cluster_ranges"] = ",".join(r for r in ranges if r)
    private = (found.get("privateClusterConfig") or {}).get("privateEndpoint", "")
    ctx.facts["cluster_private_endpoint"] = private


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
        return _create(ctx)
    found = _running(ctx, found)
    _check_version(ctx, found)
    changed = [_addons(ctx, found), _hold_minor(ctx, found)]
    if not any(changed):
        ctx.say(f"cluster {cluster.name}: exists, unchanged")
    if not _enforces_network_policy(found):
        ctx.say(
            f"WARNING: cluster {cluster.name} does not enforce NetworkPolicies (no Dataplane V2 "
            "or network policy add-on): anyone in the cluster can reach every WebUI pod"
        )
    for pool in found.get("nodePools") or []:
        # With a cluster it creates, the deploy checks the GPU pool with its own describe.
        if not (cluster.create and pool.get("name") == GPU_POOL):
            _check_account(ctx, pool.get("name", "?"), pool)
    return found


def _create(ctx: Context) -> Any:
    name = ctx.config.cluster.name
    version = _new_version(ctx)
    ctx.say(f"creating cluster {name} (about 5-10 minutes)")
    ctx.runner.change(_create_command(ctx, version))
    _add_exclusion(ctx)
    ctx.say(f"cluster {name}: created")
    found = ctx.read_json(_describe(ctx), PLANNED)
    _check_version(ctx, found)
    return found


def _create_command(ctx: Context, version: list[str]) -> list[str]:
    config = ctx.config
    return ctx.gcloud(
        "container",
        "clusters",
        "create",
        config.cluster.name,
        _zone(ctx),
        f"--release-channel={CHANNEL}",
        *version,
        f"--workload-pool={config.project}.svc.id.goog",
        f"--addons={','.join(ADDONS)}",
        "--enable-ip-alias",
        # Enforces the chart's NetworkPolicies: only allocator pods may reach a WebUI.
        "--enable-dataplane-v2",
        f"--network={config.network}",
        f"--machine-type={config.cluster.machine_type}",
        f"--num-nodes={config.cluster.nodes}",
        # Not the Compute Engine default account, which may hold no role at all.
        f"--service-account={node_email(config)}",
    )


def _new_version(ctx: Context) -> list[str]:
    """`--cluster-version=1.N`: the highest minor the channel offers that Agones supports."""
    agones = ctx.config.agones.version
    if supported_minors(agones) is None:
        ctx.say(
            f"WARNING: the deploy does not know which Kubernetes versions Agones {agones} "
            f"supports (deploy/agones_support.py): the cluster gets the {CHANNEL} channel's "
            "default version"
        )
        return []
    server = ctx.read_json(
        ctx.gcloud("container", "get-server-config", _zone(ctx), "--format=json"),
        PLANNED_SERVER_CONFIG,
    )
    picked = pick_minor(server, agones)
    if picked is None:
        raise StepFailed(no_version_problem(server, agones, ctx.config.zone))
    return [f"--cluster-version=1.{picked}"]


def _check_version(ctx: Context, found: Any) -> None:
    """GKE upgrades a channel's clusters by itself; Agones runs only on the versions it
    supports."""
    cluster = ctx.config.cluster.name
    where = f"{cluster} --zone={ctx.config.zone}"
    problem = version_problem(found, ctx.config.agones.version, where)
    if problem is not None:
        raise StepFailed(f"cluster {cluster}: {problem[0]}. {problem[1]}")


def _hold_minor(ctx: Context, found: Any) -> bool:
    """Keep the cluster on its minor version until that version's end of support. Whether
    it had to."""
    if holds_minor(found):
        return False
    name = ctx.config.cluster.name
    if has_exclusion(found, EXCLUSION):  # ours, reported another way: never added twice
        ctx.say(
            f"WARNING: cluster {name} has the maintenance exclusion {EXCLUSION}, but not as one "
            "that holds it on its minor version until end of support: check it with gcloud "
            f"container clusters describe {name} {_zone(ctx)}"
        )
        return False
    if not ctx.config.cluster.create:
        ctx.say(
            f"WARNING: cluster {name} may upgrade itself to a Kubernetes minor version that "
            f"Agones {ctx.config.agones.version} does not support. To keep it on its minor "
            f"version until that version's end of support: {shlex.join(_exclusion(ctx))}"
        )
        return False
    if not _add_exclusion(ctx):
        return False
    ctx.say(f"cluster {name}: updated (no minor upgrades until its version's end of support)")
    return True


def _exclusion(ctx: Context) -> list[str]:
    # Flags checked against gcloud 528's `clusters update --help`: --add-maintenance-
    # exclusion-name and --add-maintenance-exclusion-scope (no_upgrades, no_minor_upgrades,
    # no_minor_or_node_upgrades) exist there; --add-maintenance-exclusion-until-end-of-support
    # does not (528 demands --add-maintenance-exclusion-end), and 528's `clusters create` has
    # no exclusion flags at all. The flag comes from public examples for newer gcloud releases
    # and matches the API's MaintenanceExclusionOptions.endTimeBehavior UNTIL_END_OF_SUPPORT;
    # which release added it is UNVERIFIED. Hence `clusters update`, right after creating.
    return ctx.gcloud(
        "container",
        "clusters",
        "update",
        ctx.config.cluster.name,
        _zone(ctx),
        f"--add-maintenance-exclusion-name={EXCLUSION}",
        "--add-maintenance-exclusion-scope=no_minor_upgrades",
        "--add-maintenance-exclusion-until-end-of-support",
    )


def _add_exclusion(ctx: Context) -> bool:
    """Whether it was added. A gcloud too old for the flag is told, not fatal: the version
    check of every run still stops a cluster that has moved out of Agones' range."""
    try:
        ctx.runner.change(_exclusion(ctx))
    except CommandFailed as failed:
        if "unrecognized arguments" not in failed.stderr:
            raise
        ctx.say(
            "WARNING: this gcloud is too old for --add-maintenance-exclusion-until-end-of-"
            "support (gcloud 528 lacks it), so nothing holds the cluster on its Kubernetes "
            "minor version: update gcloud (gcloud components update) and run the deploy again"
        )
        return False
    return True


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


def _check_account(ctx: Context, pool: str, found: Any) -> None:
    """Nodes on another account (the Compute Engine default one, say) may lack the roles to
    pull our images and to write logs and metrics."""
    email = node_email(ctx.config)
    account = (found.get("config") or {}).get("serviceAccount") or "default"
    if account == email:
        return
    shown = "the Compute Engine default service account" if account == "default" else account
    if pool == GPU_POOL and ctx.config.cluster.create:
        where = f"--cluster={ctx.config.cluster.name} --zone={ctx.config.zone}"
        fix = f"gcloud container node-pools delete {pool} {where}, then run the deploy again"
    else:
        fix = f"create a new pool with --service-account={email}, then delete {pool}"
    ctx.say(
        f"WARNING: node pool {pool} runs as {shown}, not {email}: its nodes may fail to pull "
        "the images (ImagePullBackOff) and send no logs or metrics. A node pool cannot change "
        f"its service account in place; recreate it: {fix}"
    )


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
    _check_account(ctx, GPU_POOL, found)
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
        f"--service-account={node_email(ctx.config)}",
    ]
    return [*flags, "--spot"] if gpu.spot else flags


def _same_hardware(ctx: Context, found: Any) -> None:
    """Machine, GPUs, driver and Spot cannot change in place; pods would never fit a wrong
    pool, and a pool that differs otherwise is not what the config asks for."""
    differences = _pool_differences(ctx.config.cluster.gpu, found)
    if differences:
        raise StepFailed(
            f"node pool {GPU_POOL} has {'; '.join(differences)}. A node pool cannot change "
            f"that in place: delete it (gcloud container node-pools delete {GPU_POOL} "
            f"--cluster={ctx.config.cluster.name} --zone={ctx.config.zone}) and run again"
        )


def _pool_differences(gpu: Gpu, found: Any) -> list[str]:
    """`GPUs per node 1 (config: 2)`, ... for each setting the pool does not share with the
    config (from `node-pools describe`: config.accelerators[0], config.spot)."""
    node = found.get("config") or {}
    accelerator = (node.get("accelerators") or [{}])[0]
    installation = accelerator.get("gpuDriverInstallationConfig") or {}
    have = {
        "machine type": node.get("machineType"),
        "GPU type": accelerator.get("acceleratorType"),
        "GPUs per node": int(accelerator.get("acceleratorCount") or 0),
        "GPU driver": str(installation.get("gpuDriverVersion", "none")).lower(),
        "Spot VMs": "yes" if node.get("spot") else "no",
    }
    want = {
        "machine type": gpu.machine_type,
        "GPU type": gpu.type,
        "GPUs per node": gpu.count,
        "GPU driver": gpu.driver_version,
        "Spot VMs": "yes" if gpu.spot else "no",
    }
    return [f"{key} {have[key]} (config: {want[key]})" for key in want if have[key] != want[key]]
