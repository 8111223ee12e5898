"""The cruiser function's identity and its one secret (function mode only).

Service account `sd-cruiser` gets `roles/container.clusterViewer` on the project (enough to
authenticate to GKE; what it may do inside comes only from the chart's RoleBinding to this
email) and nothing else project-wide. The Redis URL, with the AUTH string, lives in Secret
Manager; its value reaches gcloud on standard input, never on the command line.
"""

from __future__ import annotations

import base64

from deploy.context import Context
from deploy.iam import ensure_account, ensure_project_roles, has_binding, member
from deploy.names import CRUISER_ACCOUNT, REDIS_URL_SECRET, cruiser_email
from deploy.types import NOT_SHOWN, Stdin

CLUSTER_ROLE = "roles/container.clusterViewer"
SECRET_ROLE = "roles/secretmanager.secretAccessor"


def ensure(ctx: Context) -> None:
    email = cruiser_email(ctx.config)
    ensure_account(ctx, CRUISER_ACCOUNT, email, "sd-allocator cruiser (Cloud Function)")
    ensure_project_roles(ctx, CRUISER_ACCOUNT, email, [CLUSTER_ROLE])
    _secret(ctx)
    _secret_access(ctx, member(email))


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
