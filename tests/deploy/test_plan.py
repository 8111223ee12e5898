"""`--plan` shows every command and API request a deploy of an empty project sends, in order,
exactly as a real run would send them, and runs or sends none of them."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from google.cloud import filestore_v1, scheduler_v1

from deploy.__main__ import main
from deploy.config import Config
from deploy.driver import run
from deploy.plan import Command
from tests.deploy.conftest import SAMPLE, planned, with_changes
from tests.deploy.steps.test_filestore import GET as FILESTORE_GET
from tests.deploy.steps.test_filestore import wanted_create

PROJECT = "sd-test-project"
CONTEXT = "gke_sd-test-project_europe-west4-b_sd-allocator"
REGISTRY = "europe-west4-docker.pkg.dev/sd-test-project/sd-allocator"
ACCOUNT = "sd-cruiser@sd-test-project.iam.gserviceaccount.com"
MEMBER = f"serviceAccount:{ACCOUNT}"
BUILD = "sd-build@sd-test-project.iam.gserviceaccount.com"
BUILD_ACCOUNT = f"projects/{PROJECT}/serviceAccounts/{BUILD}"
NODES = "sd-nodes@sd-test-project.iam.gserviceaccount.com"
SHOWN_SECRET = json.dumps(
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "sd-allocator-redis",
            "namespace": "sd-allocator",
            "labels": {"app.kubernetes.io/managed-by": "sd-allocator-deploy"},
        },
        "type": "Opaque",
        "data": {"url": "<not shown>", "ca.crt": "<not shown>"},
    },
    indent=2,
)


def gcloud(*args: str) -> Command:
    return Command(("gcloud", *args, f"--project={PROJECT}"))


def helm(*args: str) -> Command:
    return Command(("helm", *args, f"--kube-context={CONTEXT}"))


def kubectl(*args: str, stdin: str | None = None) -> Command:
    return Command(("kubectl", f"--context={CONTEXT}", *args), stdin)


def chart_upgrade(*waiting: str) -> Command:
    return helm(
        "upgrade", "--install", "sd-allocator", "helm/sd-allocator", "--namespace=sd-allocator",
        "--create-namespace", "--values=.deploy/values.yaml", *waiting,
        "--description=sd-deploy <content-hash>",
    )  # fmt: skip


def project_roles(email: str, *roles: str) -> list[Command]:
    return [
        Command(("gcloud", "projects", "add-iam-policy-binding", PROJECT,
                 f"--member=serviceAccount:{email}", f"--role={role}", "--condition=None"))
        for role in roles
    ]  # fmt: skip


def filestore_requests() -> list[Any]:
    return [FILESTORE_GET, wanted_create()]


def scheduler_requests() -> list[Any]:
    name = "projects/sd-test-project/locations/europe-west4/jobs/sd-cruiser"
    job = scheduler_v1.Job(
        name=name,
        description="sd-allocator cruiser: gives back WebUIs nobody uses",
        schedule="* * * * *",
        time_zone="Etc/UTC",
        http_target=scheduler_v1.HttpTarget(
            uri="<function-url>",
            http_method=scheduler_v1.HttpMethod.POST,
            oidc_token=scheduler_v1.OidcToken(
                service_account_email=ACCOUNT, audience="<function-url>"
            ),
        ),
        retry_config=scheduler_v1.RetryConfig(
            retry_count=2,
            min_backoff_duration=timedelta(seconds=10),
            max_backoff_duration=timedelta(seconds=60),
            max_doublings=2,
        ),
        attempt_deadline=timedelta(seconds=300),
    )
    return [
        scheduler_v1.GetJobRequest(name=name),
        scheduler_v1.CreateJobRequest(
            parent="projects/sd-test-project/locations/europe-west4", job=job
        ),
    ]


GOLDEN: list[Any] = [
    # apis
    gcloud(
        "services", "enable", "container.googleapis.com", "file.googleapis.com",
        "redis.googleapis.com", "artifactregistry.googleapis.com", "cloudbuild.googleapis.com",
        "iam.googleapis.com",
        "cloudfunctions.googleapis.com", "run.googleapis.com", "cloudscheduler.googleapis.com",
        "vpcaccess.googleapis.com", "iap.googleapis.com", "compute.googleapis.com",
        "secretmanager.googleapis.com",
    ),
    # accounts
    gcloud("iam", "service-accounts", "describe", BUILD, "--format=json"),
    gcloud("iam", "service-accounts", "create", "sd-build",
           "--display-name=sd-allocator builds (Cloud Build)"),
    Command(("gcloud", "projects", "get-iam-policy", PROJECT, "--format=json")),
    *project_roles(BUILD, "roles/cloudbuild.builds.builder", "roles/logging.logWriter",
                   "roles/artifactregistry.writer", "roles/storage.objectViewer"),
    gcloud("iam", "service-accounts", "describe", NODES, "--format=json"),
    gcloud("iam", "service-accounts", "create", "sd-nodes",
           "--display-name=sd-allocator GKE nodes"),
    Command(("gcloud", "projects", "get-iam-policy", PROJECT, "--format=json")),
    *project_roles(NODES, "roles/container.defaultNodeServiceAccount",
                   "roles/artifactregistry.reader"),
    # images
    gcloud("artifacts", "repositories", "describe", "sd-allocator", "--location=europe-west4",
           "--format=json"),
    gcloud("artifacts", "repositories", "create", "sd-allocator", "--location=europe-west4",
           "--repository-format=docker", "--description=sd-allocator images"),
    Command(("git", "rev-parse", "--short=12", "HEAD")),
    gcloud("artifacts", "docker", "images", "list", REGISTRY, "--include-tags", "--format=json"),
    gcloud("builds", "submit", "--config=images/cloudbuild.yaml",
           f"--substitutions=_REGISTRY={REGISTRY},_TAG=<git-commit>",
           f"--service-account={BUILD_ACCOUNT}", "."),
    # address
    gcloud("compute", "addresses", "describe", "sd-allocator-ip", "--global", "--format=json"),
    gcloud("compute", "addresses", "create", "sd-allocator-ip", "--global"),
    gcloud("compute", "addresses", "describe", "sd-allocator-ip", "--global", "--format=json"),
    # cluster
    gcloud("container", "clusters", "describe", "sd-allocator", "--zone=europe-west4-b",
           "--format=json"),
    gcloud("container", "get-server-config", "--zone=europe-west4-b", "--format=json"),
    gcloud(
        "container", "clusters", "create", "sd-allocator", "--zone=europe-west4-b",
        "--release-channel=regular", "--cluster-version=1.35",
        "--workload-pool=sd-test-project.svc.id.goog",
        "--addons=HttpLoadBalancing,HorizontalPodAutoscaling,GcePersistentDiskCsiDriver,GcpFilestoreCsiDriver",
        "--enable-ip-alias", "--enable-dataplane-v2", "--network=default",
        "--machine-type=e2-standard-4",
        "--num-nodes=2", f"--service-account={NODES}",
    ),
    gcloud(
        "container", "clusters", "update", "sd-allocator", "--zone=europe-west4-b",
        "--add-maintenance-exclusion-name=agones-supported-minor",
        "--add-maintenance-exclusion-scope=no_minor_upgrades",
        "--add-maintenance-exclusion-until-end-of-support",
    ),
    gcloud("container", "clusters", "describe", "sd-allocator", "--zone=europe-west4-b",
           "--format=json"),
    gcloud("container", "node-pools", "describe", "gpu", "--cluster=sd-allocator",
           "--zone=europe-west4-b", "--format=json"),
    gcloud(
        "container", "node-pools", "create", "gpu", "--cluster=sd-allocator",
        "--zone=europe-west4-b", "--machine-type=g2-standard-8",
        "--accelerator=type=nvidia-l4,count=1,gpu-driver-version=default",
        "--image-type=COS_CONTAINERD", "--enable-autoscaling", "--min-nodes=1", "--max-nodes=3",
        "--num-nodes=1", "--workload-metadata=GKE_METADATA", f"--service-account={NODES}",
    ),
    gcloud("container", "clusters", "get-credentials", "sd-allocator", "--zone=europe-west4-b"),
    # filestore
    *filestore_requests(),
    # redis
    gcloud("redis", "instances", "describe", "sd-allocator", "--region=europe-west4",
           "--format=json"),
    gcloud(
        "redis", "instances", "create", "sd-allocator", "--region=europe-west4", "--tier=basic",
        "--size=1", "--redis-version=redis_7_2",
        "--network=projects/sd-test-project/global/networks/default", "--enable-auth",
        "--transit-encryption-mode=server-authentication",
    ),
    gcloud("redis", "instances", "describe", "sd-allocator", "--region=europe-west4",
           "--format=json"),
    gcloud("redis", "instances", "get-auth-string", "sd-allocator", "--region=europe-west4",
           "--format=json"),
    # secret
    kubectl("get", "namespace", "sd-allocator", "--output=json"),
    kubectl("create", "namespace", "sd-allocator"),
    kubectl("get", "secret", "sd-allocator-redis", "--namespace=sd-allocator", "--output=json"),
    kubectl("create", "--filename=-", stdin=SHOWN_SECRET),
    # agones
    helm("history", "agones", "--namespace=agones-system", "--max=1", "--output=json"),
    Command(("helm", "repo", "add", "agones", "https://agones.dev/chart/stable",
             "--force-update")),
    helm(
        "upgrade", "--install", "agones", "agones/agones", "--namespace=agones-system",
        "--create-namespace", "--version=1.60.0", "--values=manifests/agones-values.yaml",
        "--wait", "--timeout=10m", "--description=sd-deploy <content-hash>",
    ),
    # chart: no audience yet, install, find it, upgrade with it
    gcloud("compute", "backend-services", "list", "--global",
           "--filter=description~sd-allocator/sd-allocator", "--format=json"),
    helm("history", "sd-allocator", "--namespace=sd-allocator", "--max=1", "--output=json"),
    chart_upgrade(),
    gcloud("compute", "backend-services", "list", "--global",
           "--filter=description~sd-allocator/sd-allocator", "--format=json"),
    Command(("gcloud", "projects", "describe", PROJECT, "--format=json")),
    chart_upgrade("--wait", "--timeout=15m"),
    # cruiser-account
    gcloud("iam", "service-accounts", "describe", ACCOUNT, "--format=json"),
    gcloud("iam", "service-accounts", "create", "sd-cruiser",
           "--display-name=sd-allocator cruiser (Cloud Function)"),
    Command(("gcloud", "projects", "get-iam-policy", PROJECT, "--format=json")),
    Command(("gcloud", "projects", "add-iam-policy-binding", PROJECT, f"--member={MEMBER}",
             "--role=roles/container.clusterViewer", "--condition=None")),
    gcloud("secrets", "describe", "sd-allocator-redis-url", "--format=json"),
    Command(
        ("gcloud", "secrets", "create", "sd-allocator-redis-url", "--replication-policy=automatic",
         "--data-file=-", f"--project={PROJECT}"),
        "the Redis URL with its AUTH string (<not shown>)",
    ),
    gcloud("secrets", "get-iam-policy", "sd-allocator-redis-url", "--format=json"),
    gcloud("secrets", "add-iam-policy-binding", "sd-allocator-redis-url", f"--member={MEMBER}",
           "--role=roles/secretmanager.secretAccessor"),
    # connector
    gcloud("compute", "networks", "vpc-access", "connectors", "describe", "sd-allocator-conn",
           "--region=europe-west4", "--format=json"),
    gcloud("compute", "networks", "vpc-access", "connectors", "create", "sd-allocator-conn",
           "--region=europe-west4", "--network=default", "--range=10.8.0.0/28"),
    # function
    gcloud("functions", "describe", "sd-cruiser", "--gen2", "--region=europe-west4",
           "--format=json"),
    gcloud(
        "functions", "deploy", "sd-cruiser", "--gen2", "--region=europe-west4",
        "--runtime=python312", "--source=.deploy/function", "--entry-point=cruise",
        "--trigger-http", "--no-allow-unauthenticated", f"--service-account={ACCOUNT}",
        f"--build-service-account={BUILD_ACCOUNT}",
        "--vpc-connector=sd-allocator-conn", "--egress-settings=private-ranges-only",
        "--timeout=300s", "--memory=512Mi", "--env-vars-file=.deploy/function-env.yaml",
        "--set-secrets=SDA_REDIS_URL=sd-allocator-redis-url:latest",
        "--update-labels=sd-deploy=<content-hash>",
    ),
    gcloud("functions", "describe", "sd-cruiser", "--gen2", "--region=europe-west4",
           "--format=json"),
    gcloud("run", "services", "get-iam-policy", "sd-cruiser", "--region=europe-west4",
           "--format=json"),
    gcloud("functions", "add-invoker-policy-binding", "sd-cruiser", "--gen2",
           "--region=europe-west4", f"--member={MEMBER}"),
    # scheduler
    *scheduler_requests(),
]  # fmt: skip


def test_the_plan_lists_every_command_and_request_in_order(config: Config, tmp_path: Path) -> None:
    ctx, plan, _ = planned(config, tmp_path)
    run(ctx)
    assert len(plan.actions) == len(GOLDEN)
    for number, (found, expected) in enumerate(zip(plan.actions, GOLDEN, strict=True)):
        assert found == expected, f"action {number}"
    assert list(tmp_path.iterdir()) == []  # a plan writes nothing


def test_the_plan_prints_commands_shell_quoted_and_requests_as_json(
    config: Config, tmp_path: Path
) -> None:
    ctx, _, out = planned(config, tmp_path)
    run(ctx)
    text = "\n".join(out)
    assert (
        "  $ gcloud builds submit --config=images/cloudbuild.yaml "
        f"'--substitutions=_REGISTRY={REGISTRY},_TAG=<git-commit>' "
        f"--service-account={BUILD_ACCOUNT} . --project={PROJECT}"
    ) in text
    assert "  API request filestore_v1.CreateInstanceRequest:" in text
    assert '"tier": "BASIC_HDD"' in text
    assert '"capacityGb": "2048"' in text
    assert "[10/14] chart: our Helm chart" in text
    assert (
        "iapAudience: /projects/<project-number>/global/backendServices/<backend-service-id>"
        in text
    )
    assert "      SDA_REDIS_CA_CERT: <redis-ca-pem>" in text
    assert "Next steps, by hand" in text
    assert "<redis-auth-string>" not in text  # the placeholder secret is a secret too


def test_a_known_audience_installs_the_chart_once_and_waits(config: Config, tmp_path: Path) -> None:
    audience = "/projects/123/global/backendServices/456"
    ctx, plan, _ = planned(with_changes(config, iap={"audience": audience}), tmp_path)
    run(ctx, ["chart"])
    assert plan.actions == [
        helm("history", "sd-allocator", "--namespace=sd-allocator", "--max=1", "--output=json"),
        chart_upgrade("--wait", "--timeout=15m"),
    ]


def test_cronjob_mode_has_no_function_and_no_scheduler(config: Config, tmp_path: Path) -> None:
    ctx, plan, out = planned(with_changes(config, cruiser={"mode": "cronjob"}), tmp_path)
    run(ctx)
    commands = [a.argv for a in plan.actions if isinstance(a, Command)]
    groups = {argv[1] for argv in commands if argv[0] == "gcloud"}
    assert groups == {
        "services",
        "iam",
        "artifacts",
        "builds",
        "compute",
        "container",
        "redis",
        "projects",
    }
    assert not any("vpc-access" in argv for argv in commands)
    assert "cloudfunctions.googleapis.com" not in commands[0]
    assert not any(isinstance(a, scheduler_v1.GetJobRequest) for a in plan.actions)
    assert "[10/10] chart" in "\n".join(out)
    assert "functionServiceAccount" not in "\n".join(out)


def test_only_plans_the_chosen_steps(config: Config, tmp_path: Path) -> None:
    ctx, plan, out = planned(config, tmp_path)
    run(ctx, ["address", "scheduler"])
    assert [type(a).__name__ for a in plan.actions] == [
        "Command", "Command", "Command", "GetJobRequest", "CreateJobRequest",
    ]  # fmt: skip
    text = "\n".join(out)
    assert "[1/2] address: " in text
    assert "[2/2] scheduler: " in text
    assert "Next steps" not in text


def test_the_cli_plan_runs_nothing_and_builds_no_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a plan must not start a process or build a Google client")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(filestore_v1.CloudFilestoreManagerClient, "__init__", refuse)
    monkeypatch.setattr(scheduler_v1.CloudSchedulerClient, "__init__", refuse)
    result = CliRunner().invoke(
        main, ["--config", str(SAMPLE), "--plan", "--work-dir", str(tmp_path / "gen")]
    )
    assert result.exit_code == 0, result.output
    assert "API request scheduler_v1.CreateJobRequest" in result.output
    assert "--values=" + str(tmp_path / "gen" / "values.yaml") in result.output
    assert not (tmp_path / "gen").exists()


def test_an_existing_cluster_is_only_read(config: Config, tmp_path: Path) -> None:
    ctx, plan, _ = planned(with_changes(config, cluster={"create": False}), tmp_path)
    run(ctx, ["cluster"])
    assert plan.actions == [
        gcloud("container", "clusters", "describe", "sd-allocator", "--zone=europe-west4-b",
               "--format=json"),
        gcloud("container", "clusters", "get-credentials", "sd-allocator",
               "--zone=europe-west4-b"),
    ]  # fmt: skip
