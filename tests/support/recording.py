"""RecordingBackend: a Backend whose allocations the test lets finish, and that remembers."""

from __future__ import annotations

import asyncio
import time

from allocator.types import (
    Capacity,
    GoneCallback,
    Person,
    Placement,
    ProgressCallback,
    Session,
    State,
)


class RecordingBackend:
    name = "recording"
    release_timeout = 0.0

    def __init__(self, host: str = "127.0.0.1", port: int = 7860, hold: bool = True) -> None:
        self.host, self.port = host, port
        self.allocated: list[str] = []
        self.released: list[str] = []
        self.running: dict[str, Session] = {}  # email → its WebUI, until released
        self.started = asyncio.Event()  # an allocation has reported "starting"
        self.proceed = asyncio.Event()  # allocations may finish
        if not hold:
            self.proceed.set()
        self.gone: GoneCallback | None = None

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def allocate(self, person: Person, progress: ProgressCallback) -> Placement:
        server = f"gs-{len(self.allocated) + 1}"
        self.allocated.append(server)
        await progress(State.STARTING, "starting")
        self.started.set()
        await self.proceed.wait()
        placement = Placement(server, self.host, self.port)
        self.running[person.email] = Session(
            person.email, person.slug, self.name, placement, time.time()
        )
        return placement

    async def find_running(self, person: Person) -> Session | None:
        return self.running.get(person.email)

    async def release(self, session: Session) -> None:
        self.released.append(session.server)
        running = self.running.get(session.email)
        if running is not None and running.server == session.server:
            del self.running[session.email]

    async def is_alive(self, session: Session) -> bool:
        return session.server not in self.released

    def on_gone(self, callback: GoneCallback) -> None:
        self.gone = callback

    async def inventory(self) -> list[Session]:
        return []

    async def capacity(self) -> Capacity:
        return Capacity(free=None)
