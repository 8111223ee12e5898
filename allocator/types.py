"""The shared vocabulary: people, sessions, states, the ASGI aliases and the seams.

Every other module of the allocator imports from here; this module imports nothing of ours.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Person:
    """A signed-in person: a normalised email and its label-safe slug."""

    email: str
    slug: str


class State(enum.StrEnum):
    """What `/_allocator/status` says about a person's WebUI."""

    NONE = "none"
    ALLOCATING = "allocating"
    STARTING = "starting"
    READY = "ready"
    QUEUED = "queued"
    NO_CAPACITY = "no_capacity"  # before the queue; only records written by older versions
    FAILED = "failed"
    OVER_QUOTA = "over_quota"  # used today's GPU hours (SDA_DAILY_GPU_HOURS)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a backend put a person's WebUI.

    `handle` holds what the backend needs to find it again from any process
    (a process id, a GameServer name); it is stored as JSON next to the mapping.
    """

    server: str
    host: str
    port: int
    handle: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Session:
    """The stored mapping: one person, one WebUI."""

    email: str
    slug: str
    backend: str
    placement: Placement
    allocated_at: float

    @property
    def server(self) -> str:
        return self.placement.server

    @property
    def authority(self) -> str:
        host = self.placement.host
        return f"[{host}]:{self.placement.port}" if ":" in host else f"{host}:{self.placement.port}"


@dataclass(frozen=True, slots=True)
class QueueSpot:
    """A queued person's place: `position` 1 is next; `eta_seconds` None when there is no
    basis for an estimate; `starting`: new WebUIs on their way (a Fleet scaling up)."""

    position: int
    length: int
    eta_seconds: int | None
    starting: int = 0


@dataclass(frozen=True, slots=True)
class Progress:
    """What is happening while a person has no ready session."""

    state: State
    message: str
    since: float
    restarted: bool = False
    spot: QueueSpot | None = None  # QUEUED: their place


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a backend can tell about room for more WebUIs right now: `free` None when it
    cannot tell (the queue's head is then tried now and then); `starting`: WebUIs on their
    way that will be free once ready."""

    free: int | None
    starting: int = 0


ProgressCallback = Callable[[State, str], Awaitable[None]]
GoneCallback = Callable[[str, str], Awaitable[None]]  # (email, server) of a WebUI that vanished


class NoCapacity(Exception):
    """Every WebUI slot is taken; the person waits for one to free up."""


class AllocationFailed(Exception):
    """The backend tried and failed; the message is safe to show to the person."""


class BackendError(Exception):
    """The backend could not do what was asked (e.g. its API is down); safe to show."""


class Backend(Protocol):
    """A place where WebUIs run: this machine, one static WebUI, an Agones Fleet."""

    @property
    def name(self) -> str: ...

    @property
    def release_timeout(self) -> float:
        """Seconds one `release` may take at most (the cruiser's claims outlast it)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def allocate(self, person: Person, progress: ProgressCallback) -> Placement:
        """Give `person` a ready WebUI or raise NoCapacity / AllocationFailed."""
        ...

    async def find_running(self, person: Person) -> Session | None:
        """The person's own WebUI if one still runs and may be used (its mapping was lost),
        as `inventory` sees it; never starts one."""
        ...

    async def release(self, session: Session) -> None:
        """Give the WebUI back; releasing one that is already gone is not an error."""
        ...

    async def is_alive(self, session: Session) -> bool:
        """Whether the WebUI behind `session` still exists (asked after a refused connection)."""
        ...

    def on_gone(self, callback: GoneCallback) -> None:
        """Have `callback` told when a WebUI disappears by itself (crash, deleted pod), so
        its mapping goes before anything else can take its address."""
        ...

    async def inventory(self) -> list[Session]:
        """Every WebUI this backend runs for a person, as it sees them (for reconciliation:
        `allocated_at` is when it was given to them)."""
        ...

    async def capacity(self) -> Capacity:
        """Room for more WebUIs now (asked while people are queued, about once a second)."""
        ...


class Identity(Protocol):
    """Who is making a request. Returns None when nobody verifiable is signed in."""

    @property
    def mode(self) -> str: ...

    @property
    def login_path(self) -> str | None:
        """Where a browser signs in, when this mode has a form."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def identify(self, scope: Scope) -> Person | None: ...

    async def readiness_problem(self) -> str | None:
        """A reason this identity cannot serve yet (e.g. no key set), or None."""
        ...
