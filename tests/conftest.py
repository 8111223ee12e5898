from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.origin import Origin
from tests.support.processes import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    server = Origin().start()
    yield server
    server.stop()
