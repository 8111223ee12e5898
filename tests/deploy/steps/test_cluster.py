"""The cluster step against the gcloud stand-in (tests/deploy/fake_cli.py): nodes run as the
deploy's node account, the cluster starts at and stays on a Kubernetes version Agones
supports, and a GPU pool that differs from the config stops the deploy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.app import Setup, real_context
from deploy.config import Config
from deploy.steps import cluster
from deploy.types import StepFailed
from tests.deploy.conftest import install_stand_ins, with_changes
from tests.deploy.fakes import Clock, FakeClients

NODES = "sd-nodes@sd-test-project.iam.gserviceaccount.com"
WHERE = ("--zone=europe-west4-b", "--project=sd-test-project")
HOLD = (
    "--add-maintenance-exclusion-name=agones-supported-minor",
    "--add-maintenance-exclusion-scope=no_minor_upgrades",
    "--add-maintenance-exclusion-until-end-of-support",
)


@dataclass
class Gcloud:
    """The stand-in's simulated project and the log of the commands it was given."""

    root: Path
    state: Path
    log: Path

    def ensure(self, config: Config) -> list[str]:
        """Run the step for real against the stand-in; what it said."""
        self.log.write_text("")
        out: list[str] = []
        setup = Setup(out=out.append, root=self.root, clients=FakeClients(), clock=Clock())
        cluster.ensure(real_context(config, setup))
        return out

    def commands(self) -> list[list[str]]:
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]

    def changes(self) -> list[list[str]]:
        reads = ("describe", "get-server-config", "get-credentials")
        return [argv for argv in self.commands() if not set(argv) & set(reads)]

    def edit_state(self, **values: Any) -> None:
        """Set top-level keys of the simulated project (e.g. `old_gcloud`)."""
        state = json.loads(self.state.read_text())
        self.state.write_text(json.dumps({**state, **values}))

    def edit(self, table: str, name: str, *path: str, value: Any) -> None:
        """Set one field of a cluster or pool in the simulated project (None: remove it)."""
        state = json.loads(self.state.read_text())
        target = state[table][name]
        for key in path[:-1]:
            target = target[key][0] if isinstance(target[key], list) else target[key]
        if value is None:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
        self.state.write_text(json.dumps(state))

    def set_server_config(self, *versions: str) -> None:
        state = json.loads(self.state.read_text())
        state["server_config"] = {"channels": [{"channel": "REGULAR", "validVersions": versions}]}
        self.state.write_text(json.dumps(state))


@pytest.fixture
def gcloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gcloud]:
    state, log = install_stand_ins(tmp_path, monkeypatch, ("gcloud",))
    yield Gcloud(tmp_path, state, log)


def created(gcloud: Gcloud, config: Config) -> Gcloud:
    """A project where an earlier deploy created the cluster and its GPU pool."""
    gcloud.ensure(config)
    return gcloud


def command(commands: list[list[str]], *words: str) -> list[str]:
    found = [argv for argv in commands if argv[1 : 1 + len(words)] == list(words)]
    assert len(found) == 1, commands
    return found[0]


# Defect 2: the nodes' service account.


def test_the_cluster_and_the_gpu_pool_run_as_the_node_account(
    gcloud: Gcloud, config: Config
) -> None:
    out = gcloud.ensure(config)
    commands = gcloud.commands()
    assert f"--service-account={NODES}" in command(commands, "container", "clusters", "create")
    assert f"--service-account={NODES}" in command(commands, "container", "node-pools", "create")
    assert not any("WARNING" in line for line in out)


