"""The Cloud Scheduler job that calls the cruiser function every few minutes, with an OIDC
token of the cruiser's account (function mode only)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import scheduler_v1

from deploy.api import absent
from deploy.clients import Clients
from deploy.context import Context
from deploy.names import cruiser_email

Job = scheduler_v1.Job
# The fields the deploy owns; an update sends only those that differ.
MANAGED = (
    "description",
    "schedule",
    "time_zone",
    "http_target",
    "retry_config",
    "attempt_deadline",
)


def desired(ctx: Context) -> Job:
    config = ctx.config
    url = ctx.facts["function_url"]
    name: str = scheduler_v1.CloudSchedulerClient.job_path(
        config.project, config.region, config.cruiser.function_name
    )
    return Job(
        name=name,
        description="sd-allocator cruiser: gives back WebUIs nobody uses",
        schedule=config.cruiser.schedule,
        time_zone="Etc/UTC",
        http_target=scheduler_v1.HttpTarget(
            uri=url,
            http_method=scheduler_v1.HttpMethod.POST,
            oidc_token=scheduler_v1.OidcToken(
                service_account_email=cruiser_email(config), audience=url
            ),
        ),
        # A retried call releases nothing twice (docs/cruiser.md); the next run comes anyway.
        retry_config=scheduler_v1.RetryConfig(
            retry_count=2,
            min_backoff_duration=timedelta(seconds=10),
            max_backoff_duration=timedelta(seconds=60),
            max_doublings=2,
        ),
        attempt_deadline=timedelta(seconds=300),
    )


def ensure(ctx: Context) -> None:
    job = desired(ctx)
    short = ctx.config.cruiser.function_name
    current = _get(ctx, job.name)
    if current is None:
        request = scheduler_v1.CreateJobRequest(parent=job.name.rsplit("/jobs/", 1)[0], job=job)
        _send(ctx, request, lambda clients: clients.scheduler.create_job(request=request))
        ctx.say(f"job {short}: created ({job.schedule})")
        return
    changed = differing(job, current)
    if current.state == Job.State.UPDATE_FAILED:  # a failed update is retried in full
        changed = list(MANAGED)
    if not changed:
        ctx.say(f"job {short}: exists, unchanged")
    else:
        request = scheduler_v1.UpdateJobRequest(job=job, update_mask={"paths": changed})
        _send(ctx, request, lambda clients: clients.scheduler.update_job(request=request))
        ctx.say(f"job {short}: updated ({', '.join(changed)})")
    if current.state == Job.State.PAUSED:
        ctx.say(f"note: job {short} is paused; resume it with gcloud scheduler jobs resume")


def differing(wanted: Job, actual: Job) -> list[str]:
    """The managed fields whose wanted values `actual` does not have. Only fields the deploy
    sets are compared: the service fills in others (defaults, headers) by itself."""
    want, have = Job.pb(wanted), Job.pb(actual)
    changed = []
    for name in MANAGED:
        field = want.DESCRIPTOR.fields_by_name[name]
        if field.message_type is None:
            same = getattr(want, name) == getattr(have, name)
        else:
            same = _covers(getattr(have, name), getattr(want, name))
        if not same:
            changed.append(name)
    return changed


def _covers(actual: Any, wanted: Any) -> bool:
    for field, value in wanted.ListFields():
        other = getattr(actual, field.name)
        if field.message_type is not None and not field.is_repeated:
            if not _covers(other, value):
                return False
        elif other != value:
            return False
    return True


def _get(ctx: Context, name: str) -> Job | None:
    request = scheduler_v1.GetJobRequest(name=name)
    try:
        job: Job = ctx.api.call(
            request,
            lambda clients: clients.scheduler.get_job(request=request),
            planned=absent(),
        )
    except NotFound:
        return None
    return job


def _send(ctx: Context, request: Any, send: Callable[[Clients], Job]) -> None:
    ctx.api.call(request, send, planned=request.job, change=True)
