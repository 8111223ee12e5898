"""What the deploy leaves to a person: who may sign in is granted on the project, never on
the backend service GKE's Ingress controller generates (a recreated Ingress, Service or
cluster gets a new one, without the grant, and everyone would get 403)."""

from __future__ import annotations

from pathlib import Path

from deploy import next_steps
from deploy.config import Config
from tests.deploy.conftest import planned, with_changes

BACKEND = "k8s1-abc-sd-allocator-sd-allocator-80-x"  # as the stand-in's Ingress names it


def shown(config: Config, **facts: str) -> str:
    ctx, _, out = planned(config, Path("/nonexistent"))
    for name, value in facts.items():
        ctx.facts[name] = value
    next_steps.show(ctx)
    return "\n".join(out)


def test_access_is_granted_on_the_project(config: Config) -> None:
    text = shown(config, backend_service=BACKEND, static_ip="34.120.0.7")
    assert (
        "gcloud projects add-iam-policy-binding sd-test-project "
        "--member=group:TEAM@EXAMPLE.COM --role=roles/iap.httpsResourceAccessor"
    ) in text
    assert "--member=domain:EXAMPLE.COM, or --member=user:EMAIL" in text


def test_never_on_the_generated_backend_service(config: Config) -> None:
    text = shown(config, backend_service=BACKEND)
    assert "gcloud iap web" not in text
    assert "--resource-type=backend-services" not in text
    assert BACKEND not in text
    assert "Not on the k8s1-... backend service" in text


def test_the_advice_is_the_same_before_the_backend_service_exists(config: Config) -> None:
    assert shown(config, backend_service=BACKEND) == shown(config)


def test_the_consent_screen_is_external_with_your_own_client(config: Config) -> None:
    assert "create one of type Internal" in shown(config)
    own = with_changes(config, iap={"oauth_secret": "iap-oauth-client"})
    assert "of type Internal (External if the project is in no organization)" in shown(own)
    outsiders = with_changes(
        config, iap={"oauth_secret": "iap-oauth-client", "external_users": True}
    )
    assert "create one of type External:" in shown(outsiders)
