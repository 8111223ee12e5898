"""Sending API requests through the Google clients: for real, or only written into a plan.

A step builds the request object itself and hands it over with a function that sends it, so
a plan prints exactly the request a real run sends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from google.api_core.exceptions import NotFound

from deploy.clients import Clients
from deploy.plan import Message, Plan, request_name
from deploy.types import NeedsChange

T = TypeVar("T")


def absent() -> BaseException:
    """What a plan assumes a lookup finds: nothing, as in an empty project."""
    found: BaseException = NotFound("planned: not there yet")  # type: ignore[no-untyped-call]
    return found


class Api(Protocol):
    def call(
        self,
        request: Message,
        send: Callable[[Clients], T],
        *,
        planned: T | BaseException,
        change: bool = False,
    ) -> T:
        """`send(clients)`, which sends `request`. A plan returns `planned`, or raises it
        when it is an exception (say NotFound, as in an empty project)."""


@dataclass
class GoogleApi:
    clients: Clients
    out: Callable[[str], None]

    def call(
        self,
        request: Message,
        send: Callable[[Clients], T],
        *,
        planned: T | BaseException,
        change: bool = False,
    ) -> T:
        if change:
            self.out(f"    API {request_name(request)}")
        return send(self.clients)


@dataclass
class PlanApi:
    plan: Plan

    def call(
        self,
        request: Message,
        send: Callable[[Clients], T],
        *,
        planned: T | BaseException,
        change: bool = False,
    ) -> T:
        self.plan.request(request)
        if isinstance(planned, BaseException):
            raise planned
        return planned


@dataclass
class ReadOnlyApi:
    inner: Api

    def call(
        self,
        request: Message,
        send: Callable[[Clients], T],
        *,
        planned: T | BaseException,
        change: bool = False,
    ) -> T:
        if change:
            raise NeedsChange(request_name(request))
        return self.inner.call(request, send, planned=planned)
