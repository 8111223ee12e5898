"""The service accounts the image builds and the GKE nodes run as, with their project roles.

Without them both would run as the Compute Engine default service account, which in projects
of organisations created since 3 May 2024 (`iam.automaticIamGrantsForDefaultServiceAccounts`
enforced) holds no role at all: Cloud Build and the function's build fail, and the nodes
cannot pull the images. Each account gets exactly what its work needs, project-wide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deploy.config import Config
from deploy.context import Context
from deploy.iam import ensure_account, ensure_project_roles
from deploy.names import BUILD_ACCOUNT, NODE_ACCOUNT, build_email, node_email

# `gcloud builds submit` (the images) and the build of `gcloud functions deploy` (Google's
# "Custom service account for Cloud Build" for Cloud Run functions lists the last three).
BUILD_ROLES = (
    "roles/cloudbuild.builds.builder",  # run a build at all: its steps, its status
    "roles/logging.logWriter",  # write the build's log (cloudbuild.yaml: CLOUD_LOGGING_ONLY)
    "roles/artifactregistry.writer",  # push our images, and the function's to gcf-artifacts
    "roles/storage.objectViewer",  # read the uploaded source (ours, and the function's)
)
# The nodes of both pools (passed to clusters create / node-pools create).
NODE_ROLES = (
    "roles/container.defaultNodeServiceAccount",  # what GKE needs: logs, metrics, autoscaling
    "roles/artifactregistry.reader",  # pull the allocator, sd-webui and sidecar images
)


@dataclass(frozen=True)
class Account:
    name: str
    display_name: str
    email: Callable[[Config], str]
    roles: tuple[str, ...]


ACCOUNTS = (
    Account(BUILD_ACCOUNT, "sd-allocator builds (Cloud Build)", build_email, BUILD_ROLES),
    Account(NODE_ACCOUNT, "sd-allocator GKE nodes", node_email, NODE_ROLES),
)


def ensure(ctx: Context) -> None:
    for account in ACCOUNTS:
        email = account.email(ctx.config)
        ensure_account(ctx, account.name, email, account.display_name)
        ensure_project_roles(ctx, account.name, email, account.roles)
