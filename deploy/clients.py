"""The Google API clients the deploy uses directly (Filestore, Cloud Scheduler).

What the steps need from each client is a Protocol, so tests pass fakes with the same
signatures. The real clients are built on first use only: a plan never builds one, and so
needs no credentials.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Protocol

from google.api_core.client_options import ClientOptions
from google.cloud import filestore_v1, scheduler_v1


class Operation(Protocol):
    """A long-running operation (google.api_core.operation.Operation)."""

    def result(self, timeout: float | None = None) -> Any: ...


class FilestoreClient(Protocol):
    def get_instance(self, request: filestore_v1.GetInstanceRequest) -> filestore_v1.Instance: ...

    def create_instance(self, request: filestore_v1.CreateInstanceRequest) -> Operation: ...


class SchedulerClient(Protocol):
    def get_job(self, request: scheduler_v1.GetJobRequest) -> scheduler_v1.Job: ...

    def create_job(self, request: scheduler_v1.CreateJobRequest) -> scheduler_v1.Job: ...

    def update_job(self, request: scheduler_v1.UpdateJobRequest) -> scheduler_v1.Job: ...


class Clients(Protocol):
    @property
    def filestore(self) -> FilestoreClient: ...

    @property
    def scheduler(self) -> SchedulerClient: ...


class GoogleClients:
    """The real clients, with application default credentials, built when first used.

    Requests are billed to the deployed project: user credentials (`gcloud auth
    application-default login`) may carry no quota project of their own."""

    def __init__(self, project: str) -> None:
        self.options = ClientOptions(quota_project_id=project)

    @cached_property
    def filestore(self) -> FilestoreClient:
        client: FilestoreClient = filestore_v1.CloudFilestoreManagerClient(
            client_options=self.options
        )
        return client

    @cached_property
    def scheduler(self) -> SchedulerClient:
        client: SchedulerClient = scheduler_v1.CloudSchedulerClient(client_options=self.options)
        return client


class Finished:
    """An operation that has already finished: what a plan assumes an operation returns."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self, timeout: float | None = None) -> Any:
        return self._value
