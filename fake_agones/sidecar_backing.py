"""Pods as the chart runs them: the demo WebUI and the real sidecar (``python -m sidecar``).

Each pod's folder holds what is pod-local in a real pod (``emptyDir``): ``outputs/`` (the
WebUI saves to ``outputs/txt2img-images``, the sidecar delivers from ``outputs``),
``sidecar-state/`` (the sidecar's journal) and ``webui/`` (the WebUI's own data), plus the two
containers' logs. One share (``users/``, ``deletions/``) is every pod's ``SHARE_DIR``, as the
Filestore volume is; give the allocator `SidecarBacking.users_dir` and ``deletions_dir``.

The pod's SDK server (`fake_agones.sdk_server`) listens before the containers start, and from
then on the sidecar drives the GameServer as in a cluster: Ready once the WebUI answers, the
outputs confirmation once an allocation labels it, Shutdown when it finds a second owner.
`start` returns as soon as both processes run; the controller does not make the GameServer
Ready itself. Either process exiting by itself is a crashed container (Unhealthy, replaced).

Stopping is the kubelet's SIGTERM with the WebUI's ``preStop`` sleep modelled as an order: the
sidecar is signalled first and waited for (it keeps the WebUI's settings, which needs the
WebUI still answering, then delivers what is pending), then the WebUI; each is killed after
its grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fake_agones.backing import BackingFailed, Pod

REPO = Path(__file__).resolve().parents[1]
WEBUI_ARGV = (
    "{python}", "-m", "demo_webui", "--host", "{host}", "--port", "{port}",
    "--user-dir", "{dir}/webui", "--outputs-dir", "{dir}/outputs/txt2img-images",
    "--hide-ui-dir-config", "--delay", "0.1",
)  # fmt: skip
"""A pod's WebUI: saves under pod-local ``outputs``, folders not settable, quick pictures."""
SIDECAR_SETTINGS: Mapping[str, str] = {
    "DELIVERY_POLL_SECONDS": "0.1",
    "DELETIONS_PERIOD_SECONDS": "0.2",
    "HEALTH_PERIOD_SECONDS": "1",
    "DRAIN_TIMEOUT_SECONDS": "10",
}
"""Faster than the product's defaults where tests wait on them; ``OPTIONS_PERIOD_SECONDS``
keeps its 60 s, so the settings a person changes are kept when the pod stops."""
SIDECAR_VARIABLES = (
    "AGONES_SDK_HTTP_PORT", "WEBUI_URL", "SHARE_DIR", "OUTPUTS_DIR", "STATE_DIR",
    "MAX_FILE_BYTES", "MAX_FILES", "MAX_SESSION_BYTES", "DELIVERY_POLL_SECONDS",
    "OPTIONS_PERIOD_SECONDS", "DELETIONS_PERIOD_SECONDS", "DRAIN_TIMEOUT_SECONDS",
    "HEALTH_PERIOD_SECONDS", "WEBUI_PING_TIMEOUT_SECONDS", "WEBUI_START_TIMEOUT_SECONDS",
    "LOG_LEVEL",
)  # fmt: skip
"""What ``sidecar/settings.py`` reads: never inherited from whoever runs the fake."""


@dataclass(frozen=True)
class PodFolders:
    """A pod's pod-local folders, all under its own directory."""

    root: Path

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def state(self) -> Path:
        return self.root / "sidecar-state"

    def make(self) -> PodFolders:
        for folder in (self.outputs / "txt2img-images", self.state, self.root / "webui"):
            folder.mkdir(parents=True, exist_ok=True)
        return self


