"""The cruiser function's identity and its one secret (function mode only).

Service account `sd-cruiser` gets `roles/container.clusterViewer` on the project (enough to
authenticate to GKE; what it may do inside comes only from the chart's RoleBinding to this
email) and nothing else project-wide. The Redis URL, with the AUTH string, lives in Secret
Manager; its value reaches gcloud on standard input, never on the command line.
"""

from __future__ import annotations

import base64
from typing import Any

from deploy.context import Context
from deploy.names import CRUISER_ACCOUNT, REDIS_URL_SECRET, cruiser_email
from deploy.types import NOT_SHOWN, Stdin

CLUSTER_ROLE = "roles/container.clusterViewer"
SECRET_ROLE = "roles/secretmanager.secretAccessor"


def ensure(ctx: Context) -> None:
    _account(ctx)
    member = f"serviceAccount:{cruiser_email(ctx.config)}"
    _project_role(ctx, member)
    _secret(ctx)
    _secret_access(ctx, member)


def has_binding(policy: Any, role: str, member: str) -> bool:
    """Whether an IAM policy grants `role` to `member` without a condition."""
    for binding in (policy or {}).get("bindings", []):
        granted = binding.get("role") == role and not binding.get("condition")
        if granted and member in binding.get("members", []):
            return True
    return False


def _account(ctx: Context) -> None:
    email = cruiser_email(ctx.config)
    describe = ctx.gcloud("iam", "service-accounts", "describe", email, "--format=json")
    if ctx.query_json(describe) is not None:
        ctx.say(f"service account {CRUISER_ACCOUNT}: exists, unchanged")
        return
    ctx.runner.change(
        ctx.gcloud(
            "iam",
            "service-accounts",
            "create",
            CRUISER_ACCOUNT,
            "--display-name=sd-allocator cruiser (Cloud Function)",
        )
    )
    ctx.say(f"service account {CRUISER_ACCOUNT}: created")


def _project_role(ctx: Context, member: str) -> None:
    project = ctx.config.project
    policy = ctx.query_json(["gcloud", "projects", "get-iam-policy", project, "--format=json"])
    if has_binding(policy, CLUSTER_ROLE, member):
        ctx.say(f"{CLUSTER_ROLE} for {CRUISER_ACCOUNT}: granted, unchanged")
        return
    ctx.runner.change(
        [
            "gcloud",
            "projects",
            "add-iam-policy-binding",
            project,
            f"--member={member}",
            f"--role={CLUSTER_ROLE}",
            "--condition=None",
        ]
    )
    ctx.say(f"{CLUSTER_ROLE} for {CRUISER_ACCOUNT}: granted")


def _secret(ctx: Context) -> None:
    url = ctx.facts.redis_url()
    stdin = Stdin(url.reveal(), f"the Redis URL with its AUTH string ({NOT_SHOWN})")
    describe = ctx.gcloud("secrets", "describe", REDIS_URL_SECRET, "--format=json")
    if ctx.query_json(describe) is None:
        ctx.runner.change(
            ctx.gcloud(
                "secrets",
                "create",
                REDIS_URL_SECRET,
                "--replication-policy=automatic",
                "--data-file=-",
            ),
            stdin=stdin,
        )
        ctx.facts.redis_url_changed = True
        ctx.say(f"secret {REDIS_URL_SECRET}: created")
        return
    if _latest(ctx) == url.reveal():
        ctx.say(f"secret {REDIS_URL_SECRET}: exists, unchanged")
        return
    ctx.runner.change(
        ctx.gcloud("secrets", "versions", "add", REDIS_URL_SECRET, "--data-file=-"), stdin=stdin
    )
    ctx.facts.redis_url_changed = True
    ctx.say(f"secret {REDIS_URL_SECRET}: updated (new version)")


def _latest(ctx: Context) -> str | None:
    """The latest version's value (JSON, so no newline is added or lost), or None."""
    found = ctx.query_json(
        ctx.gcloud(
            "secrets",
            "versions",
            "access",
            "latest",
            f"--secret={REDIS_URL_SECRET}",
            "--format=json",
        )
    )
    if not found:
        return None
    data = str(found.get("payload", {}).get("data", ""))
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode()


def _secret_access(ctx: Context, member: str) -> None:
    policy = ctx.query_json(
        ctx.gcloud("secrets", "get-iam-policy", REDIS_URL_SECRET, "--format=json")
    )
    if has_binding(policy, SECRET_ROLE, member):
        ctx.say(f"{SECRET_ROLE} on {REDIS_URL_SECRET}: granted, unchanged")
        return
    ctx.runner.change(
        ctx.gcloud(
            "secrets",
            "add-iam-policy-binding",
            REDIS_URL_SECRET,
            f"--member={member}",
            f"--role={SECRET_ROLE}",
        )
    )
    ctx.say(f"{SECRET_ROLE} on {REDIS_URL_SECRET}: granted")
