"""``FakeAgones``: the fake cluster on its own event loop in a daemon thread.

Every public method is safe to call from any thread but the fake's own (it hands the work to
the fake's loop and waits for the answer).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from background import BackgroundLoop, serve
from fake_agones import kubeconfig
from fake_agones.app import application
from fake_agones.backing import Backing, NoBacking
from fake_agones.cluster import Cluster
from fake_agones.control import Check, Controls
from fake_agones.controller import Timings
from fake_agones.faults import AllocationFault, FaultKind, Faults
from fake_agones.views import AllocationRecord, GameServerView

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class FakeAgones:
    def __init__(
        self,
        *,
        namespace: str = "default",
        fleet: str = "sd-webui",
        replicas: int = 2,
        webui_port: int | None = None,
        backing: Backing | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        latency_ms: float = 0.0,
        history_size: int = 1000,
        timings: Timings | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.namespace = namespace
        self.fleet = fleet
        self.replicas = replicas
        self.webui_port = webui_port or free_port()
        self.backing: Backing = backing or NoBacking()
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self.timings = timings or Timings()
        self.history_size = history_size
        self._own_data_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="fake-agones-"))
        self._faults = Faults(latency_ms)
        self._background = BackgroundLoop("fake-agones")
        self._runner: web.AppRunner | None = None
        self._cluster: Cluster | None = None
        self._controls: Controls | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- life -----------------------------------------------------------------------------

    def start(self) -> FakeAgones:
        self._background.start()
        self._background.call(self._start())
        return self

    async def _start(self) -> None:
        self._cluster = Cluster(
            namespace=self.namespace,
            fleet=self.fleet,
            replicas=self.replicas,
            port=self.webui_port,
            backing=self.backing,
            faults=self._faults,
            timings=self.timings,
            history_size=self.history_size,
            data_dir=self.data_dir,
        )
        self._controls = Controls(self._cluster)
        app = application(self._cluster, self.token)
        self._runner, self.port = await serve(
            app, self.host, self.port, handler_cancellation=True, shutdown_timeout=1.0
        )
        self._cluster.start()

    def stop(self) -> None:
        if not self._background.running:
            return
        self._background.call(self._stop(), 60)
        self._background.stop()
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    async def _stop(self) -> None:
        if self._cluster is not None:
            await self._cluster.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> FakeAgones:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def kubeconfig(self) -> dict[str, Any]:
        return kubeconfig.kubeconfig(self.url, self.token, self.namespace)

    def write_kubeconfig(self, path: Path | str) -> Path:
        return kubeconfig.write(Path(path), self.kubeconfig())

    # --- read-outs ------------------------------------------------------------------------

    def snapshot(self) -> list[GameServerView]:
        return self._call(self._ctl.snapshot())

    def game_server(self, name: str) -> dict[str, Any] | None:
        """The stored object, as the API would return it."""

        async def get() -> dict[str, Any] | None:
            return self._cl.store.get(self.namespace, name)

        return self._call(get())

    def sdk_port(self, name: str) -> int | None:
        """The port of the GameServer's Pod's SDK server, if it listens (a sidecar runs)."""

        async def port() -> int | None:
            return self._cl.gameservers.sdk_port((self.namespace, name))

        return self._call(port())

    def health_pings(self, name: str) -> int:
        """``POST /health`` calls the GameServer's sidecar has made so far."""

        async def pings() -> int:
            return self._cl.gameservers.health_pings((self.namespace, name))

        return self._call(pings())

    def wait_ready(self, count: int, timeout: float = 30.0) -> list[GameServerView]:
        """At least ``count`` Ready GameServers not being deleted; returns those Ready."""
        return self._call(self._ctl.wait_ready(count, timeout), timeout + 5)

    def wait_until(self, check: Check, timeout: float = 30.0) -> list[GameServerView]:
        """Until ``check(snapshot)`` holds; raises TimeoutError otherwise."""
        return self._call(self._ctl.wait_until(check, timeout), timeout + 5)

    def delete_counts(self) -> dict[str, int]:
        return self._call(self._ctl.delete_counts())

    def allocation_log(self) -> list[AllocationRecord]:
        return self._call(self._ctl.allocation_log())

    # --- controls -------------------------------------------------------------------------

    def set_latency(self, ms: float) -> None:
        self._call(self._ctl.set_latency(ms))

    def fail_allocations(
        self, count: int = 1, status: int = 500, message: str = AllocationFault.message
    ) -> None:
        self._fault("fail", count, status, message)

    def hang_allocations(self, count: int = 1) -> None:
        self._fault("hang", count)

    def contend_allocations(self, count: int = 1) -> None:
        self._fault("contention", count)

    def lose_allocation_responses(self, count: int = 1) -> None:
        self._fault("lose", count)

    def _fault(
        self, kind: FaultKind, count: int, status: int = 500, message: str = AllocationFault.message
    ) -> None:
        self._call(self._ctl.queue_fault(AllocationFault(kind, status, message), count))

    def set_pod_ip_delay(self, seconds: float) -> None:
        """New pods get their IP this long after Ready; 0 ends the delays under way too."""
        self._call(self._ctl.set_pod_ip_delay(seconds))

    def fail_deletes(self, count: int = 1) -> None:
        """The next `count` GameServer DELETEs answer 500 (the GameServer stays)."""
        self._call(self._ctl.fail_deletes(count))

    def mark_unhealthy(self, name: str) -> bool:
        return self._call(self._ctl.set_state(name, "Unhealthy"))

    def shutdown(self, name: str) -> bool:
        return self._call(self._ctl.set_state(name, "Shutdown"))

    def crash(self, name: str) -> bool:
        return self._call(self._ctl.crash(name))

    def delete(self, name: str) -> bool:
        return self._call(self._ctl.delete(name))

    def scale(self, replicas: int) -> None:
        self._call(self._ctl.scale(replicas))

    def close_watches(self) -> int:
        return self._call(self._ctl.close_watches())

    def hold_watches(self) -> None:
        """New watch requests wait (unanswered, not yet checked) until `release_watches`."""
        self._call(self._ctl.hold_watches(True))

    def release_watches(self) -> None:
        self._call(self._ctl.hold_watches(False))

    def watch_requests(self) -> int:
        """How many watch requests have arrived so far (held ones included)."""
        return self._call(self._ctl.watch_requests())

    def set_watch_history(self, size: int) -> None:
        self._call(self._ctl.set_watch_history(size))

    # --- plumbing -------------------------------------------------------------------------

    @property
    def _ctl(self) -> Controls:
        if self._controls is None:
            raise RuntimeError("FakeAgones is not started")
        return self._controls

    @property
    def _cl(self) -> Cluster:
        if self._cluster is None:
            raise RuntimeError("FakeAgones is not started")
        return self._cluster

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return self._background.call(coroutine, timeout)
