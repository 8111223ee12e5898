"""Redis over TLS with a private CA, as Memorystore serves it (SDA_REDIS_CA_CERT)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from allocator.settings import SettingsError, load_settings
from allocator.store import SessionStore, StoreUnavailable
from allocator.types import Placement, Session
from tests.support.processes import RedisServer
from tests.support.tls import TlsFiles, make_tls_files

ALICE = Session("a@x.com", "a", "static", Placement("gs-1", "10.0.0.1", 7860, {}), 1000.0)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-tls"), tls=tls)
    server.start()
    yield server
    server.kill()


@pytest.mark.parametrize("form", ["path", "pem text"])
async def test_the_ca_as_a_path_or_as_pem_text_reaches_the_store(
    tls_redis: RedisServer, tls: TlsFiles, form: str
) -> None:
    ca = str(tls.ca_cert) if form == "path" else tls.ca_cert.read_text()
    settings = load_settings(redis_url=tls_redis.url, redis_ca_cert=ca)
    store = SessionStore.from_url(settings.redis_url, settings.redis_ca_cert)
    try:
        await store.save(ALICE, now=10)
        assert await store.get("a@x.com") == ALICE
    finally:
        await store.close()


async def test_a_server_the_ca_did_not_sign_is_refused(
    tls_redis: RedisServer, tmp_path: Path
) -> None:
    stranger = make_tls_files(tmp_path, ca_name="someone else")
    store = SessionStore.from_url(tls_redis.url, str(stranger.ca_cert))
    try:
        with pytest.raises(StoreUnavailable, match="certificate verify failed"):
            await store.get("a@x.com")
    finally:
        await store.close()


async def test_a_certificate_naming_its_ip_only_as_common_name_needs_the_url_option(
    tmp_path: Path,
) -> None:
    files = make_tls_files(tmp_path / "tls", ip_in_san=False)
    server = RedisServer(tmp_path / "redis", tls=files)
    server.start()
    strict = SessionStore.from_url(server.url, str(files.ca_cert))
    relaxed = SessionStore.from_url(f"{server.url}?ssl_check_hostname=false", str(files.ca_cert))
    try:
        with pytest.raises(StoreUnavailable, match="IP address mismatch"):
            await strict.get("a@x.com")
        assert await relaxed.get("a@x.com") is None
    finally:
        await strict.close()
        await relaxed.close()
        server.kill()


def test_a_ca_needs_a_tls_url() -> None:
    with pytest.raises(SettingsError, match="SDA_REDIS_URL must be rediss://"):
        load_settings(redis_url="redis://127.0.0.1:6379/0", redis_ca_cert="-----BEGIN X")


def test_a_ca_file_that_does_not_exist_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"SDA_REDIS_CA_CERT.*PEM"):
        load_settings(redis_url="rediss://h:6378/0", redis_ca_cert=str(tmp_path / "nope.pem"))