@pytest.mark.parametrize("pool", ["default-pool", "gpu"])
def test_a_pool_on_another_account_is_flagged_with_the_fix(
    gcloud: Gcloud, config: Config, pool: str
) -> None:
    created(gcloud, config)
    if pool == "gpu":
        gcloud.edit("pools", "gpu", "config", "serviceAccount", value="default")
    else:
        gcloud.edit("clusters", "sd-allocator", "nodePools", "config", "serviceAccount",
                    value="default")  # fmt: skip
    out = gcloud.ensure(config)
    warnings = [line for line in out if "WARNING" in line]
    assert len(warnings) == 1, out
    assert f"node pool {pool} runs as the Compute Engine default service account" in warnings[0]
    assert "cannot change its service account in place; recreate it" in warnings[0]
    if pool == "gpu":
        assert "gcloud container node-pools delete gpu --cluster=sd-allocator" in warnings[0]
    assert gcloud.changes() == []


def test_an_existing_clusters_pools_are_checked_too(gcloud: Gcloud, config: Config) -> None:
    created(gcloud, config)
    gcloud.edit("clusters", "sd-allocator", "nodePools", "config", "serviceAccount",
                value="other@sd-test-project.iam.gserviceaccount.com")  # fmt: skip
    out = gcloud.ensure(with_changes(config, cluster={"create": False}))
    assert any(
        "node pool default-pool runs as other@sd-test-project.iam.gserviceaccount.com" in line
        for line in out
    ), out


# Defect 5: Agones' Kubernetes range.


def test_a_new_cluster_starts_at_the_highest_supported_minor_and_stays_there(
    gcloud: Gcloud, config: Config
) -> None:
    gcloud.set_server_config("1.37.1-gke.100", "1.36.2-gke.1100", "1.35.5-gke.1300")
    gcloud.ensure(config)
    commands = gcloud.commands()
    create = command(commands, "container", "clusters", "create")
    assert "--release-channel=regular" in create
    assert "--cluster-version=1.36" in create
    update = command(commands, "container", "clusters", "update")
    assert update == ["gcloud", "container", "clusters", "update", "sd-allocator", WHERE[0],
                      *HOLD, WHERE[1]]  # fmt: skip
    assert commands.index(create) < commands.index(update)
    assert ["gcloud", "container", "get-server-config", WHERE[0], "--format=json", WHERE[1]] in (
        commands
    )


def test_no_supported_version_in_the_channel_stops_before_creating(
    gcloud: Gcloud, config: Config
) -> None:
    gcloud.set_server_config("1.38.0-gke.100", "1.37.1-gke.1000")
    with pytest.raises(StepFailed) as caught:
        gcloud.ensure(config)
    message = str(caught.value)
    assert "the regular release channel in europe-west4-b offers 1.38, 1.37" in message
    assert "Agones 1.60.0 supports 1.34, 1.35, 1.36" in message
    assert "Set agones.version to a release that supports" in message
    assert gcloud.changes() == []


@pytest.mark.parametrize("create", [True, False])
@pytest.mark.parametrize(
    ("version", "fix"),
    [
        ("1.37.2-gke.1000", "set agones.version to a release that supports 1.37, or delete"),
        (
            "1.33.9-gke.1000",
            "gcloud container clusters upgrade sd-allocator --zone=europe-west4-b --master "
            "--cluster-version=1.34",
        ),
    ],
)
def test_a_cluster_outside_agones_range_stops_the_deploy_with_the_fix(
    gcloud: Gcloud, config: Config, create: bool, version: str, fix: str
) -> None:
    created(gcloud, config)
    gcloud.edit("clusters", "sd-allocator", "currentMasterVersion", value=version)
    with pytest.raises(StepFailed) as caught:
        gcloud.ensure(with_changes(config, cluster={"create": create}))
    assert f"Kubernetes {version} is outside what Agones 1.60.0 supports" in str(caught.value)
    assert fix in str(caught.value)
    assert gcloud.changes() == []


def test_an_existing_cluster_without_the_exclusion_gets_it_once(
    gcloud: Gcloud, config: Config
) -> None:
    created(gcloud, config)
    gcloud.edit("clusters", "sd-allocator", "maintenancePolicy", value=None)
    out = gcloud.ensure(config)
    assert gcloud.changes() == [
        ["gcloud", "container", "clusters", "update", "sd-allocator", WHERE[0], *HOLD, WHERE[1]]
    ]
    assert "  cluster sd-allocator: updated (no minor upgrades until its version's end of " \
        "support)" in out  # fmt: skip
    again = gcloud.ensure(config)
    assert gcloud.changes() == []
    assert "  cluster sd-allocator: exists, unchanged" in again


