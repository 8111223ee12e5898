"""Names of what the deploy creates, in one place: the chart, the docs and the cruiser rely on
them (namespace `sd-allocator`, Fleet `sd-webui`, Secret `sd-allocator-redis`, ...)."""

from __future__ import annotations

from deploy.config import Config

NAMESPACE = "sd-allocator"  # the chart's release and namespace, and the Service's name
RELEASE = "sd-allocator"
SERVICE = "sd-allocator"
SERVICE_PORTS = ("http", "80")  # as the chart's Ingress names the Service's port
FLEET = "sd-webui"
REDIS_SECRET = "sd-allocator-redis"  # Kubernetes Secret: keys url, ca.crt
REDIS_URL_SECRET = "sd-allocator-redis-url"  # Secret Manager, for the function
AGONES_RELEASE = "agones"
AGONES_NAMESPACE = "agones-system"
GPU_POOL = "gpu"
CRUISER_ACCOUNT = "sd-cruiser"
BUILD_ACCOUNT = "sd-build"  # Cloud Build and the function's build run as this account
NODE_ACCOUNT = "sd-nodes"  # the GKE nodes (image pulls, logging, monitoring)
IMAGES = ("allocator", "sd-webui", "sidecar")


def registry_path(config: Config) -> str:
    """`LOCATION-docker.pkg.dev/PROJECT/REPOSITORY`."""
    location = config.registry.location or config.region
    return f"{location}-docker.pkg.dev/{config.project}/{config.registry.repository}"


def cruiser_email(config: Config) -> str:
    return f"{CRUISER_ACCOUNT}@{config.project}.iam.gserviceaccount.com"


def kube_context(config: Config) -> str:
    """The kubeconfig context `gcloud container clusters get-credentials` writes."""
    return f"gke_{config.project}_{config.zone}_{config.cluster.name}"


def build_email(config: Config) -> str:
    return f"{BUILD_ACCOUNT}@{config.project}.iam.gserviceaccount.com"


def node_email(config: Config) -> str:
    return f"{NODE_ACCOUNT}@{config.project}.iam.gserviceaccount.com"
