"""Starting, waiting for and stopping the processes a benchmark needs.

Every process is started in its own session (process group) so that stopping it also stops
whatever it forked (nginx workers, node helpers). `Processes` is a context manager: leaving it —
normally, on an exception or on Ctrl-C — stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil


class StartupError(RuntimeError):
    """A process did not come up; the message carries the tail of its log."""


@dataclass
class Service:
    """One started process, its log file and the port it serves on (if any)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class Processes:
    """Starts processes with logs in `workdir` and stops all of them on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._services: list[Service] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str | Path],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        drop_env_prefix: str | None = None,
    ) -> Service:
        """Start `argv` with our environment plus `env` (minus variables starting with
        `drop_env_prefix`, so that settings of the caller's shell cannot leak in)."""
        log = self.workdir / f"{name}.log"
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not (drop_env_prefix and k.startswith(drop_env_prefix))
        }
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**inherited, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        service = Service(name=name, popen=popen, log=log, port=port)
        self._services.append(service)
        return service

    def run(
        self, name: str, argv: Sequence[str | Path], *, timeout: float, cwd: Path | None = None
    ) -> str:
        """Run a command to completion (killed with the rest on Ctrl-C); return its stdout."""
        popen = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            start_new_session=True,
        )
        service = Service(name=name, popen=popen, log=self.workdir / f"{name}.log")
        self._services.append(service)
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{name} did not finish within {timeout:.0f} s") from e
        finally:
            self.stop(service)
        if popen.returncode != 0:
            raise RuntimeError(
                f"{name} exited with {popen.returncode}: {err.decode(errors='replace').strip()}"
            )
        return out.decode(errors="replace")

    def stop(self, service: Service, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers, reap the leader."""
        if service.alive():
            _signal_group(service.pid, signal.SIGTERM)
            try:
                service.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(service.pid, signal.SIGKILL)
                service.popen.wait(timeout=timeout)
        # Children of the leader (e.g. nginx workers) may outlive it for a moment.
        _signal_group(service.pid, signal.SIGKILL)
        if service in self._services:
            self._services.remove(service)

    def running(self) -> list[Service]:
        """The services started and not yet stopped, oldest first."""
        return list(self._services)

    def stop_all(self) -> None:
        for service in reversed(list(self._services)):
            with contextlib.suppress(Exception):
                self.stop(service)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE (inherited by children) to at least `wanted` if allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    new_soft = wanted if hard == resource.RLIM_INFINITY else max(soft, min(hard, wanted))
    if new_soft > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    return max(soft, new_soft)


def wait_for_http(
    service: Service,
    url: str,
    *,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll `url` until it answers 200; fail early (with the log) if the process dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not service.alive():
            raise StartupError(
                f"{service.name} exited with {service.popen.returncode} during start-up:\n"
                f"{service.log_tail()}"
            )
        try:
            request = urllib.request.Request(url, headers=dict(headers or {}))
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        time.sleep(0.05)
    raise StartupError(
        f"{service.name} did not answer 200 at {url} within {timeout:.0f} s ({last}):\n"
        f"{service.log_tail()}"
    )


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (those alive right now)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int:
    """Resident set size in bytes of a process plus its descendants."""
    total = 0
    for process in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process and its live descendants."""
    total = 0.0
    for process in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total
