"""Real processes for the tests: redis-server and `sd-allocator serve`, on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.tls import TlsFiles

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def require(tool: str) -> str:
    """The tool's path; skips the test without it, or fails under SDA_REQUIRE_ALL=1 (CI)."""
    found = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if found:
        return found
    message = f"{tool} is not installed (run scripts/system-deps.sh)"
    if os.environ.get("SDA_REQUIRE_ALL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class RedisServer:
    """redis-server on a free loopback port; with `tls`, only TLS (as Memorystore with TLS)."""

    def __init__(self, data_dir: Path, tls: TlsFiles | None = None) -> None:
        self.binary = require("redis-server")
        self.port = free_port()
        self.data_dir = data_dir
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            *("--port", "0", "--tls-port", str(self.port)),
            *("--tls-cert-file", str(self.tls.server_cert)),
            *("--tls-key-file", str(self.tls.server_key)),
            *("--tls-ca-cert-file", str(self.tls.ca_cert)),
            *("--tls-auth-clients", "no"),
        ]

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                *self._listen_args(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._pings, 10, "redis-server")

    def _pings(self) -> bool:
        try:
            with self._connection(0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _connection(self, timeout: float) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.tls is None:
            return conn
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        context.check_hostname = False  # a readiness probe; the tests check names themselves
        return context.wrap_socket(conn, server_hostname="127.0.0.1")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def flush(self) -> None:
        with self._connection(2) as conn:
            conn.sendall(b"FLUSHALL\r\n")
            assert conn.recv(16).startswith(b"+OK")


class AllocatorProcess:
    """`sd-allocator serve` as people run it, with settings from the environment."""

    def __init__(self, data_dir: Path, **settings: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SDA_")}
        self.env.update(
            SDA_PORT=str(self.port),
            SDA_METRICS_PORT="0",
            SDA_DATA_DIR=str(data_dir),
            SDA_LOG_LEVEL="info",
        )
        self.env.update({f"SDA_{k.upper()}": v for k, v in settings.items()})
        self.log_path = data_dir / f"allocator-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> AllocatorProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "sd-allocator"), "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        try:
            wait_until(self._healthy, timeout, "the allocator to answer /_allocator/healthz")
        except AssertionError:
            self.stop()
            raise AssertionError(f"allocator did not start:\n{self.log()}") from None
        return self

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"allocator exited with {self.process.returncode}:\n{self.log()}")
        return _answers(f"{self.url}/_allocator/healthz")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def header_for(email: str) -> dict[str, str]:
    return {"X-Goog-Authenticated-User-Email": f"accounts.google.com:{email}"}


TINY_WEBUI = """\
import http.server as h, sys
class H(h.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
h.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"""


LAUNCH_RECORD = "launch.json"
# Written before the server listens, so it is complete once the WebUI answers.
RECORDING = f"""\
import json, os, sys
seen = {{"argv": sys.argv[1:], "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}}
with open("{LAUNCH_RECORD}", "w") as record:
    json.dump(seen, record)
"""


def tiny_webui(folder: Path, record: bool = False) -> Path:
    """A script that answers 200 to every GET on the port it is given: a WebUI stand-in for
    the local backend that starts in milliseconds (`SDA_LOCAL_COMMAND="{python} <it> {port}"`).

    With `record`, it first writes its arguments and `CUDA_VISIBLE_DEVICES` (null if unset)
    to `LAUNCH_RECORD` in its working folder, which the local backend makes the person's."""
    script = folder / ("recording_webui.py" if record else "webui.py")
    script.write_text(RECORDING + TINY_WEBUI if record else TINY_WEBUI)
    return script
