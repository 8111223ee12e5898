"""The Artifact Registry repository and the three images, built by Cloud Build only when one
of them lacks the tag (the git commit by default)."""

from __future__ import annotations

from typing import Any

from deploy.context import Context
from deploy.iam import resource
from deploy.names import IMAGES, build_email, registry_path
from deploy.types import StepFailed

BUILD_CONFIG = "images/cloudbuild.yaml"


def ensure(ctx: Context) -> None:
    _repository(ctx)
    tag = image_tag(ctx)
    ctx.facts["image_tag"] = tag
    _images(ctx, tag)


def image_tag(ctx: Context) -> str:
    if ctx.config.image_tag:
        return ctx.config.image_tag
    # A fixed length: git's default abbreviation grows with the repository and differs by
    # setting, and another tag would mean an hour of rebuilding the same images.
    command = ["git", "rev-parse", "--short=12", "HEAD"]
    commit = ctx.runner.query(command, planned="<git-commit>")
    if not commit:
        raise StepFailed("no git commit to name the images by: set image_tag in the config")
    return commit.strip()


def _repository(ctx: Context) -> None:
    name = ctx.config.registry.repository
    location = f"--location={ctx.config.registry.location or ctx.config.region}"
    found = ctx.query_json(
        ctx.gcloud("artifacts", "repositories", "describe", name, location, "--format=json")
    )
    if found is not None:
        ctx.say(f"repository {name}: exists, unchanged")
        return
    ctx.runner.change(
        ctx.gcloud(
            "artifacts",
            "repositories",
            "create",
            name,
            location,
            "--repository-format=docker",
            "--description=sd-allocator images",
        )
    )
    ctx.say(f"repository {name}: created")


def _images(ctx: Context, tag: str) -> None:
    registry = registry_path(ctx.config)
    listing = ctx.query_json(
        ctx.gcloud(
            "artifacts", "docker", "images", "list", registry, "--include-tags", "--format=json"
        ),
        planned=[],
    )
    missing = [name for name in IMAGES if not _tagged(listing or [], f"{registry}/{name}", tag)]
    shown = f"{', '.join(IMAGES)} at tag {tag}"
    if not missing:
        ctx.say(f"images {shown}: exist, unchanged")
        return
    if not ctx.plan and not (ctx.root / BUILD_CONFIG).is_file():
        raise StepFailed(f"{BUILD_CONFIG} not found in {ctx.root}")
    ctx.say(f"building {', '.join(missing)} (Cloud Build, several minutes)")
    ctx.runner.change(
        ctx.gcloud(
            "builds",
            "submit",
            f"--config={BUILD_CONFIG}",
            f"--substitutions=_REGISTRY={registry},_TAG={tag}",
            # Not the project's default build account, which may hold no role (step
            # accounts); a chosen account needs the build's logging option (cloudbuild.yaml).
            f"--service-account={resource(ctx, build_email(ctx.config))}",
            ".",
        )
    )
    ctx.say(f"images {shown}: built")


def _tagged(listing: list[dict[str, Any]], package: str, tag: str) -> bool:
    """Whether `gcloud artifacts docker images list --include-tags` lists package:tag.
    gcloud 528 prints `tags` as a list; older releases printed a comma-separated string."""
    for image in listing:
        tags = image.get("tags") or []
        if isinstance(tags, str):
            tags = tags.split(",")
        if image.get("package") == package and tag in tags:
            return True
    return False
