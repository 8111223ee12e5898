"""The Kubernetes calls' own transport: what the official configuration says reaches each
request, and a failing credential refresh is a transient error, not a crash."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import configuration as configuration_module

from allocator.backends.agones import client as client_module
from allocator.backends.agones.client import (
    REFRESH_SECONDS,
    KubeApi,
    KubeError,
    _at_most_every,
    load_configuration,
)
from allocator.backends.agones.transport import _header_of, _proxy_for
from fake_agones import kubeconfig


def configuration(**values: Any) -> client.Configuration:
    made = client.Configuration()
    made.host = "https://10.0.0.1"
    for name, value in values.items():
        setattr(made, name, value)
    return made


@pytest.mark.parametrize(
    ("proxy", "no_proxy", "expected"),
    [
        (None, None, None),
        ("http://proxy:3128", None, "http://proxy:3128"),
        ("http://proxy:3128", "example.com, 10.0.0.1", None),
        ("http://proxy:3128", "*", None),
        ("http://proxy:3128", ".example.com", "http://proxy:3128"),
    ],
)
def test_the_proxy_of_the_configuration_is_used_unless_no_proxy_names_the_host(
    proxy: str | None, no_proxy: str | None, expected: str | None
) -> None:
    assert _proxy_for(configuration(proxy=proxy, no_proxy=no_proxy)) == expected


async def test_a_credential_refresh_that_fails_is_a_transient_kube_error() -> None:
    def refresh(config: Any) -> None:
        raise OSError("token file unreadable")

    made = configuration()
    made.api_key["BearerToken"] = "Bearer old"
    made.refresh_api_key_hook = refresh  # type: ignore[assignment]
    kube = KubeApi("default", 1.0, made)
    try:
        with pytest.raises(KubeError) as raised:
            await kube.get_gameserver("gs")
    finally:
        await kube.close()
    assert raised.value.status == 0 and raised.value.transient
    assert "no credentials" in str(raised.value)


def test_the_loaders_refresh_hook_runs_at_most_every_few_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kubeconfig loader's hook re-applies the whole configuration on every call, which
    re-reads the proxy environment; within REFRESH_SECONDS the header is the one it gave."""
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(kubeconfig.kubeconfig("http://127.0.0.1:1", "secret", "ns")))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(client_module, "REFRESH_SECONDS", math.inf)  # however slow this runs
    made = load_configuration()
    looks: list[str] = []

    def getproxies() -> dict[str, str]:
        looks.append("environment")
        return {}

    monkeypatch.setattr(configuration_module, "getproxies", getproxies)
    for _ in range(50):
        assert _header_of(made) == {"authorization": "Bearer secret"}
    assert len(looks) == 1  # the first call ran it


def test_a_throttled_hook_runs_again_after_its_time_and_after_a_failure() -> None:
    now = [0.0]
    outcomes: list[Exception | None] = [None, OSError("unreadable"), None]
    ran: list[float] = []

    def hook(config: client.Configuration) -> None:
        ran.append(now[0])
        failure = outcomes.pop(0)
        if failure is not None:
            raise failure

    refresh = _at_most_every(REFRESH_SECONDS, hook, clock=lambda: now[0])
    made = configuration()
    refresh(made)
    now[0] = REFRESH_SECONDS - 0.1
    refresh(made)  # too soon: not run
    now[0] = REFRESH_SECONDS
    with pytest.raises(OSError):
        refresh(made)
    refresh(made)  # the failure is retried at once
    assert ran == [0.0, REFRESH_SECONDS, REFRESH_SECONDS]


def test_a_hook_that_installs_another_and_fails_stays_throttled() -> None:
    made = configuration()

    def failing(config: client.Configuration) -> None:
        config.refresh_api_key_hook = lambda _: None  # type: ignore[assignment]
        raise OSError("no token")

    refresh = _at_most_every(REFRESH_SECONDS, failing)
    made.refresh_api_key_hook = refresh  # type: ignore[assignment]
    with pytest.raises(OSError):
        refresh(made)
    assert made.refresh_api_key_hook is refresh
