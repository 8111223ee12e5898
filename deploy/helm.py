"""Helm releases the deploy installs, and how it tells that one is already up to date.

`helm upgrade --install` always records a new revision, even with nothing to change. So each
upgrade carries a description with a hash of the chart and values it used, and a release
whose last revision is deployed with the same description is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy.context import Context
from deploy.fingerprint import fingerprint
from deploy.types import StepFailed

PREFIX = "sd-deploy "


def description(
    ctx: Context, strings: Sequence[str], files: Sequence[Path] = (), trees: Sequence[Path] = ()
) -> str:
    """`sd-deploy <hash>` of what makes the release; a plan shows a placeholder (it reads no
    files)."""
    if ctx.plan:
        return PREFIX + "<content-hash>"
    return PREFIX + fingerprint(strings, files, trees)


def last_revision(ctx: Context, release: str, namespace: str) -> Any:
    history = ctx.query_json(
        ctx.helm("history", release, f"--namespace={namespace}", "--max=1", "--output=json")
    )
    return history[-1] if history else None


def up_to_date(ctx: Context, revision: Any, release: str, namespace: str, wanted: str) -> bool:
    if revision is None:
        return False
    status = str(revision.get("status", ""))
    if status.startswith("pending-"):
        raise StepFailed(
            f"helm release {release} is stuck in {status} (an earlier run was interrupted). "
            f"Roll it back with `helm rollback {release} -n {namespace}` (or, if it never "
            f"installed, `helm uninstall {release} -n {namespace}`), then run again"
        )
    return status == "deployed" and revision.get("description") == wanted
