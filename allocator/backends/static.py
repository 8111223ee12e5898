"""StaticBackend: everyone shares the WebUI at `SDA_STATIC_TARGET` (benchmarks, one GPU)."""

from __future__ import annotations

from allocator.settings import parse_authority
from allocator.types import (
    Capacity,
    GoneCallback,
    Person,
    Placement,
    ProgressCallback,
    Session,
)


class StaticBackend:
    name = "static"
    release_timeout = 0.0  # a release does nothing

    def __init__(self, target: str) -> None:
        self._host, self._port = parse_authority(target)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def allocate(self, person: Person, progress: ProgressCallback) -> Placement:
        return self._placement

    async def find_running(self, person: Person) -> Session | None:
        return None  # nothing runs per person: only a page load makes a session

    @property
    def _placement(self) -> Placement:
        return Placement(
            server=f"static-{self._host}-{self._port}", host=self._host, port=self._port
        )

    async def release(self, session: Session) -> None:
        return None  # the shared WebUI is nobody's to stop

    async def is_alive(self, session: Session) -> bool:
        return True  # nothing to replace it with; a refused connection is reported as such

    def on_gone(self, callback: GoneCallback) -> None:
        return None  # the shared WebUI is not ours to watch

    async def inventory(self) -> list[Session]:
        return []  # nothing is started per person

    async def capacity(self) -> Capacity:
        return Capacity(free=None)  # one shared WebUI: never full
