"""Enable the Google APIs the later steps use (enabling an enabled API changes nothing)."""

from __future__ import annotations

from deploy.config import Config
from deploy.context import Context

APIS = (
    "container.googleapis.com",
    "file.googleapis.com",
    "redis.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "iam.googleapis.com",  # the service accounts (step accounts)
)
FUNCTION_APIS = (  # the cruiser as a Cloud Function, called by Cloud Scheduler
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudscheduler.googleapis.com",
    "vpcaccess.googleapis.com",
)
LAST_APIS = ("iap.googleapis.com", "compute.googleapis.com", "secretmanager.googleapis.com")


def needed(config: Config) -> tuple[str, ...]:
    function = FUNCTION_APIS if config.function_mode else ()
    secrets = LAST_APIS if config.function_mode else LAST_APIS[:2]
    return (*APIS, *function, *secrets)


def enable(ctx: Context) -> None:
    apis = needed(ctx.config)
    ctx.runner.change(ctx.gcloud("services", "enable", *apis))
    ctx.say(f"{len(apis)} APIs enabled (those already on are unchanged)")
