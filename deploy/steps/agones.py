"""Agones, from its Helm chart, before our chart: ours creates a Fleet, an Agones kind."""

from __future__ import annotations

from deploy import helm
from deploy.context import Context
from deploy.names import AGONES_NAMESPACE, AGONES_RELEASE

REPOSITORY = "https://agones.dev/chart/stable"
VALUES = "manifests/agones-values.yaml"


def ensure(ctx: Context) -> None:
    version = ctx.config.agones.version
    wanted = helm.description(ctx, [version], files=[ctx.root / VALUES])
    revision = helm.last_revision(ctx, AGONES_RELEASE, AGONES_NAMESPACE)
    if helm.up_to_date(ctx, revision, AGONES_RELEASE, AGONES_NAMESPACE, wanted):
        ctx.say(f"Agones {version}: installed, unchanged")
        return
    ctx.runner.local(["helm", "repo", "add", "agones", REPOSITORY, "--force-update"])
    ctx.say(f"installing Agones {version} (waits until it runs, up to 10 minutes)")
    ctx.runner.change(
        ctx.helm(
            "upgrade",
            "--install",
            AGONES_RELEASE,
            "agones/agones",
            f"--namespace={AGONES_NAMESPACE}",
            "--create-namespace",
            f"--version={version}",
            f"--values={VALUES}",
            "--wait",
            "--timeout=10m",
            f"--description={wanted}",
        )
    )
    ctx.say(f"Agones {version}: {'upgraded' if revision else 'installed'}")