def test_a_cluster_the_deploy_did_not_create_only_gets_the_command(
    gcloud: Gcloud, config: Config
) -> None:
    created(gcloud, config)
    gcloud.edit("clusters", "sd-allocator", "maintenancePolicy", value=None)
    out = gcloud.ensure(with_changes(config, cluster={"create": False}))
    assert gcloud.changes() == []
    warning = next(line for line in out if "WARNING" in line)
    assert "may upgrade itself to a Kubernetes minor version that Agones 1.60.0" in warning
    assert "gcloud container clusters update sd-allocator --zone=europe-west4-b " in warning
    assert "--add-maintenance-exclusion-until-end-of-support" in warning


def test_a_gcloud_too_old_for_the_exclusion_is_told_and_the_deploy_goes_on(
    gcloud: Gcloud, config: Config
) -> None:
    """gcloud 528 lacks the flag; the version check of every run still guards the range."""
    gcloud.edit_state(old_gcloud=True)
    out = gcloud.ensure(config)
    warning = next(line for line in out if "WARNING" in line)
    assert "this gcloud is too old for --add-maintenance-exclusion-until-end-of-support" in warning
    assert "gcloud components update" in warning
    assert any(argv[3] == "create" for argv in gcloud.changes() if len(argv) > 3)


def test_an_exclusion_of_ours_read_another_way_is_never_added_twice(
    gcloud: Gcloud, config: Config
) -> None:
    created(gcloud, config)
    exclusion = {"maintenanceExclusionOptions": {"scope": "NO_MINOR_UPGRADES"}, "endTime": "x"}
    window = {"maintenanceExclusions": {"agones-supported-minor": exclusion}}
    gcloud.edit("clusters", "sd-allocator", "maintenancePolicy", value={"window": window})
    out = gcloud.ensure(config)
    assert gcloud.changes() == []
    assert any("has the maintenance exclusion agones-supported-minor" in line for line in out)


# Defect 7: every setting of the GPU pool is compared.


@pytest.mark.parametrize(
    ("path", "value", "difference"),
    [
        (("config", "accelerators", "acceleratorCount"), "2", "GPUs per node 2 (config: 1)"),
        (
            ("config", "accelerators", "gpuDriverInstallationConfig", "gpuDriverVersion"),
            "LATEST",
            "GPU driver latest (config: default)",
        ),
        (("config", "spot"), True, "Spot VMs yes (config: no)"),
        (("config", "machineType"), "g2-standard-4", "machine type g2-standard-4"),
    ],
)
def test_a_gpu_pool_that_differs_stops_the_deploy(
    gcloud: Gcloud, config: Config, path: tuple[str, ...], value: Any, difference: str
) -> None:
    created(gcloud, config)
    gcloud.edit("pools", "gpu", *path, value=value)
    with pytest.raises(StepFailed) as caught:
        gcloud.ensure(config)
    assert difference in str(caught.value)
    assert "A node pool cannot change that in place: delete it" in str(caught.value)
    assert gcloud.changes() == []


def test_a_changed_config_is_compared_too(gcloud: Gcloud, config: Config) -> None:
    created(gcloud, config)
    changed = with_changes(
        config,
        cluster={"gpu": {**config.cluster.gpu.model_dump(), "spot": True, "count": 2}},
    )
    with pytest.raises(StepFailed) as caught:
        gcloud.ensure(changed)
    assert "GPUs per node 1 (config: 2); Spot VMs no (config: yes)" in str(caught.value)


def test_a_matching_pool_is_left_alone(gcloud: Gcloud, config: Config) -> None:
    created(gcloud, config)
    out = gcloud.ensure(config)
    assert gcloud.changes() == []
    assert "  node pool gpu: exists, unchanged" in out
