"""Outside the cluster (a Cloud Function): the cluster's endpoint from the settings and a
Google access token, refreshed when it expires. google-auth's own credential discovery is
replaced here by a credentials object holding the test API server's token: there is no
metadata server on this machine."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator

import google.auth
import pytest

from allocator.backends.agones import AgonesBackend
from allocator.backends.agones.client import KubeApi, KubeConfigError, load_configuration
from allocator.identity.emails import person_from_email
from fake_agones import FakeAgones
from tests.support.people import no_progress


class ExpiringCredentials:
    """Like google.oauth2 credentials: `valid` until it expires, then `refresh(request)`."""

    def __init__(self, token: str) -> None:
        self._token = token
        self.token: str | None = None
        self.refreshes = 0

    @property
    def valid(self) -> bool:
        return self.token is not None

    def refresh(self, request: object) -> None:
        self.refreshes += 1
        self.token = self._token

    def expire(self) -> None:
        self.token = None


@pytest.fixture
def agones() -> Iterator[FakeAgones]:
    with FakeAgones(replicas=1) as fake:
        fake.wait_ready(1)
        yield fake


def test_google_credentials_reach_the_cluster_and_refresh(
    agones: FakeAgones, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = ExpiringCredentials(agones.token)
    asked: list[list[str]] = []

    def default(scopes: list[str]) -> tuple[ExpiringCredentials, str]:
        asked.append(scopes)
        return credentials, "project"

    monkeypatch.setattr(google.auth, "default", default)
    configuration = load_configuration(agones.url, None)
    # GKE gives RBAC the account's email (what the chart binds) only with this scope.
    assert "https://www.googleapis.com/auth/userinfo.email" in asked[0]
    backend = AgonesBackend(KubeApi("default", 5.0, configuration), agones.fleet)
    person = person_from_email("fn@example.com")
    assert person is not None

    async def use() -> None:
        await backend.allocate(person, no_progress)
        credentials.expire()
        assert len(await backend.inventory()) == 1  # after a refresh

    try:
        asyncio.run(use())
    finally:
        asyncio.run(backend.close())
    assert credentials.refreshes == 2
    assert [record.outcome for record in agones.allocation_log()] == ["Allocated"]


def test_a_ca_certificate_in_base64_is_written_for_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    credentials = ExpiringCredentials("t")
    monkeypatch.setattr(google.auth, "default", lambda scopes: (credentials, "project"))
    configuration = load_configuration("https://10.0.0.1", base64.b64encode(pem.encode()).decode())
    assert configuration.host == "https://10.0.0.1"
    assert configuration.ssl_ca_cert is not None
    with open(configuration.ssl_ca_cert) as written:
        assert written.read() == pem


def test_no_google_credentials_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def none_found(scopes: list[str]) -> None:
        raise google.auth.exceptions.DefaultCredentialsError(  # type: ignore[no-untyped-call]
            "Could not find default credentials"
        )

    monkeypatch.setattr(google.auth, "default", none_found)
    with pytest.raises(
        KubeConfigError, match=re.escape("no Google credentials for https://10.0.0.1")
    ):
        load_configuration("https://10.0.0.1", None)
