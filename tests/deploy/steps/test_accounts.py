"""The build and node service accounts: created with exactly the roles their work needs, left
alone once they have them; the image build and the function's build run as the build
account. Against the stand-in gcloud (tests/deploy/fake_cli.py), whose builds, like Google's
in organisations created since May 2024, fail as the project's default account."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.config import Config
from deploy.context import Context
from deploy.runner import SubprocessRunner
from deploy.steps import NAMES, accounts, images
from deploy.types import CommandFailed
from tests.deploy.conftest import api_context, install_stand_ins
from tests.deploy.fakes import Clock, FakeClients

REPOSITORY = Path(__file__).parents[3]
BUILD = "sd-build@sd-test-project.iam.gserviceaccount.com"
NODES = "sd-nodes@sd-test-project.iam.gserviceaccount.com"
BUILD_ROLES = [
    "roles/cloudbuild.builds.builder",
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    "roles/storage.objectViewer",
]
NODE_ROLES = ["roles/container.defaultNodeServiceAccount", "roles/artifactregistry.reader"]


@dataclass
class Gcloud:
    """The stand-in gcloud on a PATH of its own, and the project it simulates."""

    bin_dir: Path
    state: Path
    log: Path

    def context(self, config: Config, root: Path, out: list[str]) -> Context:
        environ = {
            "PATH": str(self.bin_dir),
            "FAKE_CLI_STATE": str(self.state),
            "FAKE_CLI_LOG": str(self.log),
        }
        ctx = api_context(config, FakeClients(), Clock(), out)
        return dataclasses.replace(
            ctx, runner=SubprocessRunner(out.append, root, environ=environ), root=root
        )

    def changes(self) -> list[list[str]]:
        """The commands that changed something, without --project."""
        calls = [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]
        reads = ("describe", "get-iam-policy", "list", "rev-parse")
        return [
            [a for a in argv if not a.startswith("--project=")]
            for argv in calls
            if not any(word in reads for word in argv)
        ]

    def bindings(self) -> dict[str, list[str]]:
        """Each member's project roles, in the order they were granted."""
        found: dict[str, list[str]] = {}
        policy = json.loads(self.state.read_text()).get("project_policy", {})
        for binding in policy.get("bindings", []):
            if binding.get("condition"):
                continue
            for member in binding["members"]:
                found.setdefault(member, []).append(binding["role"])
        return found

    def set(self, **state: Any) -> None:
        self.state.write_text(json.dumps({**json.loads(self.state.read_text()), **state}))


@pytest.fixture
def gcloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gcloud:
    state, log = install_stand_ins(tmp_path, monkeypatch, ("gcloud", "git"))
    log.write_text("")
    return Gcloud(tmp_path / "bin", state, log)


def grants(email: str, roles: list[str]) -> list[list[str]]:
    return [
        ["gcloud", "projects", "add-iam-policy-binding", "sd-test-project",
         f"--member=serviceAccount:{email}", f"--role={role}", "--condition=None"]
        for role in roles
    ]  # fmt: skip


def test_an_empty_project_gets_both_accounts_with_their_roles(
    config: Config, gcloud: Gcloud, tmp_path: Path
) -> None:
    out: list[str] = []
    accounts.ensure(gcloud.context(config, tmp_path, out))
    assert gcloud.changes() == [
        ["gcloud", "iam", "service-accounts", "create", "sd-build",
         "--display-name=sd-allocator builds (Cloud Build)"],
        *grants(BUILD, BUILD_ROLES),
        ["gcloud", "iam", "service-accounts", "create", "sd-nodes",
         "--display-name=sd-allocator GKE nodes"],
        *grants(NODES, NODE_ROLES),
    ]  # fmt: skip
    assert gcloud.bindings() == {
        f"serviceAccount:{BUILD}": BUILD_ROLES,
        f"serviceAccount:{NODES}": NODE_ROLES,
    }
    assert "  service account sd-nodes: created" in out
    assert "  roles/artifactregistry.reader for sd-nodes: granted" in out


def test_roles_wait_until_iam_knows_a_new_account(
    config: Config, gcloud: Gcloud, tmp_path: Path
) -> None:
    """Right after `service-accounts create`, IAM may say the account does not exist."""
    gcloud.set(iam_lag=2)
    accounts.ensure(gcloud.context(config, tmp_path, []))
    assert gcloud.bindings()[f"serviceAccount:{BUILD}"] == BUILD_ROLES


def test_a_second_run_changes_nothing(config: Config, gcloud: Gcloud, tmp_path: Path) -> None:
    accounts.ensure(gcloud.context(config, tmp_path, []))
    gcloud.log.write_text("")
    out: list[str] = []
    accounts.ensure(gcloud.context(config, tmp_path, out))
    assert gcloud.changes() == []
    assert len([line for line in out if line.endswith(": exists, unchanged")]) == 2
    assert len([line for line in out if line.endswith(": granted, unchanged")]) == 6


def test_only_the_missing_roles_are_granted(config: Config, gcloud: Gcloud, tmp_path: Path) -> None:
    gcloud.set(
        accounts={"sd-build": {"name": "sd-build"}, "sd-nodes": {"name": "sd-nodes"}},
        project_policy={
            "bindings": [
                {"role": "roles/cloudbuild.builds.builder", "members": [f"serviceAccount:{BUILD}"]},
                {"role": "roles/container.defaultNodeServiceAccount",
                 "members": ["user:ada@test.example", f"serviceAccount:{NODES}"]},
                # A conditional grant may not hold when the nodes pull: it does not count.
                {"role": "roles/artifactregistry.reader", "members": [f"serviceAccount:{NODES}"],
                 "condition": {"title": "only until 2020", "expression": "false"}},
            ]
        },
    )  # fmt: skip
    accounts.ensure(gcloud.context(config, tmp_path, []))
    assert gcloud.changes() == [
        *grants(BUILD, BUILD_ROLES[1:]),
        *grants(NODES, ["roles/artifactregistry.reader"]),
    ]


def test_the_accounts_are_made_before_anything_runs_as_them() -> None:
    assert NAMES[:3] == ("apis", "accounts", "images")
    assert NAMES.index("accounts") < NAMES.index("cluster") < NAMES.index("function")


def repository(root: Path) -> Path:
    """The real build config, in a repository the build can upload."""
    (root / "images").mkdir(parents=True)
    shutil.copy(REPOSITORY / "images" / "cloudbuild.yaml", root / "images")
    return root


def test_the_images_are_built_as_the_build_account(
    config: Config, gcloud: Gcloud, tmp_path: Path
) -> None:
    root = repository(tmp_path / "repo")
    accounts.ensure(gcloud.context(config, root, []))
    gcloud.log.write_text("")
    images.ensure(gcloud.context(config, root, []))
    submit = gcloud.changes()[-1]
    assert submit[:3] == ["gcloud", "builds", "submit"]
    assert f"--service-account=projects/sd-test-project/serviceAccounts/{BUILD}" in submit
    # Built: the stand-in, like Cloud Build, refuses a build run as a chosen account whose
    # config (here the real images/cloudbuild.yaml) names no logging option.
    built = json.loads(gcloud.state.read_text())["images"]
    assert built["europe-west4-docker.pkg.dev/sd-test-project/sd-allocator/sd-webui"] == ["abc1234"]


def test_without_the_accounts_the_build_is_refused(
    config: Config, gcloud: Gcloud, tmp_path: Path
) -> None:
    root = repository(tmp_path / "repo")
    with pytest.raises(CommandFailed, match="NOT_FOUND: sd-build was not found"):
        images.ensure(gcloud.context(config, root, []))
