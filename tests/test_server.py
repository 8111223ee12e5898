"""The uvicorn internals allocator/server.py relies on: these fail if uvicorn changes under us.

1. `uvicorn.Server.shutdown(sockets)` runs once the server should exit, before connections
   drain: our override closes WebSockets with 1001 (uvicorn's own close would be 1012).
2. `uvicorn.supervisors.multiprocess` builds each worker's Server in `Process.server` from
   `Process._server`, and `Multiprocess` makes its workers through the module's `Process`.
   (tests/test_operations.py proves the same 1001 with two real worker processes.)
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from uvicorn.supervisors import multiprocess
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from allocator.server import Server, WorkerProcess, uvicorn_config
from allocator.settings import load_settings
from tests.support.inprocess import InProcessAllocator
from tests.support.origin import Origin
from tests.support.processes import header_for


@pytest.fixture
def allocator(origin: Origin, tmp_path: Path) -> Iterator[InProcessAllocator]:
    app = InProcessAllocator.with_settings(tmp_path, **origin.settings()).start()
    yield app
    app.stop()


def test_our_shutdown_runs_before_connections_drain(allocator: InProcessAllocator) -> None:
    ann = header_for("ann@example.com")
    assert httpx.get(f"{allocator.url}/echo", headers=ann, timeout=30).status_code == 200
    url = f"ws://127.0.0.1:{allocator.port}/ws"
    with connect(url, additional_headers=ann) as ws:
        ws.send("hi")
        assert ws.recv(30) == "hi"
        allocator.stop()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


def test_the_server_methods_we_override_keep_their_shape() -> None:
    for name in ("startup", "shutdown"):
        ours = inspect.signature(getattr(Server, name))
        theirs = inspect.signature(getattr(uvicorn.Server, name))
        assert list(theirs.parameters) == list(ours.parameters) == ["self", "sockets"], name
    assert "started" in vars(uvicorn.Server(uvicorn.Config(app=lambda: None)))


def test_workers_are_built_from_our_process_class(tmp_path: Path) -> None:
    assert list(inspect.signature(multiprocess.Process.__init__).parameters) == [
        "self",
        "config",
        "sockets",
    ]
    assert isinstance(inspect.getattr_static(multiprocess.Process, "server"), property)
    # Multiprocess looks the class up in its module when it starts a worker: replacing the
    # module's `Process` (as serve() does) is what makes workers ours.
    assert "Process(" in inspect.getsource(multiprocess.Multiprocess)
    settings = load_settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0", workers=2)
    worker = WorkerProcess(uvicorn_config(settings), sockets=[])
    assert worker._server is None
    assert isinstance(worker.server, Server) and worker.server is worker.server
