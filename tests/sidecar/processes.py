"""Real processes for the sidecar tests: ``python -m sidecar`` and ``python -m demo_webui``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.processes import REPO, free_port, wait_until

SIDECAR_VARIABLES = (
    "AGONES_SDK_HTTP_PORT",
    "WEBUI_URL",
    "SHARE_DIR",
    "OUTPUTS_DIR",
    "STATE_DIR",
    "MAX_FILE_BYTES",
    "MAX_FILES",
    "MAX_SESSION_BYTES",
    "DELIVERY_POLL_SECONDS",
    "OPTIONS_PERIOD_SECONDS",
    "DELETIONS_PERIOD_SECONDS",
    "DRAIN_TIMEOUT_SECONDS",
    "HEALTH_PERIOD_SECONDS",
    "WEBUI_PING_TIMEOUT_SECONDS",
    "WEBUI_START_TIMEOUT_SECONDS",
    "LOG_LEVEL",
)
WEBUI_START_TIMEOUT = 60.0


def sidecar_environment(**settings: str) -> dict[str, str]:
    """This environment without any sidecar setting, plus ``settings``; finds the repo's code."""
    env = {k: v for k, v in os.environ.items() if k not in SIDECAR_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **settings}


class SidecarProcess:
    def __init__(self, log_path: Path, module: str = "sidecar", **settings: str) -> None:
        """``module``: what ``python -m`` runs; `tests.sidecar.paused_sidecar` for a sidecar
        that stops in the middle of its first copy."""
        self.log_path = log_path
        self.module = module
        self.env = sidecar_environment(**settings)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SidecarProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.log_path.parent,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_for_log(self, text: str, count: int = 1, within: float = 30.0) -> None:
        """Until ``text`` has appeared in ``count`` lines of the log."""
        deadline = time.monotonic() + within
        while self.log().count(text) < count:
            if not self.running():
                raise AssertionError(f"the sidecar exited; its log:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} x {text!r} in {within} s; log:\n{self.log()}")
            await asyncio.sleep(0.02)

    def signal_and_wait(self, signum: signal.Signals, timeout: float) -> int:
        """The exit status; raises `subprocess.TimeoutExpired` if it is still running then."""
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def stop(self) -> None:
        """SIGKILL: the container crashed or was killed; nothing is delivered on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class DemoWebUI:
    """``python -m demo_webui`` in ``base``, set up as in a pod: it saves txt2img pictures in
    ``<outputs>/txt2img-images`` (pod-local) and is started with ``--hide-ui-dir-config``."""

    def __init__(self, base: Path, outputs: Path) -> None:
        self.base = base
        self.port = free_port()
        self.outputs_dir = outputs / "txt2img-images"
        self.user_dir = base / f"webui-{self.port}"
        self.log_path = base / f"webui-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DemoWebUI:
        command = [
            sys.executable, "-m", "demo_webui", "--host", "127.0.0.1", "--port", str(self.port),
            "--user-dir", str(self.user_dir), "--outputs-dir", str(self.outputs_dir),
            "--hide-ui-dir-config", "--delay", "0.1",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log, cwd=self.base
            )
        return self

    def wait_until_it_answers(self) -> DemoWebUI:
        wait_until(self._answers, WEBUI_START_TIMEOUT, "demo_webui to answer /internal/ping")
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"demo_webui exited: {self.log_path.read_text()}")
        try:
            return httpx.get(f"{self.url}/internal/ping", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
