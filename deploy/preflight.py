"""The preflight: what a deploy needs but cannot make itself, read before anything changes.

It runs first in every deploy (`make deploy PREFLIGHT=1` runs it alone), only reads, and
prints each finding with its fix. What would make a later step fail, or leave GPU nodes that
can never start, stops the deploy before its first step. A check that reads through an API
the project has not enabled yet waits: a deploy runs it right after its apis step. A plan
looks only at PATH and says what a real run would read. The checks are in deploy/checks/.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from deploy import tools
from deploy.checks import Check, Finding, cluster, machine, network, note, project, quota, stops
from deploy.config import Config
from deploy.context import Context
from deploy.types import DeployError

LABELS = {"ok": "ok  ", "note": "note", "stop": "STOP"}
COMPUTE = "compute.googleapis.com"
CONTAINER = "container.googleapis.com"
APIS = "APIs: which of those the deploy uses are not enabled yet"
# Right after an API is enabled, what it serves may still be appearing (a new project's
# `default` network, its quotas): a check that would stop is asked again for this long.
SETTLE_SECONDS = 120.0
SETTLE_INTERVAL = 10.0

# gcloud's account and the project come first: without them nothing else can be read.
FIRST = (
    Check("gcloud", "an account is signed in", project.signed_in),
    Check("project", "it exists", project.exists),
)
CHECKS = (
    Check("OAuth client", "IAP's own needs a project in an organization", project.oauth_client),
    Check("billing", "enabled for the project", project.billing),
    Check(
        "GPU quota",
        "the GPU type's in the region, and GPUS_ALL_REGIONS, hold cluster.gpu.max_nodes x count",
        quota.gpus,
        needs=(COMPUTE,),
    ),
    Check("network", "it exists", network.exists, needs=(COMPUTE,)),
    Check(
        "connector range",
        "no subnet of the network overlaps it",
        network.connector_range,
        needs=(COMPUTE,),
        function_mode_only=True,
    ),
    Check(
        "Kubernetes version",
        "an existing cluster's suits agones.version",
        cluster.kubernetes_version,
        needs=(CONTAINER,),
    ),
)


class PreflightFailed(DeployError):
    """Something the deploy needs is missing; nothing has been changed."""


def check(ctx: Context) -> list[Check]:
    """Run the preflight and print what it finds; PreflightFailed when something stops the
    deploy (a plan never stops). Returns the checks still waiting for their APIs."""
    ctx.out("Preflight: what the deploy needs, read before anything changes")
    found = _shown(ctx, machine.commands(ctx))
    if ctx.plan:
        for title in _titles(ctx.config):
            ctx.out(f"  would check {title}")
        if stops(found):
            ctx.out("  (a real run would stop here; a plan goes on)")
        return []
    waiting: list[Check] = []
    if tools.find("gcloud", ctx.root) is not None:
        found += _shown(ctx, _project(ctx, waiting))
    _verdict(ctx, found, "nothing was changed", "so far" if waiting else "")
    return waiting


def recheck(ctx: Context, waiting: list[Check]) -> None:
    """The checks that waited for their APIs, once the apis step has enabled them."""
    if not waiting:
        return
    ctx.out("\nPreflight, continued: what needed the APIs just enabled")
    found = _shown(ctx, (f for item in waiting for f in _settled(ctx, item)))
    _verdict(ctx, found, "only the APIs were enabled", "")


def _settled(ctx: Context, item: Check) -> list[Finding]:
    """The check's findings once they stop changing, or after SETTLE_SECONDS."""
    deadline = ctx.clock() + SETTLE_SECONDS
    findings = _guarded(ctx, item)
    while stops(findings) and ctx.clock() < deadline:
        ctx.sleep(SETTLE_INTERVAL)
        findings = _guarded(ctx, item)
    return findings


def _verdict(ctx: Context, found: list[Finding], changed: str, so_far: str) -> None:
    problems = [finding for finding in found if finding.level == "stop"]
    if problems:
        raise PreflightFailed(
            f"{len(problems)} problem(s) marked STOP above; {changed}. Fix them and run again "
            "(make deploy PREFLIGHT=1 only checks)"
        )
    ctx.out(f"  nothing stops the deploy {so_far}".rstrip())


def _shown(ctx: Context, findings: Iterable[Finding]) -> list[Finding]:
    """Print each finding as it comes (reading one can take a few seconds)."""
    shown = []
    for finding in findings:
        ctx.out(f"  {LABELS[finding.level]}  {finding.text}")
        for line in finding.fix.splitlines():
            ctx.out(f"          {line}")
        shown.append(finding)
    return shown


def _project(ctx: Context, waiting: list[Check]) -> Iterator[Finding]:
    """The project's findings; the checks whose APIs are off go into `waiting`."""
    for first in FIRST:
        findings = _guarded(ctx, first)
        yield from findings
        if stops(findings):
            return
    enabled, findings = _enabled(ctx)
    yield from findings
    for item in _checks(ctx.config):
        ready = all(enabled is not None and api in enabled for api in item.needs)
        if not ready:
            waiting.append(item)
            continue
        yield from _guarded(ctx, item)
    if waiting:
        yield _waiting(waiting)


def _waiting(waiting: list[Check]) -> Finding:
    apis = sorted({api for item in waiting for api in item.needs})
    return note(
        f"not checked yet: {', '.join(item.name for item in waiting)} (they read through "
        f"{', '.join(apis) or 'APIs whose state is unknown'})",
        "a whole deploy checks them right after its apis step has enabled those; "
        "PREFLIGHT=1 alone, or --only without apis, cannot",
    )


def _guarded(ctx: Context, item: Check) -> list[Finding]:
    """A check whose command fails is reported, not fatal: the step itself may still work."""
    try:
        return item.run(ctx)
    except DeployError as exc:
        return [note(f"could not check {item.title}:", str(exc))]


def _enabled(ctx: Context) -> tuple[frozenset[str] | None, list[Finding]]:
    try:
        return project.enabled_apis(ctx)
    except DeployError as exc:
        return None, [note(f"could not check {APIS}:", str(exc))]


def _checks(config: Config) -> list[Check]:
    return [item for item in CHECKS if item.applies(config)]


def _titles(config: Config) -> list[str]:
    return [*(item.title for item in FIRST), APIS, *(item.title for item in _checks(config))]
