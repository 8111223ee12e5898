"""The chart is valid: helm lint, every object against its schema, manifests/ up to date."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from tests.chart.gke_schemas import SCHEMAS
from tests.chart.monitoring_schemas import SCHEMAS as MONITORING_SCHEMAS
from tests.chart.render import CHART, manifests, one, render, render_error, require_helm
from tests.fake_agones.schemas import pruned_fields, validation_errors
from tests.support.processes import REPO

KUBE_VERSION = manifests.KUBE_VERSION
AGONES_CRDS = {"Fleet": "fleets", "FleetAutoscaler": "fleetautoscalers.autoscaling"}
GKE_KINDS = {"BackendConfig", "ManagedCertificate", "FrontendConfig"}  # see gke_schemas.py
MONITORING_KINDS = set(MONITORING_SCHEMAS)  # see monitoring_schemas.py
VARIANTS = {
    "defaults": (),
    "filestore+cronjob": (
        "storage.mode=filestore",
        "storage.filestore.ip=10.0.0.2",
        "storage.filestore.zone=us-central1-a",
        "storage.filestore.instance=sd-share",
        "storage.filestore.share=share",
        "cruiser.mode=cronjob",
        "allocator.iapAudience=/projects/123/global/backendServices/456",
        "allocator.admins={ops@example.com}",
        "iap.oauthSecretName=iap-client",
    ),
    "existing-claim+function": (
        "storage.mode=existingClaim",
        "storage.existingClaim=models",
        "cruiser.functionServiceAccount=sd-cruiser@my-project.iam.gserviceaccount.com",
        "redis.tls=false",
        "networkPolicy.enabled=false",
    ),
    "schedule+monitoring": (
        "fleet.schedule.enabled=true",
        "fleet.schedule.timezone=Europe/Berlin",
        "monitoring.dashboard.enabled=true",
        "monitoring.podMonitoring.enabled=true",
        "monitoring.prometheusRule.enabled=true",
        "monitoring.gmp.rules.enabled=true",
    ),
}


def test_helm_lint_strict() -> None:
    helm = require_helm()
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("sets", VARIANTS.values(), ids=VARIANTS.keys())
def test_core_objects_pass_strict_kubernetes_schemas(sets: tuple[str, ...]) -> None:
    checked = 0
    for obj in render(*sets):
        if obj["kind"] in GKE_KINDS | MONITORING_KINDS or obj["kind"] in AGONES_CRDS:
            continue
        _validate_strict(obj)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("sets", VARIANTS.values(), ids=VARIANTS.keys())
def test_agones_objects_pass_the_v1_60_crd_schemas(sets: tuple[str, ...]) -> None:
    objects = render(*sets)
    for kind, crd in AGONES_CRDS.items():
        obj = one(objects, kind)
        assert validation_errors(crd, obj) == []
        assert pruned_fields(crd, obj) == [], "fields the API server would silently drop"


@pytest.mark.parametrize("sets", VARIANTS.values(), ids=VARIANTS.keys())
def test_gke_objects_pass_schemas_written_from_ingress_gce(sets: tuple[str, ...]) -> None:
    objects = render(*sets)
    for kind, schema in SCHEMAS.items():
        errors = [
            error.message for error in Draft7Validator(schema).iter_errors(one(objects, kind))
        ]
        assert errors == [], kind


def test_monitoring_objects_pass_schemas_written_from_their_crds() -> None:
    objects = render(*VARIANTS["schedule+monitoring"], "monitoring.gmp.rules.clusterScoped=true")
    objects += render(*VARIANTS["schedule+monitoring"])
    checked = set()
    for obj in (o for o in objects if o["kind"] in MONITORING_KINDS):
        validator = Draft7Validator(MONITORING_SCHEMAS[obj["kind"]])
        assert [error.message for error in validator.iter_errors(obj)] == [], obj["kind"]
        checked.add(obj["kind"])
    assert checked == MONITORING_KINDS


def test_the_monitoring_schemas_catch_a_misplaced_field() -> None:
    objects = render(*VARIANTS["schedule+monitoring"])
    rules, monitoring = one(objects, "Rules"), one(objects, "PodMonitoring")
    rules["spec"]["groups"][0]["rules"][0]["record"] = "sda:alert"  # an alert or a record
    monitoring["spec"]["endpoints"][0]["scrapeInterval"] = "30s"  # it is `interval`
    for obj in (rules, monitoring):
        assert list(Draft7Validator(MONITORING_SCHEMAS[obj["kind"]]).iter_errors(obj))


def test_the_gke_schemas_catch_a_misplaced_field() -> None:
    backend = one(render(), "BackendConfig")
    backend["spec"]["iap"]["secretName"] = "iap-client"  # belongs in oauthclientCredentials
    assert list(Draft7Validator(SCHEMAS["BackendConfig"]).iter_errors(backend))


def test_the_fleets_pod_template_passes_the_strict_pod_schema() -> None:
    # The CRD schema keeps the embedded pod template as free-form; kube validates it as a Pod
    # when Agones creates one, which would be far too late to find a typo.
    template = one(render(), "Fleet")["spec"]["template"]["spec"]["template"]
    _validate_strict({"apiVersion": "v1", "kind": "Pod", **template})


def test_strict_validation_catches_a_misspelt_field() -> None:
    deployment = one(render(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_strict(deployment)


def test_agones_guard_leaves_out_agones_kinds_without_agones() -> None:
    require_helm()
    command = [str(manifests.HELM), "template", "x", str(CHART), "--kube-version", KUBE_VERSION]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    assert "kind: Deployment" in output
    for kind in ("Fleet", "FleetAutoscaler", "BackendConfig", "ManagedCertificate"):
        assert f"kind: {kind}\n" not in output


def test_manifests_folder_equals_a_fresh_render() -> None:
    require_helm()
    script = REPO / "scripts" / "manifests.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


BAD_VALUES = {
    "unknown key": ("allocatr.replicas=3", "additional properties 'allocatr'"),
    "audience shape": ("allocator.iapAudience=my-audience", "/allocator/iapAudience"),
    "storage mode": ("storage.mode=nfs", "/storage/mode"),
    "filestore without ip": ("storage.mode=filestore", "/storage/filestore/ip"),
    "existing claim unnamed": ("storage.mode=existingClaim", "/storage/existingClaim"),
    "cruiser mode": ("cruiser.mode=daemon", "/cruiser/mode"),
    "schedule": ("cruiser.schedule=every 5 minutes", "/cruiser/schedule"),
    "admin email": ("allocator.admins={not-an-email}", "/allocator/admins/0"),
    "extra env name": ("allocator.extraEnv.PATH=/tmp", "'PATH' does not match pattern '^SDA_"),
    "zero buffer": ("fleet.buffer=0", "/fleet/buffer"),
    "min below buffer": ("fleet.minReplicas=1,fleet.buffer=2", "must be 0 or at least"),
    "max below min": ("fleet.maxReplicas=1,fleet.minReplicas=2,fleet.buffer=2", "maxReplicas"),
    "host": ("ingress.host=Not A Host", "/ingress/host"),
    "gpu": ("webui.gpuType=l4", "/webui/gpuType"),
    "shared sub-folder": ("storage.deletionsSubPath=users", "three different folders"),
    "kept settings period": ("webui.keptSettingsSeconds=0", "/webui/keptSettingsSeconds"),
    "alert duration": ("monitoring.alerts.storeUnreachable.for=3 minutes", "/for"),
    "failure ratio": ("monitoring.alerts.allocationsFailing.ratio=10", "/ratio"),
    "alert label": ("monitoring.alerts.labels.team-name=x", "'team-name' does not match"),
    "dashboard label": ("monitoring.dashboard.label=grafana dashboard", "/dashboard/label"),
    "scrape interval": ("monitoring.podMonitoring.interval=often", "/podMonitoring/interval"),
    "runbook url": ("monitoring.alerts.runbookBaseUrl=docs/monitoring.md", "/runbookBaseUrl"),
}


@pytest.mark.parametrize("sets,expected", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_refused_with_the_field_named(sets: str, expected: str) -> None:
    assert expected in render_error(sets)


def _validate_strict(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
