"""The chart's values the deploy writes, and how it finds the IAP audience."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from deploy.config import GPUS_PER_WEBUI, Config
from deploy.context import Facts
from deploy.driver import run
from deploy.plan import Command
from deploy.steps import chart
from deploy.steps.audience import pick
from deploy.yamlfile import load
from tests.chart.render import one, render
from tests.deploy.conftest import planned, with_changes

CHART = Path(__file__).resolve().parents[3] / "helm" / "sd-allocator"
AUDIENCE = "/projects/123456789012/global/backendServices/4242"
CONTEXT = "gke_sd-test-project_europe-west4-b_sd-allocator"


def generated(config: Config, audience: str | None) -> dict[str, Any]:
    ctx, _, _ = planned(config, Path("/nonexistent"))
    ctx.facts = Facts({"image_tag": "abc1234", "filestore_ip": "10.0.0.2"})
    return chart.values(ctx, audience)


def merged(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """What helm validates: the chart's values.yaml with ours on top."""
    result = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


@pytest.mark.skipif(not (CHART / "values.schema.json").exists(), reason="no chart schema")
@pytest.mark.parametrize("mode", ["function", "cronjob"])
@pytest.mark.parametrize("audience", [AUDIENCE, None])
def test_the_values_pass_the_charts_own_schema(
    config: Config, mode: str, audience: str | None
) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = load((CHART / "values.yaml").read_text())
    ours = generated(with_changes(config, cruiser={"mode": mode}), audience)
    Draft7Validator(schema).validate(merged(defaults, ours))


def test_the_values_carry_the_config_and_what_was_found(config: Config) -> None:
    values = generated(config, AUDIENCE)
    assert values["image"] == {
        "registry": "europe-west4-docker.pkg.dev/sd-test-project/sd-allocator",
        "tag": "abc1234",
    }
    assert values["allocator"] == {
        "iapAudience": AUDIENCE,
        "admins": ["ada@test.example"],
        "idleTimeoutSeconds": 900,
    }
    assert values["storage"] == {
        "mode": "filestore",
        "size": "2Ti",
        "filestore": {
            "ip": "10.0.0.2",
            "zone": "europe-west4-b",
            "instance": "sd-share",
            "share": "share",
        },
    }
    assert values["fleet"] == {"buffer": 2, "minReplicas": 2, "maxReplicas": 3}
    assert values["cruiser"]["functionServiceAccount"] == (
        "sd-cruiser@sd-test-project.iam.gserviceaccount.com"
    )
    assert generated(config, None)["allocator"]["iapAudience"] == ""


def test_your_own_oauth_client_reaches_the_backend_config(config: Config, tmp_path: Path) -> None:
    assert "iap" not in generated(config, AUDIENCE)  # Google's managed client
    own = generated(with_changes(config, iap={"oauth_secret": "iap-oauth-client"}), AUDIENCE)
    assert own["iap"] == {"oauthSecretName": "iap-oauth-client"}
    schema = json.loads((CHART / "values.schema.json").read_text())
    Draft7Validator(schema).validate(merged(load((CHART / "values.yaml").read_text()), own))
    backend = one(render(values=own, tmp=tmp_path), "BackendConfig")
    assert backend["spec"]["iap"] == {
        "enabled": True,
        "oauthclientCredentials": {"secretName": "iap-oauth-client"},
    }


def test_each_webui_requests_the_gpus_the_config_counts_on(config: Config, tmp_path: Path) -> None:
    fleet = one(render(values=generated(config, AUDIENCE), tmp=tmp_path), "Fleet")
    pod = fleet["spec"]["template"]["spec"]["template"]["spec"]
    webui = next(c for c in pod["containers"] if c["name"] == "sd-webui")
    assert webui["resources"]["limits"]["nvidia.com/gpu"] == str(GPUS_PER_WEBUI)


def test_the_oauth_secret_is_checked_before_the_chart_is_installed(
    config: Config, tmp_path: Path
) -> None:
    ctx, plan, out = planned(
        with_changes(config, iap={"oauth_secret": "iap-oauth-client"}), tmp_path
    )
    run(ctx, ["chart"])
    assert plan.actions[0] == Command(
        ("kubectl", f"--context={CONTEXT}", "get", "secret", "iap-oauth-client",
         "--namespace=sd-allocator", "--output=json"),
    )  # fmt: skip
    upgrades = [a for a in plan.actions if isinstance(a, Command) and "upgrade" in a.argv]
    assert len(upgrades) == 2
    assert "        oauthSecretName: iap-oauth-client" in out


@pytest.mark.parametrize(("gigabytes", "size"), [(1024, "1Ti"), (2560, "2560Gi"), (4096, "4Ti")])
def test_filestore_gigabytes_are_gibibytes(gigabytes: int, size: str) -> None:
    assert chart.capacity(gigabytes) == size


def service(name: str, port: str, ident: str) -> dict[str, str]:
    description = {"kubernetes.io/service-name": name, "kubernetes.io/service-port": port}
    return {"name": f"k8s1-{ident}", "id": ident, "description": json.dumps(description)}


def test_the_audience_is_the_backend_of_our_service() -> None:
    others = [service("default/web", "80", "1"), {"name": "manual", "id": "2", "description": ""}]
    assert pick(others) is None
    ours = service("sd-allocator/sd-allocator", "http", "3")
    assert pick([*others, ours]) == ours
    metrics = service("sd-allocator/sd-allocator", "9090", "4")
    assert pick([*others, metrics, ours]) == ours
    assert pick([{"name": "x", "id": "5", "description": "not json"}]) is None


def test_the_webuis_egress_ranges_come_from_what_was_found(config: Config) -> None:
    ctx, _, _ = planned(config, Path("/nonexistent"))
    ctx.facts = Facts(
        {
            "image_tag": "abc1234",
            "filestore_ip": "10.0.0.2",
            "cluster_endpoint": "34.90.1.2",
            "cluster_private_endpoint": "172.16.0.2",
            "cluster_ranges": "10.4.0.0/14,10.8.0.0/20",
            "redis_host": "10.9.0.3",
            "redis_range": "10.9.0.0/29",
        }
    )
    assert chart.values(ctx, AUDIENCE)["networkPolicy"]["webuiEgress"] == {
        "kubernetesApiCidrs": ["34.90.1.2/32", "172.16.0.2/32"],
        "redisCidrs": ["10.9.0.0/29", "10.9.0.3/32"],
        "clusterCidrs": ["10.4.0.0/14", "10.8.0.0/20"],
    }


def test_a_plan_leaves_placeholders_out_of_the_egress_ranges(config: Config) -> None:
    egress = generated(config, AUDIENCE)["networkPolicy"]["webuiEgress"]
    assert egress == {"kubernetesApiCidrs": [], "redisCidrs": [], "clusterCidrs": []}
