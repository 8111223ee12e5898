"""Filestore: created when absent, otherwise left alone; a data-bearing instance that differs
from the config stops the deploy rather than being changed."""

from __future__ import annotations

import pytest
from google.cloud import filestore_v1

from deploy.config import Config
from deploy.steps import filestore
from deploy.types import StepFailed
from tests.deploy.conftest import api_context, with_changes
from tests.deploy.fakes import (
    FILESTORE_IP,
    READY,
    Clock,
    FakeClients,
    FakeFilestore,
    instance,
    instance_state,
)

State = filestore_v1.Instance.State
LOCATION = "projects/sd-test-project/locations/europe-west4-b"
NAME = f"{LOCATION}/instances/sd-share"
GET = filestore_v1.GetInstanceRequest(name=NAME)


def wanted_create() -> filestore_v1.CreateInstanceRequest:
    return filestore_v1.CreateInstanceRequest(
        parent=LOCATION,
        instance_id="sd-share",
        instance=filestore_v1.Instance(
            tier=filestore_v1.Instance.Tier.BASIC_HDD,
            file_shares=[filestore_v1.FileShareConfig(name="share", capacity_gb=2048)],
            networks=[
                filestore_v1.NetworkConfig(
                    network="default",
                    modes=[filestore_v1.NetworkConfig.AddressMode.MODE_IPV4],
                    connect_mode=filestore_v1.NetworkConfig.ConnectMode.DIRECT_PEERING,
                )
            ],
        ),
    )


def ensure(config: Config, fake: FakeFilestore, clock: Clock) -> list[str]:
    out: list[str] = []
    ctx = api_context(config, FakeClients(filestore=fake), clock, out)
    filestore.ensure(ctx)
    assert ctx.facts["filestore_ip"] == FILESTORE_IP
    return out


def test_absent_is_created(config: Config, clock: Clock) -> None:
    fake = FakeFilestore()
    out = ensure(config, fake, clock)
    assert fake.requests == [GET, wanted_create()]
    assert "  instance sd-share: created" in out


def test_present_and_matching_is_left_alone(config: Config, clock: Clock) -> None:
    fake = FakeFilestore({NAME: instance(NAME, capacity_gb=2048)})
    out = ensure(config, fake, clock)
    assert fake.requests == [GET]
    assert "  instance sd-share: exists, unchanged" in out


def test_created_by_someone_else_meanwhile_is_read(config: Config, clock: Clock) -> None:
    def race(fake: FakeFilestore, name: str) -> None:
        fake.instances[name] = instance(name, capacity_gb=2048)

    fake = FakeFilestore(on_create=race)
    ensure(config, fake, clock)
    assert fake.requests == [GET, wanted_create(), GET]


@pytest.mark.parametrize(
    ("existing", "problem"),
    [
        ({"tier": "BASIC_SSD"}, "tier BASIC_SSD (config: BASIC_HDD)"),
        ({"share": "vol1"}, "share vol1 (config: share)"),
        ({"network": "projects/p/global/networks/other"}, "network other (config: default)"),
    ],
)
def test_a_different_instance_stops_the_deploy_unchanged(
    config: Config, clock: Clock, existing: dict[str, str], problem: str
) -> None:
    fake = FakeFilestore({NAME: instance(NAME, capacity_gb=2048, **existing)})  # type: ignore[arg-type]
    out: list[str] = []
    with pytest.raises(StepFailed) as caught:
        filestore.ensure(api_context(config, FakeClients(filestore=fake), clock, out))
    assert problem in str(caught.value)
    assert "never changes or replaces it" in str(caught.value)
    assert fake.requests == [GET]


def test_the_old_tier_name_counts_as_the_same(config: Config, clock: Clock) -> None:
    fake = FakeFilestore({NAME: instance(NAME, tier="STANDARD", capacity_gb=2048)})
    ensure(config, fake, clock)
    assert fake.requests == [GET]


def test_a_different_capacity_is_reported_never_changed(config: Config, clock: Clock) -> None:
    fake = FakeFilestore({NAME: instance(NAME, capacity_gb=4096)})
    out = ensure(config, fake, clock)
    assert fake.requests == [GET]
    assert any("has 4096 GB, the config says 2048 GB; left as it is" in line for line in out)


def test_an_instance_still_being_created_is_waited_for(config: Config, clock: Clock) -> None:
    creating = instance_state(State.CREATING)
    fake = FakeFilestore({NAME: instance(NAME, capacity_gb=2048, state=creating)})
    fake.upcoming_states = [creating] * 4 + [READY]
    out = ensure(config, fake, clock)
    assert fake.requests == [GET] * 5
    assert clock.sleeps == [15] * 3
    assert "  … waiting for Filestore instance sd-share to be READY (0m30s)" in out
    assert "  instance sd-share: exists, unchanged" in out


def test_an_instance_in_error_stops_the_deploy(config: Config, clock: Clock) -> None:
    failed = instance_state(State.ERROR)
    fake = FakeFilestore({NAME: instance(NAME, capacity_gb=2048, state=failed)})
    with pytest.raises(StepFailed, match="is ERROR, not READY"):
        filestore.ensure(api_context(config, FakeClients(filestore=fake), clock, []))


def test_a_long_creation_says_how_long_it_waits(config: Config, clock: Clock) -> None:
    fake = FakeFilestore(pending=3, clock=clock)
    out = ensure(config, fake, clock)
    waits = [line for line in out if "waiting" in line]
    assert waits == [
        "  … waiting for Filestore instance sd-share (0m30s)",
        "  … waiting for Filestore instance sd-share (1m00s)",
        "  … waiting for Filestore instance sd-share (1m30s)",
    ]


def test_a_creation_that_never_ends_gives_up(config: Config, clock: Clock) -> None:
    fake = FakeFilestore(pending=1000, clock=clock)
    with pytest.raises(StepFailed, match="gave up waiting for Filestore instance sd-share"):
        filestore.ensure(api_context(config, FakeClients(filestore=fake), clock, []))


def test_the_request_follows_the_config(config: Config, clock: Clock) -> None:
    changed = with_changes(
        config,
        network="sd-vpc",
        filestore={"tier": "BASIC_SSD", "share": "models", "capacity_gb": 2560},
    )
    fake = FakeFilestore()
    ensure(changed, fake, clock)
    created = fake.requests[1].instance
    assert created.tier == filestore_v1.Instance.Tier.BASIC_SSD
    assert created.file_shares[0].name == "models"
    assert created.file_shares[0].capacity_gb == 2560
    assert created.networks[0].network == "sd-vpc"
