"""This machine: the commands the deploy runs are there, and can run here."""

from __future__ import annotations

import os
from pathlib import Path

from deploy import tools
from deploy.checks import Finding, ok, stop
from deploy.context import Context

PLUGIN = "gke-gcloud-auth-plugin"
INSTALL = {
    "gcloud": "install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install",
    PLUGIN: (
        f"gcloud components install {PLUGIN}\n"
        "(gcloud installed with apt or dnf: the package google-cloud-cli-gke-gcloud-auth-plugin)"
    ),
    "helm": (
        "install helm 3 or 4 (macOS: brew install helm; others: "
        "https://helm.sh/docs/intro/install/)"
    ),
    "kubectl": (
        "gcloud components install kubectl (gcloud installed with apt or dnf: the package "
        "kubectl; macOS: brew install kubectl)"
    ),
    "git": "install git (the images are tagged with HEAD's commit), or set image_tag",
}
BUNDLED = ("helm", "kubectl")  # what make tools can put into .tools/bin


def commands(ctx: Context) -> list[Finding]:
    """gcloud, its GKE auth plugin, helm, kubectl and git: found on PATH (helm and kubectl
    also in .tools/bin, on linux/amd64)."""
    names = ["gcloud", *BUNDLED, *([] if ctx.config.image_tag else ["git"])]
    found = {name: tools.find(name, ctx.root) for name in names}
    problems = [
        stop(f"{name}: not found on PATH", _install(name)) for name in names if not found[name]
    ]
    gcloud = found["gcloud"]
    if gcloud is not None and _auth_plugin(ctx.root, gcloud) is None:
        problems.append(
            stop(
                f"{PLUGIN}: not found (kubectl and helm need it to sign in to GKE with the "
                "credentials get-credentials writes)",
                INSTALL[PLUGIN],
            )
        )
    if problems:
        return problems
    bundled = [n for n in BUNDLED if _is_bundled(found[n], ctx.root)]
    also = f" ({' and '.join(bundled)} from {tools.BUNDLED})" if bundled else ""
    return [ok(f"tools: {', '.join([names[0], PLUGIN, *names[1:]])}{also}")]


def _install(name: str) -> str:
    if name not in BUNDLED:
        return INSTALL[name]
    if tools.bundled_fits():
        return f"{INSTALL[name]}, or run make tools"
    system, arch = tools.machine()
    return (
        f"{INSTALL[name]}\n(the {name} that make tools bundles is a linux/amd64 build, which "
        f"cannot run on {system}/{arch})"
    )


def _auth_plugin(root: Path, gcloud: Path) -> Path | None:
    """On PATH, or where gcloud itself is installed: get-credentials then names it by its
    full path (gcloud 528, api_lib/container/kubeconfig.py)."""
    beside = Path(os.path.realpath(gcloud)).parent / PLUGIN
    return tools.find(PLUGIN, root) or (beside if os.access(beside, os.X_OK) else None)


def _is_bundled(found: Path | None, root: Path) -> bool:
    return found is not None and tools.is_bundled(found, root)
