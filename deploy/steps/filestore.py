"""The Filestore instance holding the models and everyone's pictures, through the Filestore
API. An instance that exists is never modified or deleted: it holds people's data."""

from __future__ import annotations

from google.api_core.exceptions import AlreadyExists, NotFound
from google.cloud import filestore_v1

from deploy.api import absent
from deploy.clients import Clients, Finished, Operation
from deploy.context import Context
from deploy.types import StepFailed
from deploy.wait import wait_operation, wait_until

Instance = filestore_v1.Instance
State = filestore_v1.Instance.State
CREATE_TIMEOUT = 1800.0
# Not ready yet, but on its way there; any other state than these and READY is an error.
SETTLING = (State.CREATING, State.REPAIRING, State.RESTORING, State.RESUMING)
# STANDARD and PREMIUM are the old names of BASIC_HDD and BASIC_SSD.
ALIASES = {
    Instance.Tier.STANDARD: Instance.Tier.BASIC_HDD,
    Instance.Tier.PREMIUM: Instance.Tier.BASIC_SSD,
}


def ensure(ctx: Context) -> None:
    instance = _existing(ctx)
    if instance is None:
        instance = _create(ctx)
    else:
        _check_matches(ctx, instance)
        instance = _ready(ctx, instance)
        ctx.say(f"instance {ctx.config.filestore.instance}: exists, unchanged")
    ctx.facts["filestore_ip"] = instance.networks[0].ip_addresses[0]


def desired(ctx: Context) -> Instance:
    store = ctx.config.filestore
    network = filestore_v1.NetworkConfig(
        network=ctx.config.network,
        modes=[filestore_v1.NetworkConfig.AddressMode.MODE_IPV4],
        connect_mode=filestore_v1.NetworkConfig.ConnectMode.DIRECT_PEERING,
    )
    share = filestore_v1.FileShareConfig(name=store.share, capacity_gb=store.capacity_gb)
    return Instance(tier=_tier(store.tier), file_shares=[share], networks=[network])


def _tier(name: str) -> Instance.Tier:
    tier: Instance.Tier = getattr(Instance.Tier, name)
    return tier


def instance_name(ctx: Context) -> str:
    path: str = filestore_v1.CloudFilestoreManagerClient.instance_path(
        ctx.config.project, ctx.config.zone, ctx.config.filestore.instance
    )
    return path


def _get(ctx: Context, planned: Instance | BaseException) -> Instance:
    request = filestore_v1.GetInstanceRequest(name=instance_name(ctx))

    def send(clients: Clients) -> Instance:
        return clients.filestore.get_instance(request=request)

    return ctx.api.call(request, send, planned=planned)


def _existing(ctx: Context) -> Instance | None:
    try:
        return _get(ctx, planned=absent())
    except NotFound:
        return None


def _create(ctx: Context) -> Instance:
    store = ctx.config.filestore
    request = filestore_v1.CreateInstanceRequest(
        parent=filestore_v1.CloudFilestoreManagerClient.common_location_path(
            ctx.config.project, ctx.config.zone
        ),
        instance_id=store.instance,
        instance=desired(ctx),
    )
    planned = Instance(
        state=State.READY,
        networks=[filestore_v1.NetworkConfig(ip_addresses=["<filestore-ip>"])],
    )
    finished: Operation = Finished(planned)
    ctx.say(f"creating instance {store.instance} (usually 5-10 minutes)")
    try:
        operation = ctx.api.call(
            request,
            lambda clients: clients.filestore.create_instance(request=request),
            planned=finished,
            change=True,
        )
    except AlreadyExists:  # another deploy created it in the meantime
        found = _get(ctx, planned=planned)
        _check_matches(ctx, found)
        return _ready(ctx, found)
    created: Instance = wait_operation(
        ctx, operation, f"Filestore instance {store.instance}", timeout=CREATE_TIMEOUT
    )
    ctx.say(f"instance {store.instance}: created")
    return created


def _ready(ctx: Context, instance: Instance) -> Instance:
    if instance.state == State.READY:
        return instance
    if instance.state not in SETTLING:
        raise StepFailed(
            f"Filestore instance {ctx.config.filestore.instance} is {instance.state.name}, "
            "not READY; see the Filestore page of the Cloud console"
        )

    def settled() -> Instance | None:
        current = _get(ctx, planned=instance)
        if current.state in SETTLING:
            return None
        return _ready(ctx, current)

    what = f"Filestore instance {ctx.config.filestore.instance} to be READY"
    return wait_until(ctx, what, settled, timeout=CREATE_TIMEOUT, interval=15)


def _check_matches(ctx: Context, instance: Instance) -> None:
    """Differences that matter stop the deploy; the instance is never changed."""
    store = ctx.config.filestore
    problems = []
    tier = Instance.Tier(ALIASES.get(instance.tier, instance.tier))
    if tier != _tier(store.tier):
        problems.append(f"tier {tier.name} (config: {store.tier})")
    share = instance.file_shares[0] if instance.file_shares else None
    if share is None or share.name != store.share:
        problems.append(f"share {share.name if share else 'none'} (config: {store.share})")
    network = instance.networks[0].network.rsplit("/", 1)[-1] if instance.networks else ""
    if network != ctx.config.network:
        problems.append(f"network {network or 'none'} (config: {ctx.config.network})")
    if problems:
        raise StepFailed(
            f"Filestore instance {store.instance} exists with {', '.join(problems)}. It holds "
            "models and people's pictures, so the deploy never changes or replaces it: set "
            "the config to match it, or use another filestore.instance name"
        )
    if share is not None and share.capacity_gb != store.capacity_gb:
        ctx.say(
            f"note: instance {store.instance} has {share.capacity_gb} GB, the config says "
            f"{store.capacity_gb} GB; left as it is (grow it with gcloud filestore instances "
            "update --file-share=...; it never shrinks)"
        )
