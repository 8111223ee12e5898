"""A whole deploy, for real, against stand-ins for gcloud, helm, kubectl and git (small
programs on PATH that keep a simulated project in a file) and fake Google clients.

The first run creates everything; the second finds everything in place and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from deploy.__main__ import main
from deploy.app import Setup
from tests.deploy.conftest import SAMPLE, install_stand_ins
from tests.deploy.fake_cli import AUTH_STRING
from tests.deploy.fakes import Clock, FakeClients

TOOLS = ("gcloud", "gke-gcloud-auth-plugin", "helm", "kubectl", "git")
# Commands that only read, or change only this machine; a second run may run nothing else.
HARMLESS = ("describe", "list", "history", "get", "get-iam-policy", "get-auth-string",
            "access", "get-credentials", "get-server-config", "rev-parse")  # fmt: skip


@dataclass
class World:
    """The simulated project: its state file, the command log, the fake API clients."""

    root: Path
    state: Path
    log: Path
    clients: FakeClients
    clock: Clock

    def deploy(self, *args: str) -> Result:
        self.log.write_text("")
        setup = Setup(
            out=print, root=self.root, clients=self.clients, clock=self.clock,
            sleep=self.clock.sleep, progress_every=5.0,
        )  # fmt: skip
        return CliRunner().invoke(main, ["--config", str(SAMPLE), *args], obj=setup)

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def commands(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]

    def fail(self, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
        monkeypatch.setenv("FAKE_CLI_FAIL", command)

    def loaded(self) -> dict[str, Any]:
        return dict(json.loads(self.state.read_text()))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    state, log = install_stand_ins(tmp_path, monkeypatch, TOOLS)
    clock = Clock()
    yield World(repository(tmp_path / "repo"), state, log, FakeClients(), clock)


def repository(root: Path) -> Path:
    """The parts of the repository a deploy reads."""
    files = {
        "pyproject.toml": (
            '[project]\nname = "sd-allocator"\ndependencies = ["redis>=5", "kubernetes>=31"]\n'
            '[project.optional-dependencies]\nfunction = ["functions-framework>=3.5"]\n'
        ),
        "allocator/__init__.py": '"""The allocator."""\n',
        "cruiser/__init__.py": "",
        "cruiser/function.py": "def cruise(request): ...\n",
        "helm/sd-allocator/Chart.yaml": "apiVersion: v2\nname: sd-allocator\nversion: 0.1.0\n",
        "manifests/agones-values.yaml": "gameservers:\n  namespaces: [sd-allocator]\n",
        "images/cloudbuild.yaml": "steps: []\noptions:\n  logging: CLOUD_LOGGING_ONLY\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "allocator" / "__pycache__").mkdir()
    (root / "allocator" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    return root


def changing(commands: list[list[str]]) -> list[list[str]]:
    """Commands that may change something, other than enabling APIs (a no-op when on)."""
    found = []
    for argv in commands:
        words = [a for a in argv[1:] if not a.startswith("-")]
        if words[:2] == ["services", "enable"] or any(w in HARMLESS for w in words):
            continue
        found.append(argv)
    return found


def test_a_second_deploy_changes_nothing(world: World) -> None:
    first = world.deploy()
    assert first.exit_code == 0, first.output
    created = [" ".join(argv[:4]) for argv in changing(world.commands())]
    assert created == [
        "gcloud iam service-accounts create",  # sd-build
        *["gcloud projects add-iam-policy-binding sd-test-project"] * 4,
        "gcloud iam service-accounts create",  # sd-nodes
        *["gcloud projects add-iam-policy-binding sd-test-project"] * 2,
        "gcloud artifacts repositories create",
        "gcloud builds submit --config=images/cloudbuild.yaml",
        "gcloud compute addresses create",
        "gcloud container clusters create",
        "gcloud container clusters update",
        "gcloud container node-pools create",
        "gcloud redis instances create",
        "kubectl --context=gke_sd-test-project_europe-west4-b_sd-allocator create namespace",
        "kubectl --context=gke_sd-test-project_europe-west4-b_sd-allocator create --filename=-",
        "helm repo add agones",
        "helm upgrade --install agones",
        "helm upgrade --install sd-allocator",
        "helm upgrade --install sd-allocator",
        "gcloud iam service-accounts create",
        "gcloud projects add-iam-policy-binding sd-test-project",
        "gcloud secrets create sd-allocator-redis-url",
        "gcloud secrets add-iam-policy-binding sd-allocator-redis-url",
        "gcloud compute networks vpc-access",
        "gcloud functions deploy sd-cruiser",
        "gcloud functions add-invoker-policy-binding sd-cruiser",
    ]
    assert len(world.clients.filestore.requests) == 2  # get, create
    assert len(world.clients.scheduler.requests) == 2  # get, create
    assert "IAP audience /projects/123456789012/global/backendServices/4242" in first.output

    second = world.deploy()
    assert second.exit_code == 0, second.output
    assert changing(world.commands()) == []
    assert [type(r).__name__ for r in world.clients.filestore.requests[2:]] == [
        "GetInstanceRequest"
    ]
    assert [type(r).__name__ for r in world.clients.scheduler.requests[2:]] == ["GetJobRequest"]
    report = second.output.split("Next steps")[0].split("\n[1/", 1)[1].splitlines()  # the steps
    outcomes = [line.strip() for line in report if line.startswith("  ") and ": " in line]
    assert len(outcomes) == 27, outcomes
    assert [line for line in outcomes if "unchanged" not in line] == [], outcomes
    assert "release sd-allocator: deployed, unchanged" in second.output


def test_the_builds_run_as_the_build_account(world: World) -> None:
    """Not as the project's default account: the stand-in, like Google in organisations
    created since May 2024, gives that one no role, so a build run as it fails."""
    result = world.deploy()
    assert result.exit_code == 0, result.output
    email = "sd-build@sd-test-project.iam.gserviceaccount.com"
    account = f"projects/sd-test-project/serviceAccounts/{email}"
    builds = [argv for argv in world.commands() if argv[2] in ("submit", "deploy")]
    assert [argv[1] for argv in builds] == ["builds", "functions"]
    assert f"--service-account={account}" in builds[0]
    assert f"--build-service-account={account}" in builds[1]
    bindings = world.loaded()["project_policy"]["bindings"]
    builder = {"role": "roles/cloudbuild.builds.builder", "members": [f"serviceAccount:{email}"]}
    assert builder in bindings


def test_what_the_chart_and_the_function_are_given(world: World) -> None:
    assert world.deploy().exit_code == 0
    values = (world.root / ".deploy" / "values.yaml").read_text()
    assert "iapAudience: /projects/123456789012/global/backendServices/4242" in values
    assert "ip: 10.0.0.2" in values
    assert "tag: abc1234" in values
    assert "size: 2Ti" in values
    assert "idleTimeoutSeconds: 900" in values
    env = (world.root / ".deploy" / "function-env.yaml").read_text()
    assert "SDA_KUBE_API_URL: https://34.1.2.3" in env
    assert "REDISCA" in env
    staged = world.root / ".deploy" / "function"
    assert (
        (staged / "main.py")
        .read_text()
        .endswith("from cruiser.function import cruise  # noqa: F401\n")
    )
    assert (staged / "requirements.txt").read_text() == (
        "redis>=5\nkubernetes>=31\nfunctions-framework>=3.5\n"
    )
    assert not (staged / "allocator" / "__pycache__").exists()
    secret = world.loaded()["kubernetes"]["secret/sd-allocator/sd-allocator-redis"]
    assert set(secret["data"]) == {"url", "ca.crt"}


def test_the_redis_auth_string_never_shows(world: World) -> None:
    result = world.deploy("--verbose")
    assert result.exit_code == 0, result.output
    assert AUTH_STRING not in result.output
    assert all(AUTH_STRING not in " ".join(argv) for argv in world.commands())
    fed = [call["stdin"] for call in world.calls() if call["stdin"]]
    assert any(AUTH_STRING in text for text in fed)  # it went in on standard input only


def test_a_changed_source_redeploys_the_function_only(world: World) -> None:
    assert world.deploy().exit_code == 0
    (world.root / "cruiser" / "function.py").write_text("def cruise(request): return 1\n")
    assert world.deploy().exit_code == 0
    assert [argv[:3] for argv in changing(world.commands())] == [["gcloud", "functions", "deploy"]]


def test_a_new_redis_auth_string_updates_the_secrets(world: World) -> None:
    assert world.deploy().exit_code == 0
    state = world.loaded()
    state["redis"]["sd-allocator"]["host"] = "10.0.0.9"  # say, the instance was recreated
    world.state.write_text(json.dumps(state))
    result = world.deploy()
    assert result.exit_code == 0, result.output
    assert [" ".join(argv[:4]) for argv in changing(world.commands())] == [
        "kubectl --context=gke_sd-test-project_europe-west4-b_sd-allocator replace --filename=-",
        "kubectl --context=gke_sd-test-project_europe-west4-b_sd-allocator rollout restart",
        "helm upgrade --install sd-allocator",  # the WebUIs' egress policy: the new Redis address
        "gcloud secrets versions add",
        "gcloud functions deploy sd-cruiser",
    ]
    assert "secret sd-allocator-redis: updated" in result.output
    assert "allocator pods restarted to read it" in result.output
    fed = [c["stdin"] for c in world.calls() if "versions" in c["argv"] and c["stdin"]]
    assert fed == [f"rediss://:{AUTH_STRING}@10.0.0.9:6378/0?ssl_check_hostname=false"]


def test_a_failing_command_stops_the_deploy_and_names_the_step(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.fail(monkeypatch, "compute addresses create")
    result = world.deploy()
    assert result.exit_code == 1
    assert "deploy stopped at step address: `gcloud compute addresses create" in result.output
    assert "quota exceeded for compute addresses create" in result.output
    assert "rerunning is safe" in result.output
    assert not any("container" in argv for argv in changing(world.commands()))  # reads: preflight


def test_after_a_failure_the_rerun_finishes_the_job(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.fail(monkeypatch, "upgrade --install sd-allocator")
    assert world.deploy().exit_code == 1
    monkeypatch.delenv("FAKE_CLI_FAIL")
    result = world.deploy()
    assert result.exit_code == 0, result.output
    created = [" ".join(argv[:3]) for argv in changing(world.commands())]
    assert "gcloud compute addresses" not in " ".join(created)
    assert created[0] == "helm upgrade --install"


def test_a_missing_tool_is_named(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    result = world.deploy()
    assert result.exit_code == 1
    assert "gcloud: not found on PATH" in result.output


def test_missing_google_credentials_are_explained(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(world.root / "no-such-key.json"))
    world.clients = None  # type: ignore[assignment]  # the real clients
    result = world.deploy()
    assert result.exit_code == 1
    assert "deploy stopped at step filestore: no usable Google credentials" in result.output
    assert "gcloud auth application-default login" in result.output


def test_only_reads_what_the_chosen_steps_need(world: World) -> None:
    assert world.deploy().exit_code == 0
    result = world.deploy("--only", "chart")
    assert result.exit_code == 0, result.output
    assert "[1/5] images: " in result.output
    assert "(only reading what later steps need)" in result.output
    assert "[5/5] chart: " in result.output
    assert changing(world.commands()) == []


def test_only_refuses_to_change_a_step_it_merely_reads(world: World) -> None:
    result = world.deploy("--only", "chart")
    assert result.exit_code == 1
    assert "deploy stopped at step images" in result.output
    assert "Run it first: --only images" in result.output
    assert changing(world.commands()) == []


def test_config_errors_exit_2(world: World, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: sd-test-project\ndomain: sd.test.example\ncluster:\n  gpus: 1\n")
    result = CliRunner().invoke(main, ["--config", str(bad)], obj=Setup(out=print))
    assert result.exit_code == 2
    assert "cluster.gpus: unknown key (did you mean gpu?)" in result.output
    missing = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "nope.yaml: no such file" in missing.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("project: [sd\n")
    syntax = CliRunner().invoke(main, ["--config", str(broken)])
    assert syntax.exit_code == 2
    assert "broken.yaml: line 2, column 1:" in syntax.output
    assert not world.log.exists()  # no command ran


def test_an_unknown_step_is_refused(world: World) -> None:
    result = CliRunner().invoke(main, ["--config", str(SAMPLE), "--only", "charts"])
    assert result.exit_code == 2
    assert "unknown step charts" in result.output


def change_state(world: World, *path: str, value: Any) -> None:
    state = world.loaded()
    target = state
    for key in path[:-1]:
        target = target[key] if not isinstance(target, list) else target[int(key)]
    target[path[-1]] = value
    world.state.write_text(json.dumps(state))


def test_the_new_cluster_enforces_network_policies_and_an_old_one_is_flagged(
    world: World,
) -> None:
    first = world.deploy()
    assert first.exit_code == 0
    assert "does not enforce NetworkPolicies" not in first.output
    change_state(
        world, "clusters", "sd-allocator", "networkConfig", "datapathProvider", value="LEGACY"
    )
    second = world.deploy()
    assert second.exit_code == 0
    assert "WARNING: cluster sd-allocator does not enforce NetworkPolicies" in second.output


def test_redis_without_tls_stops_the_deploy_untouched(world: World) -> None:
    assert world.deploy().exit_code == 0
    change_state(world, "redis", "sd-allocator", "transitEncryptionMode", value="DISABLED")
    result = world.deploy()
    assert result.exit_code == 1
    assert "deploy stopped at step redis: Redis instance sd-allocator exists without TLS" in (
        result.output
    )
    assert "TLS can only be chosen when an instance is created" in result.output
    assert changing(world.commands()) == []


def test_an_interrupted_helm_release_is_explained(world: World) -> None:
    assert world.deploy().exit_code == 0
    releases = world.loaded()["releases"]
    releases["agones-system/agones"][-1]["status"] = "pending-upgrade"
    change_state(world, "releases", value=releases)
    result = world.deploy()
    assert result.exit_code == 1
    assert "helm release agones is stuck in pending-upgrade" in result.output
    assert "helm rollback agones -n agones-system" in result.output
