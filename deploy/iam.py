"""Service accounts and the project roles they hold: found, created when missing, granted
when not yet granted. Shared by the steps that make accounts (accounts, cruiser-account)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deploy.context import Context
from deploy.types import CommandFailed

# A new service account takes a few seconds to be known everywhere in IAM; granting it a role
# before then fails with "does not exist".
NEW_ACCOUNT_SECONDS = 60.0
NEW_ACCOUNT_INTERVAL = 5.0


def has_binding(policy: Any, role: str, member: str) -> bool:
    """Whether an IAM policy grants `role` to `member` without a condition."""
    for binding in (policy or {}).get("bindings", []):
        granted = binding.get("role") == role and not binding.get("condition")
        if granted and member in binding.get("members", []):
            return True
    return False


def member(email: str) -> str:
    """How an IAM policy names a service account."""
    return f"serviceAccount:{email}"


def resource(ctx: Context, email: str) -> str:
    """`projects/PROJECT/serviceAccounts/EMAIL`: how Cloud Build and Cloud Functions take a
    service account to run builds as."""
    return f"projects/{ctx.config.project}/serviceAccounts/{email}"


def ensure_account(ctx: Context, name: str, email: str, display_name: str) -> None:
    """The service account `name` (whose address is `email`), created if it does not exist."""
    describe = ctx.gcloud("iam", "service-accounts", "describe", email, "--format=json")
    if ctx.query_json(describe) is not None:
        ctx.say(f"service account {name}: exists, unchanged")
        return
    ctx.runner.change(
        ctx.gcloud("iam", "service-accounts", "create", name, f"--display-name={display_name}")
    )
    ctx.say(f"service account {name}: created")


def ensure_project_roles(ctx: Context, who: str, email: str, roles: Sequence[str]) -> None:
    """Grant the service account each of `roles` on the project that it does not hold yet
    (unconditionally: a conditional binding does not count). `who` names it in messages."""
    project = ctx.config.project
    policy = ctx.query_json(["gcloud", "projects", "get-iam-policy", project, "--format=json"])
    for role in roles:
        if has_binding(policy, role, member(email)):
            ctx.say(f"{role} for {who}: granted, unchanged")
            continue
        grant = ["gcloud", "projects", "add-iam-policy-binding", project]
        _change_once_known(
            ctx, [*grant, f"--member={member(email)}", f"--role={role}", "--condition=None"]
        )
        ctx.say(f"{role} for {who}: granted")


def _change_once_known(ctx: Context, argv: list[str]) -> None:
    """Run `argv`, asking again while IAM does not know a just-created account yet."""
    deadline = ctx.clock() + NEW_ACCOUNT_SECONDS
    while True:
        try:
            ctx.runner.change(argv)
            return
        except CommandFailed as failed:
            if "does not exist" not in failed.stderr or ctx.clock() >= deadline:
                raise
        ctx.sleep(NEW_ACCOUNT_INTERVAL)
