"""The allocator inside the test process: `AllocatorApp` under uvicorn in a thread.

Real HTTP, SSE and WebSockets on a loopback port, the same uvicorn server class and settings
as `sd-allocator serve`, but no process to start (about a second each) and the parts within
reach: the test can build the runtime from its own parts (a recording backend, the memory
store) and look at them afterwards. What only a real process proves (signals, workers,
kill -9, process groups) stays with `AllocatorProcess`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from allocator.app import AllocatorApp
from allocator.runtime import Runtime
from allocator.server import Server, uvicorn_config
from allocator.settings import Settings, load_settings
from fake_agones import FakeAgones
from tests.support.processes import wait_until

T = TypeVar("T")
START_SECONDS = 30.0


def settings_for(data_dir: Path, **settings: Any) -> Settings:
    """Settings as a test means them: nothing from this machine's SDA_* environment or home."""
    values: dict[str, Any] = {"data_dir": data_dir, "metrics_port": 0}
    values.update(settings)
    return load_settings(**values)


RuntimeMaker = Callable[[Settings], Runtime]


class InProcessAllocator:
    """`make_runtime` builds the runtime from the test's own parts (`Runtime.from_parts`); it
    runs on the server's event loop, as uvicorn's app factory does."""

    def __init__(self, settings: Settings, make_runtime: RuntimeMaker | None = None) -> None:
        self.settings = settings
        self._make_runtime = make_runtime or Runtime.build
        self._socket = socket.create_server((settings.host, 0))
        self.port: int = self._socket.getsockname()[1]
        self._app: AllocatorApp | None = None
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._run, name="allocator", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None

    @classmethod
    def with_settings(cls, data_dir: Path, **settings: Any) -> InProcessAllocator:
        return cls(settings_for(data_dir, **settings))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app(self) -> AllocatorApp:
        assert self._app is not None, "start() first"
        return self._app

    @property
    def runtime(self) -> Runtime:
        return self.app.runtime

    def start(self, **environ: str) -> InProcessAllocator:
        """`environ`: variables the parts read while they are built (e.g. KUBECONFIG), set
        for the start-up only."""
        saved = {name: os.environ.get(name) for name in environ}
        os.environ.update(environ)
        try:
            self._thread.start()
            wait_until(self._started, START_SECONDS, "the in-process allocator to start")
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return self

    def _started(self) -> bool:
        if self._failure is not None or not self._thread.is_alive():
            raise AssertionError(f"the in-process allocator did not start: {self._failure!r}")
        return self._server is not None and self._server.started

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                self._loop = runner.get_loop()
                runner.run(self._serve())
        except BaseException as exc:  # SystemExit on a failed start-up, too
            self._failure = exc

    async def _serve(self) -> None:
        self._app = AllocatorApp(self.settings, self._make_runtime(self.settings))
        config = uvicorn_config(self.settings, self._app)
        self._server = Server(config, [self._app], tune_gc=False)
        await self._server.serve([self._socket])

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coroutine` on the server's own event loop and return its result."""
        assert self._loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def stop(self) -> None:
        """As SIGTERM would: WebSockets closed, in-flight requests finished, runtime closed."""
        if self._thread.is_alive():
            assert self._server is not None
            self._server.should_exit = True
            self._thread.join(self.settings.shutdown_timeout + 30)
        self._socket.close()
        if self._thread.is_alive():
            raise AssertionError("the in-process allocator did not stop")
        if self._failure is not None and not isinstance(self._failure, SystemExit):
            raise AssertionError("the in-process allocator failed") from self._failure

    def __enter__(self) -> InProcessAllocator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def on_fake_agones(
    fake: FakeAgones, redis_url: str, data_dir: Path, **settings: Any
) -> InProcessAllocator:
    """A started allocator with SDA_BACKEND=agones against `fake`, header identity. A first
    request waits up to a minute for its WebUI (not SDA_ALLOCATION_WAIT's 3 s, after which
    it would get the progress page): a loaded machine is slow, not wrong."""
    settings.setdefault("allocation_wait", "60")
    data_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = fake.write_kubeconfig(data_dir / "kubeconfig")
    allocator = InProcessAllocator.with_settings(
        data_dir,
        backend="agones",
        identity="header",
        redis_url=redis_url,
        namespace=fake.namespace,
        fleet=fake.fleet,
        **settings,
    )
    return allocator.start(KUBECONFIG=str(kubeconfig))
