"""Your own OAuth client for IAP: the deploy makes sure its Secret is there before the chart
points the BackendConfig at it, and says how to make it when it is not."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy.api import GoogleApi
from deploy.config import Config
from deploy.context import Context, Facts
from deploy.steps import chart, oauth_secret
from deploy.types import StepFailed
from tests.deploy.conftest import with_changes
from tests.deploy.fakes import FakeClients

NAME = "iap-oauth-client"
CONTEXT = "gke_sd-test-project_europe-west4-b_sd-allocator"
FILLED = {"client_id": "123-abc.apps.googleusercontent.com", "client_secret": "GOCSPX-s3cr3t"}


@dataclass
class Cluster:
    """kubectl against a namespace holding `secrets` (name: data); any other command means
    the step went on."""

    secrets: dict[str, dict[str, str]]
    asked: list[list[str]] = field(default_factory=list)

    def query(self, argv: Sequence[str], *, planned: str | None = None) -> str | None:
        self.asked.append(list(argv))
        if list(argv[:4]) != ["kubectl", f"--context={CONTEXT}", "get", "secret"]:
            raise AssertionError(f"went on to {argv}")
        assert "--namespace=sd-allocator" in argv
        data = self.secrets.get(argv[4])
        if data is None:
            return None
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        return json.dumps({"kind": "Secret", "metadata": {"name": argv[4]}, "data": encoded})

    def change(self, argv: Sequence[str], **kwargs: object) -> str:
        raise AssertionError(f"went on to change {argv}")

    local = change


def context(config: Config, cluster: Cluster, out: list[str]) -> Context:
    facts = Facts({"kube_context": CONTEXT, "image_tag": "abc1234", "filestore_ip": "10.0.0.2"})
    here = Path(__file__).parent
    return Context(
        with_changes(config, iap={"oauth_secret": NAME}),
        cluster,
        GoogleApi(FakeClients(), out.append),
        facts,
        here,
        here / ".unused",
        out.append,
    )


def test_a_secret_with_both_keys_is_accepted(config: Config) -> None:
    out: list[str] = []
    oauth_secret.check(context(config, Cluster({NAME: FILLED}), out), NAME)
    assert out == [f"  secret {NAME}: holds an OAuth client for IAP"]
    assert not any(value in line for line in out for value in FILLED.values())


def test_a_missing_secret_stops_the_chart_and_says_how_to_make_it(config: Config) -> None:
    cluster = Cluster({})
    with pytest.raises(StepFailed) as stopped:
        chart.ensure(context(config, cluster, []))
    assert len(cluster.asked) == 1  # nothing installed without it
    message = str(stopped.value)
    assert f"Secret {NAME} (iap.oauth_secret) is not in namespace sd-allocator" in message
    assert (
        f"kubectl --context={CONTEXT} create secret generic {NAME} -n sd-allocator "
        "--from-literal=client_id=... --from-literal=client_secret=..."
    ) in message
    assert "https://iap.googleapis.com/v1/oauth/clientIds/CLIENT_ID:handleRedirect" in message


@pytest.mark.parametrize(
    ("data", "lacking"),
    [
        ({"client_id": FILLED["client_id"]}, "has no client_secret."),
        ({"client_id": "", "client_secret": FILLED["client_secret"]}, "has no client_id."),
        ({"id": "x", "secret": "y"}, "has no client_id and no client_secret."),
    ],
)
def test_a_secret_without_both_keys_is_refused(
    config: Config, data: dict[str, str], lacking: str
) -> None:
    with pytest.raises(StepFailed) as stopped:
        oauth_secret.check(context(config, Cluster({NAME: data}), []), NAME)
    message = str(stopped.value)
    assert f"Secret {NAME} (iap.oauth_secret) in namespace sd-allocator {lacking}" in message
    assert f"kubectl delete secret {NAME} -n sd-allocator" in message
    assert FILLED["client_secret"] not in message
