"""The chart's values the deploy writes, and how it finds the IAP audience."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from deploy.config import Config
from deploy.context import Facts
from deploy.steps import chart
from deploy.steps.audience import pick
from deploy.yamlfile import load
from tests.deploy.conftest import planned, with_changes

CHART = Path(__file__).resolve().parents[3] / "helm" / "sd-allocator"
AUDIENCE = "/projects/123456789012/global/backendServices/4242"


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
    assert values["fleet"] == {"buffer": 2, "minReplicas": 1, "maxReplicas": 6}
    assert values["cruiser"]["functionServiceAccount"] == (
        "sd-cruiser@sd-test-project.iam.gserviceaccount.com"
    )
    assert generated(config, None)["allocator"]["iapAudience"] == ""


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
