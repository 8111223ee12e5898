"""The Kubernetes calls' own transport: what the official configuration says reaches each
request, and a failing credential refresh is a transient error, not a crash."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from allocator.backends.agones.client import KubeApi, KubeError
from allocator.backends.agones.transport import _proxy_for


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
