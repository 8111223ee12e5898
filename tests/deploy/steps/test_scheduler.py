"""Cloud Scheduler: the job is created when absent, left alone when it matches, and updated
with a mask naming exactly the fields that differ."""

from __future__ import annotations

from google.cloud import scheduler_v1

from deploy.config import Config
from deploy.steps import scheduler
from tests.deploy.conftest import api_context, with_changes
from tests.deploy.fakes import Clock, FakeClients, FakeScheduler, as_stored, job_state

NAME = "projects/sd-test-project/locations/europe-west4/jobs/sd-cruiser"
URL = "https://sd-cruiser-xyz-ew.a.run.app"
GET = scheduler_v1.GetJobRequest(name=NAME)


def ensure(config: Config, fake: FakeScheduler, clock: Clock) -> list[str]:
    out: list[str] = []
    ctx = api_context(config, FakeClients(scheduler=fake), clock, out, function_url=URL)
    scheduler.ensure(ctx)
    return out


def job(config: Config) -> scheduler_v1.Job:
    ctx = api_context(config, FakeClients(), Clock(), [], function_url=URL)
    return scheduler.desired(ctx)


def test_absent_is_created(config: Config, clock: Clock) -> None:
    fake = FakeScheduler()
    out = ensure(config, fake, clock)
    expected = job(config)
    assert expected.http_target.oidc_token.service_account_email == (
        "sd-cruiser@sd-test-project.iam.gserviceaccount.com"
    )
    assert expected.http_target.oidc_token.audience == URL
    assert fake.requests == [
        GET,
        scheduler_v1.CreateJobRequest(
            parent="projects/sd-test-project/locations/europe-west4", job=expected
        ),
    ]
    assert "  job sd-cruiser: created (* * * * *)" in out


def test_equal_is_left_alone_despite_what_the_service_adds(config: Config, clock: Clock) -> None:
    fake = FakeScheduler({NAME: as_stored(job(config))})
    out = ensure(config, fake, clock)
    assert fake.requests == [GET]
    assert "  job sd-cruiser: exists, unchanged" in out


def test_a_different_schedule_is_updated_with_a_mask(config: Config, clock: Clock) -> None:
    old = job(with_changes(config, cruiser={"schedule": "*/10 * * * *"}))
    fake = FakeScheduler({NAME: as_stored(old)})
    out = ensure(config, fake, clock)
    assert fake.requests == [
        GET,
        scheduler_v1.UpdateJobRequest(job=job(config), update_mask={"paths": ["schedule"]}),
    ]
    assert "  job sd-cruiser: updated (schedule)" in out
    assert fake.jobs[NAME].schedule == "* * * * *"


def test_a_new_function_url_updates_the_target(config: Config, clock: Clock) -> None:
    old = job(config)
    old.http_target.uri = "https://old.example"
    old.http_target.oidc_token.audience = "https://old.example"
    assert scheduler.differing(job(config), as_stored(old)) == ["http_target"]


def test_a_failed_update_is_retried_in_full(config: Config, clock: Clock) -> None:
    stored = as_stored(job(config))
    stored.state = job_state(scheduler_v1.Job.State.UPDATE_FAILED)
    fake = FakeScheduler({NAME: stored})
    ensure(config, fake, clock)
    update = fake.requests[1]
    assert list(update.update_mask.paths) == list(scheduler.MANAGED)


def test_a_paused_job_is_reported_and_stays_paused(config: Config, clock: Clock) -> None:
    stored = as_stored(job(config))
    stored.state = job_state(scheduler_v1.Job.State.PAUSED)
    fake = FakeScheduler({NAME: stored})
    out = ensure(config, fake, clock)
    assert fake.requests == [GET]
    assert any("is paused" in line for line in out)
