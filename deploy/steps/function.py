"""The cruiser as a Cloud Function (gen2), called by Cloud Scheduler (function mode only).

It is redeployed only when its staged source, settings or Redis URL changed: a hash of them
is kept in the function's label `sd-deploy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy import yamlfile
from deploy.context import Context
from deploy.fingerprint import fingerprint
from deploy.iam import has_binding, resource
from deploy.names import FLEET, NAMESPACE, REDIS_URL_SECRET, build_email, cruiser_email
from deploy.staging import stage

LABEL = "sd-deploy"
SOURCE_DIR = "function"
ENV_FILE = "function-env.yaml"
INVOKER_ROLE = "roles/run.invoker"


def ensure(ctx: Context) -> None:
    name = ctx.config.cruiser.function_name
    flags, env_text = _prepare(ctx)
    digest = (
        "<content-hash>"
        if ctx.plan
        else fingerprint([*flags, env_text], trees=[ctx.work_dir / SOURCE_DIR])
    )
    found = ctx.query_json(_describe(ctx))
    if _current(found, digest) and not ctx.facts.redis_url_changed:
        ctx.say(f"function {name}: deployed, unchanged")
    else:
        ctx.say(f"deploying function {name} (builds it first; a few minutes)")
        ctx.runner.change(
            ctx.gcloud("functions", "deploy", name, *flags, f"--update-labels={LABEL}={digest}")
        )
        outcome = "deployed" if found is None else "redeployed"
        found = ctx.read_json(_describe(ctx), _planned(ctx))
        ctx.say(f"function {name}: {outcome}")
    ctx.facts["function_url"] = found["serviceConfig"]["uri"]
    _invoker(ctx, found)


def environment(ctx: Context) -> dict[str, str]:
    """The function's SDA_* settings; SDA_REDIS_URL comes from Secret Manager instead."""
    facts = ctx.facts
    return {
        "SDA_BACKEND": "agones",
        "SDA_NAMESPACE": NAMESPACE,
        "SDA_FLEET": FLEET,
        "SDA_IDLE_TIMEOUT": str(ctx.config.cruiser.idle_minutes * 60),
        "SDA_KUBE_API_URL": f"https://{facts['cluster_endpoint']}",
        "SDA_KUBE_CA_CERT": facts["cluster_ca"],
        "SDA_REDIS_CA_CERT": facts["redis_ca"],
        "SDA_LOG_FORMAT": "json",
    }


def _prepare(ctx: Context) -> tuple[list[str], str]:
    """Stage the source, write the environment file; the deploy flags and that file's text."""
    source, env_file = ctx.work_dir / SOURCE_DIR, ctx.work_dir / ENV_FILE
    if ctx.plan:
        ctx.note(
            f"stages the function's source in {ctx.shown(source)}: main.py, allocator/, "
            "cruiser/, requirements.txt (from pyproject.toml)"
        )
    else:
        stage(ctx.root, source)
    # A file rather than --set-env-vars: the CA certificates hold newlines and commas.
    env_text = yamlfile.dump(environment(ctx))
    ctx.write(env_file, env_text)
    return _flags(ctx, source, env_file), env_text


def _flags(ctx: Context, source: Path, env_file: Path) -> list[str]:
    cruiser = ctx.config.cruiser
    return [
        "--gen2",
        f"--region={ctx.config.region}",
        "--runtime=python312",
        f"--source={ctx.shown(source)}",
        "--entry-point=cruise",
        "--trigger-http",
        "--no-allow-unauthenticated",
        f"--service-account={cruiser_email(ctx.config)}",
        # The build runs as our build account, not the project's default (step accounts).
        f"--build-service-account={resource(ctx, build_email(ctx.config))}",
        f"--vpc-connector={cruiser.connector}",
        "--egress-settings=private-ranges-only",
        "--timeout=300s",
        "--memory=512Mi",
        f"--env-vars-file={ctx.shown(env_file)}",
        f"--set-secrets=SDA_REDIS_URL={REDIS_URL_SECRET}:latest",
    ]


def _describe(ctx: Context) -> list[str]:
    name = ctx.config.cruiser.function_name
    return ctx.gcloud(
        "functions", "describe", name, "--gen2", f"--region={ctx.config.region}", "--format=json"
    )


def _current(found: Any, digest: str) -> bool:
    return (
        found is not None
        and found.get("state") == "ACTIVE"
        and (found.get("labels") or {}).get(LABEL) == digest
    )


def _planned(ctx: Context) -> dict[str, Any]:
    config = ctx.config
    service = f"projects/{config.project}/locations/{config.region}/services/"
    return {
        "state": "ACTIVE",
        "serviceConfig": {
            "uri": "<function-url>",
            "service": service + config.cruiser.function_name,
        },
    }


def _invoker(ctx: Context, found: Any) -> None:
    """Cloud Scheduler calls the function as the cruiser's account: it needs run.invoker on
    the function's Cloud Run service (what add-invoker-policy-binding grants for gen2)."""
    name = ctx.config.cruiser.function_name
    member = f"serviceAccount:{cruiser_email(ctx.config)}"
    service = str(found["serviceConfig"].get("service") or name).rsplit("/", 1)[-1]
    policy = ctx.query_json(
        ctx.gcloud(
            "run",
            "services",
            "get-iam-policy",
            service,
            f"--region={ctx.config.region}",
            "--format=json",
        )
    )
    if has_binding(policy, INVOKER_ROLE, member):
        ctx.say("invoker for the scheduler: granted, unchanged")
        return
    ctx.runner.change(
        ctx.gcloud(
            "functions",
            "add-invoker-policy-binding",
            name,
            "--gen2",
            f"--region={ctx.config.region}",
            f"--member={member}",
        )
    )
    ctx.say("invoker for the scheduler: granted")
