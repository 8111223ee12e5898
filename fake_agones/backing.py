"""What runs behind each GameServer's Pod IP: nothing, a real process, or an in-process app.

A GameServer becomes Ready only once its backing's ``start`` has returned (the sidecar calls
the SDK's Ready when the WebUI answers); its Pod is stopped when the GameServer goes. A
backing that sets ``pod.exited`` by itself is a crashed container: Agones marks the
GameServer Unhealthy (SidecarContainers: pod restartPolicy Never) and the Fleet replaces it.
A backing that runs a real sidecar starts the pod's SDK server (``pod.sdk.listen()``): then
readiness and the outputs confirmation come from that sidecar's SDK calls instead
(`fake_agones.sidecar_backing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web

from fake_agones.sdk_server import PodSDK


@dataclass
class Pod:
    """One GameServer's Pod: its own loopback address, the fleet's container port."""

    name: str
    namespace: str
    host: str
    port: int
    directory: Path
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    sdk: PodSDK | None = None
    """The pod's Agones SDK server, listening once a backing asks for it."""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def runs_sidecar(self) -> bool:
        """A real sidecar drives this pod's GameServer through its SDK server."""
        return self.sdk is not None and self.sdk.listening


class BackingFailed(RuntimeError):
    """The Pod's workload did not come up."""


class Backing(Protocol):
    async def start(self, pod: Pod) -> None:
        """Start the workload; return once it answers, raise BackingFailed if it cannot."""

    async def stop(self, pod: Pod) -> None:
        """Stop the workload; return once it is gone."""


class NoBacking:
    """Nothing listens; the GameServer turns Ready after a short pretend start-up."""

    def __init__(self, startup_delay: float = 0.05) -> None:
        self.startup_delay = startup_delay

    async def start(self, pod: Pod) -> None:
        await asyncio.sleep(self.startup_delay)

    async def stop(self, pod: Pod) -> None:
        return None


DEMO_WEBUI_ARGV = (
    "{python}",
    "-m",
    "demo_webui",
    "--host",
    "{host}",
    "--port",
    "{port}",
    "--user-dir",
    "{dir}",
    "--outputs-dir",
    "{dir}/outputs",
)


class ProcessBacking:
    """A real process per GameServer, started from an argv template.

    Placeholders: ``{host}`` (the Pod IP), ``{port}``, ``{dir}`` (the Pod's own folder),
    ``{name}`` (the GameServer), ``{python}`` (this interpreter). Ready once
    ``GET http://{host}:{port}{ready_path}`` answers 200; stopped as the kubelet stops a
    container: SIGTERM to its process group, SIGKILL after ``stop_grace`` seconds.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        ready_path: str = "/internal/ping",
        startup_timeout: float = 120.0,
        stop_grace: float = 5.0,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.ready_path = ready_path
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.env = env
        self.cwd = cwd
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._reporters: dict[str, asyncio.Task[None]] = {}

    @classmethod
    def demo_webui(
        cls, *, startup_timeout: float = 120.0, stop_grace: float = 5.0, cwd: Path | None = None
    ) -> ProcessBacking:
        """The repository's demo WebUI (answers /internal/ping after ~5-7 s of start-up)."""
        return cls(DEMO_WEBUI_ARGV, startup_timeout=startup_timeout, stop_grace=stop_grace, cwd=cwd)

    async def start(self, pod: Pod) -> None:
        pod.directory.mkdir(parents=True, exist_ok=True)
        values = {"host": pod.host, "port": pod.port, "dir": pod.directory, "name": pod.name}
        argv = [part.format(python=sys.executable, **values) for part in self.argv]
        with (pod.directory / "process.log").open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd,
            )
        self._processes[pod.name] = process
        self._reporters[pod.name] = asyncio.get_running_loop().create_task(
            _report_exit(pod, process)
        )
        await self._answering(pod, process)

    async def _answering(self, pod: Pod, process: asyncio.subprocess.Process) -> None:
        url = pod.url + self.ready_path
        deadline = asyncio.get_running_loop().time() + self.startup_timeout
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while asyncio.get_running_loop().time() < deadline:
                if process.returncode is not None:
                    raise BackingFailed(f"{pod.name}: exited with {process.returncode}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise BackingFailed(f"{pod.name}: {url} did not answer in {self.startup_timeout} s")

    async def stop(self, pod: Pod) -> None:
        process = self._processes.pop(pod.name, None)
        reporter = self._reporters.pop(pod.name, None)
        if process is not None and process.returncode is None:
            _signal_group(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.stop_grace)
            except TimeoutError:
                _signal_group(process, signal.SIGKILL)
                await process.wait()
        if reporter is not None:
            await reporter


async def _report_exit(pod: Pod, process: asyncio.subprocess.Process) -> None:
    await process.wait()
    pod.exited.set()


def _signal_group(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


AppFactory = Callable[[Pod], web.Application | Awaitable[web.Application]]


class AppBacking:
    """Each Pod serves an aiohttp application, in the fake's own event loop."""

    def __init__(self, factory: AppFactory) -> None:
        self.factory = factory
        self._runners: dict[str, web.AppRunner] = {}

    async def start(self, pod: Pod) -> None:
        made = self.factory(pod)
        app = made if isinstance(made, web.Application) else await made
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runners[pod.name] = runner
        await web.TCPSite(runner, pod.host, pod.port).start()

    async def stop(self, pod: Pod) -> None:
        runner = self._runners.pop(pod.name, None)
        if runner is not None:
            await runner.cleanup()
