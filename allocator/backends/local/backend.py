"""LocalBackend: one WebUI process per person on this machine.

Each person's process runs in its own process group with its own folder
(`<data_dir>/users/<slug>/`, outputs in `outputs/`) and, given a list of GPUs, a GPU of its
own (`CUDA_VISIBLE_DEVICES`, and `{gpu}` in the command). The registry (`registry.py`) is the
truth about which processes exist, so any `serve` process on this machine can stop any WebUI.
Children get SIGTERM when the process that started them dies, so none is orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from allocator.backends.local.registry import Entry, Registry, same_process
from allocator.settings import Settings, default_data_dir, former_default_data_dir
from allocator.types import (
    AllocationFailed,
    Capacity,
    GoneCallback,
    Person,
    Placement,
    ProgressCallback,
    Session,
    State,
)
from allocator.webui_options import TIMEOUT_SECONDS, KeptOptions

log = logging.getLogger(__name__)
STALE_MARK_SECONDS = 3600.0  # "stopped on purpose" marks no watcher took

HOST = "127.0.0.1"
PING_PATH = "/internal/ping"
STOP_GRACE_SECONDS = 5.0
# The first thing each WebUI process runs, instead of a preexec_fn (which is not safe in a
# process with threads, and ours has a thread pool): ask the kernel for SIGTERM when this
# server goes (even by SIGKILL), leave at once if it already went, then become the WebUI.
_GUARD = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit("sd-allocator: the server that started this WebUI is gone")
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.exit(f"sd-allocator: cannot run {sys.argv[2]}: {exc.strerror}")
"""