class Container:
    """One process of a pod, in its own process group, its output in a log file."""

    def __init__(self, process: asyncio.subprocess.Process, grace: float) -> None:
        self.process = process
        self.grace = grace

    @classmethod
    async def run(
        cls, argv: Sequence[str], env: Mapping[str, str], log: Path, grace: float
    ) -> Container:
        with log.open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env=dict(env),
                cwd=log.parent,
            )
        return cls(process, grace)

    async def terminate(self) -> None:
        """SIGTERM, SIGKILL after the grace period; returns once it is gone."""
        if self.process.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), self.grace)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await self.process.wait()
            except asyncio.CancelledError:  # the fake stopping: never leave it running
                self._signal(signal.SIGKILL)
                raise

    def _signal(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


@dataclass
class RunningPod:
    webui: Container
    sidecar: Container
    watcher: asyncio.Task[None]


class SidecarBacking:
    """Each pod: the demo WebUI on the Pod IP and port, and the real sidecar beside it.

    ``share_dir``: the shared volume, made with ``users/`` and ``deletions/`` if missing; it
    must not lie inside the fake's data folder (the sidecar refuses overlapping folders).
    ``sidecar_settings``: environment variables over `SIDECAR_SETTINGS`. ``sidecar_grace``:
    the pod's ``terminationGracePeriodSeconds`` for the sidecar (keep it above its drain).
    ``webui_prestop``: the WebUI container's preStop sleep (the chart's is 5 s; shorter here,
    and still a bound on the sidecar's last look).
    """

    def __init__(
        self,
        share_dir: Path,
        *,
        sidecar_settings: Mapping[str, str] | None = None,
        webui_argv: Sequence[str] = WEBUI_ARGV,
        sidecar_grace: float = 20.0,
        webui_grace: float = 5.0,
        webui_prestop: float = 1.0,
    ) -> None:
        self.share_dir = share_dir.absolute()
        self.users_dir.mkdir(parents=True, exist_ok=True)
        self.deletions_dir.mkdir(parents=True, exist_ok=True)
        self.sidecar_settings = {**SIDECAR_SETTINGS, **(sidecar_settings or {})}
        self.webui_argv = tuple(webui_argv)
        self.sidecar_grace = sidecar_grace
        self.webui_grace = webui_grace
        self.webui_prestop = webui_prestop
        self._pods: dict[str, RunningPod] = {}

    @property
    def users_dir(self) -> Path:
        return self.share_dir / "users"

    @property
    def deletions_dir(self) -> Path:
        return self.share_dir / "deletions"

    async def start(self, pod: Pod) -> None:
        if pod.sdk is None:
            raise BackingFailed(f"{pod.name}: no Agones SDK server for its sidecar")
        sdk_port = await pod.sdk.listen()
        folders = PodFolders(pod.directory.absolute()).make()
        webui = await Container.run(
            self._webui_argv(pod, folders), _environment(), folders.root / "webui.log",
            self.webui_grace,
        )  # fmt: skip
        try:
            sidecar = await Container.run(
                (sys.executable, "-m", "sidecar"), self._sidecar_env(pod, folders, sdk_port),
                folders.root / "sidecar.log", self.sidecar_grace,
            )  # fmt: skip
        except BaseException:
            await webui.terminate()
            raise
        watcher = asyncio.get_running_loop().create_task(_report_exit(pod, webui, sidecar))
        self._pods[pod.name] = RunningPod(webui, sidecar, watcher)

    async def stop(self, pod: Pod) -> None:
        """As the kubelet stops the pod: SIGTERM to the sidecar at once, to the WebUI when its
        preStop hook ends (``webui_prestop`` seconds; sooner here if the sidecar is gone
        already), so the sidecar's last look at the settings must fit in that time."""
        running = self._pods.pop(pod.name, None)
        if running is None:
            return
        sidecar = asyncio.ensure_future(running.sidecar.terminate())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(sidecar), self.webui_prestop)
            await running.webui.terminate()
            await sidecar
        finally:
            if not sidecar.done():
                sidecar.cancel()
        await running.watcher

    def _webui_argv(self, pod: Pod, folders: PodFolders) -> list[str]:
        values = {"host": pod.host, "port": pod.port, "dir": folders.root, "name": pod.name}
        return [part.format(python=sys.executable, **values) for part in self.webui_argv]

    def _sidecar_env(self, pod: Pod, folders: PodFolders, sdk_port: int) -> dict[str, str]:
        return _environment(
            AGONES_SDK_HTTP_PORT=str(sdk_port),
            WEBUI_URL=pod.url,
            SHARE_DIR=str(self.share_dir),
            OUTPUTS_DIR=str(folders.outputs),
            STATE_DIR=str(folders.state),
            **self.sidecar_settings,
        )


def _environment(**settings: str) -> dict[str, str]:
    """This process's environment without sidecar settings, the repository importable."""
    env = {k: v for k, v in os.environ.items() if k not in SIDECAR_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **settings}


async def _report_exit(pod: Pod, *containers: Container) -> None:
    """The first container to exit ends the pod (restartPolicy Never): ``pod.exited``."""
    waits = [asyncio.ensure_future(container.process.wait()) for container in containers]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    pod.exited.set()
