"""Fake Filestore and Cloud Scheduler clients: the real request and resource types, the real
exceptions, the real clients' method signatures; state kept in dicts."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any, cast

from google.api_core.exceptions import AlreadyExists, NotFound
from google.cloud import filestore_v1, scheduler_v1

# proto-plus enums and google.api_core's exceptions are not annotated: mypy takes an enum's
# members for plain ints and the exceptions for untyped calls. These give them their types.


def instance_state(value: int) -> filestore_v1.Instance.State:
    return filestore_v1.Instance.State(value)


def job_state(value: int) -> scheduler_v1.Job.State:
    return scheduler_v1.Job.State(value)


def not_found(message: str) -> NotFound:
    return cast(Callable[[str], NotFound], NotFound)(message)


def already_exists(message: str) -> AlreadyExists:
    return cast(Callable[[str], AlreadyExists], AlreadyExists)(message)


READY = instance_state(filestore_v1.Instance.State.READY)
FILESTORE_IP = "10.0.0.2"


class Clock:
    """A clock that moves only when someone sleeps or an operation is waited on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeOperation:
    """Still running for `pending` calls of result(timeout), then done."""

    def __init__(self, value: Any, pending: int = 0, clock: Clock | None = None) -> None:
        self.value = value
        self.pending = pending
        self.clock = clock
        self.waits: list[float | None] = []

    def result(self, timeout: float | None = None) -> Any:
        self.waits.append(timeout)
        if self.pending:
            self.pending -= 1
            if self.clock and timeout:
                self.clock.now += timeout
            raise concurrent.futures.TimeoutError("Operation did not complete")
        return self.value


def instance(
    name: str,
    *,
    tier: str = "BASIC_HDD",
    share: str = "share",
    capacity_gb: int = 1024,
    network: str = "default",
    state: filestore_v1.Instance.State = READY,
) -> filestore_v1.Instance:
    return filestore_v1.Instance(
        name=name,
        tier=getattr(filestore_v1.Instance.Tier, tier),
        state=state,
        file_shares=[filestore_v1.FileShareConfig(name=share, capacity_gb=capacity_gb)],
        networks=[filestore_v1.NetworkConfig(network=network, ip_addresses=[FILESTORE_IP])],
    )


class FakeFilestore:
    def __init__(
        self,
        instances: dict[str, filestore_v1.Instance] | None = None,
        *,
        pending: int = 0,
        clock: Clock | None = None,
        on_create: Callable[[FakeFilestore, str], None] | None = None,
    ) -> None:
        self.instances = dict(instances or {})
        self.requests: list[Any] = []
        self.upcoming_states: list[filestore_v1.Instance.State] = []
        self.pending = pending
        self.clock = clock
        self.on_create = on_create  # e.g. another deploy creating it first (a race)

    def get_instance(
        self,
        request: filestore_v1.GetInstanceRequest | dict[str, Any] | None = None,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> filestore_v1.Instance:
        assert isinstance(request, filestore_v1.GetInstanceRequest)
        self.requests.append(request)
        if request.name not in self.instances:
            raise not_found(f"Resource '{request.name}' was not found")
        found = filestore_v1.Instance(self.instances[request.name])
        if self.upcoming_states:
            found.state = self.upcoming_states.pop(0)
        return found

    def create_instance(
        self,
        request: filestore_v1.CreateInstanceRequest | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> FakeOperation:
        assert isinstance(request, filestore_v1.CreateInstanceRequest)
        self.requests.append(request)
        name = f"{request.parent}/instances/{request.instance_id}"
        if self.on_create:
            self.on_create(self, name)
        if name in self.instances:
            raise already_exists(f"Resource '{name}' already exists")
        created = filestore_v1.Instance(request.instance)
        created.name = name
        created.state = READY
        created.networks[0].ip_addresses.append(FILESTORE_IP)
        self.instances[name] = created
        return FakeOperation(created, self.pending, self.clock)


class FakeScheduler:
    def __init__(self, jobs: dict[str, scheduler_v1.Job] | None = None) -> None:
        self.jobs = dict(jobs or {})
        self.requests: list[Any] = []

    def get_job(
        self,
        request: scheduler_v1.GetJobRequest | dict[str, Any] | None = None,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> scheduler_v1.Job:
        assert isinstance(request, scheduler_v1.GetJobRequest)
        self.requests.append(request)
        if request.name not in self.jobs:
            raise not_found(f"Job {request.name} not found")
        return scheduler_v1.Job(self.jobs[request.name])

    def create_job(
        self,
        request: scheduler_v1.CreateJobRequest | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> scheduler_v1.Job:
        assert isinstance(request, scheduler_v1.CreateJobRequest)
        self.requests.append(request)
        if request.job.name in self.jobs:
            raise already_exists(f"Job {request.job.name} already exists")
        self.jobs[request.job.name] = as_stored(request.job)
        return self.jobs[request.job.name]

    def update_job(
        self,
        request: scheduler_v1.UpdateJobRequest | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> scheduler_v1.Job:
        assert isinstance(request, scheduler_v1.UpdateJobRequest)
        self.requests.append(request)
        stored = self.jobs[request.job.name]
        for path in request.update_mask.paths:
            setattr(stored, path, getattr(request.job, path))
        stored.state = job_state(scheduler_v1.Job.State.ENABLED)
        self.jobs[request.job.name] = as_stored(stored)
        return stored


def as_stored(job: scheduler_v1.Job) -> scheduler_v1.Job:
    """What the service keeps: the job plus what it fills in by itself."""
    stored = scheduler_v1.Job(job)
    stored.state = stored.state or job_state(scheduler_v1.Job.State.ENABLED)
    stored.http_target.headers["User-Agent"] = "Google-Cloud-Scheduler"
    return stored


class FakeClients:
    def __init__(
        self, filestore: FakeFilestore | None = None, scheduler: FakeScheduler | None = None
    ) -> None:
        self.filestore = filestore or FakeFilestore()
        self.scheduler = scheduler or FakeScheduler()