class LocalBackend:
    name = "local"
    # A release reads the WebUI's settings, then stops it (SIGKILL after the grace period).
    release_timeout = TIMEOUT_SECONDS + STOP_GRACE_SECONDS

    def __init__(
        self,
        command: str,
        data_dir: Path,
        max_sessions: int,
        start_timeout: float,
        gpus: tuple[str, ...] = (),
        users_dir: Path | None = None,
    ) -> None:
        self._command = command
        self._users = users_dir or data_dir / "users"
        self._options = KeptOptions(self._users)  # a person's settings, for their next WebUI
        self._run = data_dir / "run"
        self._max = max_sessions
        self._gpus = gpus  # empty: children inherit CUDA_VISIBLE_DEVICES as it is
        self._start_timeout = start_timeout
        self._registry = Registry(self._run, max_sessions, gpus, claim_ttl=start_timeout + 10)
        self._children: dict[int, tuple[asyncio.subprocess.Process, str]] = {}
        self._stopping: set[asyncio.subprocess.Process] = set()  # exits we caused
        self._watchers: set[asyncio.Task[None]] = set()
        self._gone: GoneCallback | None = None
        self._client: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBackend:
        return cls(
            settings.local_command,
            settings.data_dir,
            settings.local_capacity,
            settings.start_timeout,
            settings.local_gpus,
            settings.users_dir,
        )

    async def start(self) -> None:
        self._run.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._registry.drop_old_marks, STALE_MARK_SECONDS)
        self._users.mkdir(parents=True, exist_ok=True)
        self._warn_of_dot_folders()
        self._point_at_former_folders()
        if self._gpus:
            log.info(
                "one GPU per WebUI from SDA_LOCAL_GPUS=%s: at most %d WebUIs at once",
                ",".join(self._gpus),
                self._max,
            )

    def _warn_of_dot_folders(self) -> None:
        # The path as given, links not followed: that is how Gradio 3 judges it.
        hidden = [part for part in Path(os.path.abspath(self._users)).parts if part[0] == "."]
        if hidden:
            log.warning(
                "SDA_DATA_DIR %s is inside a folder starting with '.' (%s): AUTOMATIC1111's "
                "Gradio 3 refuses to serve pictures from such a path (/file= answers 403), so "
                "its gallery would stay empty; choose a folder without one",
                self._users.parent,
                hidden[0],
            )

    def _point_at_former_folders(self) -> None:
        former = former_default_data_dir() / "users"
        if self._users.parent != default_data_dir() or not former.is_dir():
            return
        if former.resolve() != self._users.resolve() and any(former.iterdir()):
            log.warning(
                "people's folders (their pictures) from before are still in %s; this version "
                "keeps them in %s by default: move them there (mv %s/* %s/) or set "
                "SDA_DATA_DIR",
                former,
                self._users,
                former,
                self._users,
            )

    async def close(self) -> None:
        """Stop every WebUI this process started (all at once: each may take the whole
        grace period, and the service manager's stop timeout is for all of them)."""
        children = [(pid, slug) for pid, (_, slug) in self._children.items()]
        await asyncio.gather(*(self._stop_and_forget(pid, slug) for pid, slug in children))
        for watcher in list(self._watchers):
            watcher.cancel()
        if self._client:
            await self._client.close()
        await self._options.close()

    async def _stop_and_forget(self, pid: int, slug: str) -> None:
        entry = await asyncio.to_thread(self._registry.entry_of, slug)
        if entry is not None and entry.pid == pid and entry.port is not None:
            await self._options.capture(slug, Placement("", HOST, entry.port))
        await self._stop(pid)
        await asyncio.to_thread(self._registry.forget, slug, pid)

    # -- the Backend protocol -------------------------------------------------------------

    async def allocate(self, person: Person, progress: ProgressCallback) -> Placement:
        claim = await asyncio.to_thread(self._registry.claim, person)
        if claim.existing is not None:
            placement = await self._reattach(claim.existing)
            if placement is not None:
                return placement
            claim = await asyncio.to_thread(self._registry.claim, person, replace=True)
        await progress(State.STARTING, "Your WebUI is loading; this usually takes a few seconds.")
        try:
            placement = await self._spawn(person, claim.gpu)
        except BaseException:
            await asyncio.to_thread(self._registry.forget, person.slug)
            raise
        await self._options.apply(person.slug, placement)  # before anyone is routed there
        return placement

    async def find_running(self, person: Person) -> Session | None:
        entry = await asyncio.to_thread(self._registry.entry_of, person.slug)
        if entry is None or entry.pid is None or entry.port is None:
            return None
        if entry.email != person.email or not await self._answers(entry.port):
            return None
        return self._session_of(entry)

    async def release(self, session: Session) -> None:
        pid = session.placement.handle.get("pid")
        created = session.placement.handle.get("create_time")
        if isinstance(pid, int) and same_process(pid, created):
            await self._options.capture(session.slug, session.placement)  # for the next one
            if pid not in self._children:  # another serve process's: tell its watcher
                await asyncio.to_thread(self._registry.mark_stopping, session.slug, pid)
            await self._stop(pid)
        await asyncio.to_thread(self._registry.forget, session.slug, pid)

    async def is_alive(self, session: Session) -> bool:
        handle = session.placement.handle
        return same_process(handle.get("pid"), handle.get("create_time"))

    def on_gone(self, callback: GoneCallback) -> None:
        self._gone = callback

    async def inventory(self) -> list[Session]:
        entries = await asyncio.to_thread(self._registry.running)
        return [
            self._session_of(entry)
            for entry in entries
            if entry.pid is not None and entry.port is not None
        ]

    async def exits_handled(self) -> None:
        """Wait until every WebUI this process started has exited and that was handled."""
        if self._watchers:
            await asyncio.wait(set(self._watchers))

    async def capacity(self) -> Capacity:
        return Capacity(free=await asyncio.to_thread(self._registry.free_slots))

    def _session_of(self, entry: Entry) -> Session:
        return Session(entry.email, entry.slug, self.name, _placement(entry), entry.claimed_at)

    # -- starting a WebUI -----------------------------------------------------------------

    async def _spawn(self, person: Person, gpu: str | None) -> Placement:
        port = _free_port()
        user_dir = self._users / person.slug
        outputs = user_dir / "outputs"
        outputs.mkdir(parents=True, exist_ok=True)
        argv = self._argv(port, user_dir, outputs, gpu)
        log_path = user_dir / "webui.log"
        with log_path.open("ab") as log_file:
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-I",
                    "-c",
                    _GUARD,
                    str(os.getpid()),
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=user_dir,
                    env=_child_environment(user_dir, gpu),
                    start_new_session=True,
                )
            except OSError as exc:
                raise AllocationFailed(f"Could not start the WebUI ({argv[0]}): {exc}") from exc
        self._children[process.pid] = (process, person.slug)
        created = psutil.Process(process.pid).create_time()
        await asyncio.to_thread(self._registry.record, person, process.pid, created, port, gpu)
        log.info(
            "started WebUI for %s: pid %s on port %s%s",
            person.email,
            process.pid,
            port,
            f", GPU {gpu}" if gpu is not None else "",
        )
        try:
            await self._wait_ready(process, port, log_path)
        except BaseException:
            await self._stop(process.pid)
            raise
        server = _server_name(person.slug, process.pid)
        watcher = asyncio.create_task(self._watch(process, person, server), name="watch-webui")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return Placement(server, HOST, port, _handle(process.pid, created, gpu))

    async def _watch(
        self, process: asyncio.subprocess.Process, person: Person, server: str
    ) -> None:
        """A WebUI that exits without being stopped is reported at once (its port is free
        for anyone's next WebUI: the mapping must go before that happens). Forgetting its
        entry frees its GPU."""
        code = await process.wait()
        if process in self._stopping:
            self._stopping.discard(process)
            return
        if await asyncio.to_thread(self._registry.stopped_on_purpose, person.slug, process.pid):
            self._children.pop(process.pid, None)  # another serve process released it
            log.info(
                "WebUI %s of %s was stopped by another allocator process", server, person.email
            )
            return
        log.warning("WebUI %s of %s exited by itself with code %s", server, person.email, code)
        self._children.pop(process.pid, None)
        # Whatever it left running in its group would keep its GPU once it is handed out.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.to_thread(self._registry.forget, person.slug, process.pid)
        if self._gone is not None:
            await self._gone(person.email, server)

    def _argv(self, port: int, user_dir: Path, outputs: Path, gpu: str | None) -> list[str]:
        values = {
            "port": str(port),
            "user_dir": str(user_dir),
            "outputs_dir": str(outputs),
            "python": sys.executable,
            "gpu": gpu or "",  # Settings refuse {gpu} without SDA_LOCAL_GPUS
        }
        return [part.format(**values) for part in shlex.split(self._command)]

    async def _wait_ready(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise AllocationFailed(
                    f"The WebUI exited with code {process.returncode} while starting: "
                    f"{_last_line(log)}"
                )
            if await self._answers(port):
                return
            await asyncio.sleep(0.2)
        raise AllocationFailed(
            f"The WebUI did not answer within {self._start_timeout:.0f} s; log: {log}"
        )

    async def _answers(self, port: int) -> bool:
        if self._client is None:
            timeout = aiohttp.ClientTimeout(total=2)
            self._client = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._client.get(f"http://{HOST}:{port}{PING_PATH}") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _reattach(self, entry: Entry) -> Placement | None:
        """A WebUI of this person's is still running (the mapping was lost): use it."""
        if entry.pid is None or entry.port is None or not await self._answers(entry.port):
            if entry.pid is not None and same_process(entry.pid, entry.create_time):
                await self._stop(entry.pid)
            return None
        log.info("re-attached %s to running WebUI pid %s", entry.email, entry.pid)
        return _placement(entry)

    # -- stopping -------------------------------------------------------------------------

    async def _stop(self, pid: int) -> None:
        child = self._children.get(pid)
        if child is not None:
            self._stopping.add(child[0])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        if not await asyncio.to_thread(_wait_gone, pid, STOP_GRACE_SECONDS):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if child is not None:
            self._children.pop(pid, None)
            with contextlib.suppress(ProcessLookupError):
                await child[0].wait()


def _server_name(slug: str, pid: int) -> str:
    """Unique per WebUI process, so a stale mapping is never mistaken for a new one."""
    return f"local-{slug}-{pid}"


def _placement(entry: Entry) -> Placement:
    """Where a running WebUI of the registry is (its entry has a pid and a port)."""
    assert entry.pid is not None and entry.port is not None
    handle = _handle(entry.pid, entry.create_time, entry.gpu)
    return Placement(_server_name(entry.slug, entry.pid), HOST, entry.port, handle)


def _handle(pid: int, create_time: float | None, gpu: str | None) -> dict[str, Any]:
    """What finds the process again, and which GPU it has (for operators)."""
    handle: dict[str, Any] = {"pid": pid, "create_time": create_time}
    if gpu is not None:
        handle["gpu"] = gpu
    return handle


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not same_process(pid, None):
            return True
        time.sleep(0.05)
    return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _child_environment(user_dir: Path, gpu: str | None) -> dict[str, str]:
    """The server's environment without its own settings (they may hold secrets), limited
    to the person's GPU if one was handed out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDA_")}
    # Gradio's file cache, per person; not a dot-folder, which Gradio 3 refuses to serve from.
    env["GRADIO_TEMP_DIR"] = str(user_dir / "gradio-cache")
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1][-300:] if lines else "(no output)"
