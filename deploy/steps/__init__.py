"""The deploy's steps, in the order they run. Each checks what exists and changes only what
is missing or wrong.

`gives` and `needs` name the facts (values found on the way) a step provides and uses: with
`--only`, the steps providing what the chosen ones need are run read-only first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deploy.config import Config
from deploy.context import Context
from deploy.steps import (
    accounts,
    address,
    agones,
    apis,
    chart,
    cluster,
    connector,
    cruiser_account,
    filestore,
    function,
    images,
    kube_secret,
    redis,
    scheduler,
)

REDIS = ("redis_host", "redis_port", "redis_ca", "redis_auth")


@dataclass(frozen=True)
class Step:
    name: str
    why: str
    run: Callable[[Context], None]
    gives: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    function_mode_only: bool = False

    def applies(self, config: Config) -> bool:
        return config.function_mode or not self.function_mode_only


STEPS = (
    Step("apis", "turn on the Google APIs the other steps use", apis.enable),
    Step(
        "accounts",
        "the service accounts the image builds and the GKE nodes run as, with their roles",
        accounts.ensure,
    ),
    Step(
        "images",
        "a Docker repository, and the allocator, sd-webui and sidecar images in it",
        images.ensure,
        gives=("image_tag",),
    ),
    Step(
        "address",
        "the global IP address the Ingress listens on (DNS points here)",
        address.ensure,
        gives=("static_ip",),
    ),
    Step(
        "cluster",
        "the GKE cluster and its autoscaling GPU node pool",
        cluster.ensure,
        gives=(
            "kube_context",
            "cluster_endpoint",
            "cluster_ca",
            "cluster_ranges",
            "cluster_private_endpoint",
        ),
    ),
    Step(
        "filestore",
        "the NFS share holding the models and everyone's pictures",
        filestore.ensure,
        gives=("filestore_ip",),
    ),
    Step(
        "redis",
        "Memorystore for Redis with AUTH and TLS, which remembers who has which WebUI",
        redis.ensure,
        gives=(*REDIS, "redis_range"),
    ),
    Step(
        "secret",
        "the namespace, and the Secret with the Redis URL and CA the pods read",
        kube_secret.ensure,
        needs=("kube_context", *REDIS),
    ),
    Step(
        "agones",
        "Agones, which runs each WebUI pod as a GameServer",
        agones.ensure,
        needs=("kube_context",),
    ),
    Step(
        "chart",
        "our Helm chart with the allocator, the Fleet and the Ingress behind IAP",
        chart.ensure,
        gives=("audience", "backend_service"),
        # ... and the ranges of the WebUIs' egress policy
        needs=(
            "kube_context",
            "image_tag",
            "filestore_ip",
            "cluster_endpoint",
            "cluster_ranges",
            "redis_host",
            "redis_range",
        ),
    ),
    Step(
        "cruiser-account",
        "the cruiser function's service account and its Redis URL secret",
        cruiser_account.ensure,
        needs=REDIS,
        function_mode_only=True,
    ),
    Step(
        "connector",
        "the VPC connector through which the function reaches Redis",
        connector.ensure,
        function_mode_only=True,
    ),
    Step(
        "function",
        "the cruiser as a Cloud Function",
        function.ensure,
        gives=("function_url",),
        needs=("cluster_endpoint", "cluster_ca", "redis_ca"),
        function_mode_only=True,
    ),
    Step(
        "scheduler",
        "the Cloud Scheduler job calling the cruiser every few minutes",
        scheduler.ensure,
        needs=("function_url",),
        function_mode_only=True,
    ),
)
NAMES = tuple(step.name for step in STEPS)


def providers(chosen: Sequence[Step], config: Config) -> list[Step]:
    """Steps not chosen whose facts the chosen ones need (and what those need in turn)."""
    names = {step.name for step in chosen}
    needed: set[str] = set()
    found: list[Step] = []
    for step in reversed([s for s in STEPS if s.applies(config)]):
        provides = needed & set(step.gives)
        if step.name in names or provides:
            needed = (needed - set(step.gives)) | set(step.needs)
            if step.name not in names:
                found.insert(0, step)
    return found
