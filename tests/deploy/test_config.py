"""The config file is checked completely before anything runs; each problem names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.config import GPUS_PER_WEBUI, Config, ConfigError, Section, load_config
from deploy.yamlfile import dump
from tests.deploy.conftest import SAMPLE

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(dump(data))
    return path


def problems(tmp_path: Path, **changes: Any) -> list[str]:
    data: dict[str, Any] = {"project": "sd-test-project", "domain": "sd.test.example"}
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        section = data
        for parent in parents:
            section = section.setdefault(parent, {})
        section[key] = value
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data))
    return caught.value.problems


def test_the_example_config_is_valid_and_documents_every_key() -> None:
    config = load_config(REPO / "deploy.example.yaml")
    example = (REPO / "deploy.example.yaml").read_text()
    for name, field in Config.model_fields.items():
        assert f"{name}:" in example
        section = field.annotation
        if isinstance(section, type) and issubclass(section, Section):
            for key in section.model_fields:
                assert f"{key}:" in example, f"{name}.{key} is not in deploy.example.yaml"
    assert config.cluster.gpu.type == "nvidia-l4"


def test_the_examples_fleet_fills_its_gpu_pool_and_no_more() -> None:
    config = load_config(REPO / "deploy.example.yaml")
    gpu = config.cluster.gpu
    assert config.fleet.max * GPUS_PER_WEBUI == gpu.max_nodes * gpu.count
    assert config.fleet.buffer >= 1  # so a GPU node stays up, which the example must say


def test_defaults_fill_everything_but_project_and_domain(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, {"project": "sd-test-project", "domain": "sd.example.org"})
    )
    assert config.region == "us-central1"
    assert config.zone == "us-central1-a"
    assert config.filestore.capacity_gb == 1024
    assert config.redis.version == "redis_7_2"
    assert config.cruiser.mode == "function"
    assert config.iap.audience is None
    assert config.iap.oauth_secret is None and config.iap.external_users is False
    assert config.fleet.max <= config.cluster.gpu.most_webuis


def test_the_sample_config_is_valid() -> None:
    assert load_config(SAMPLE).fleet.buffer == 2


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"project": "My_Project"}, "project: a project ID is 6-30 lowercase letters"),
        ({"region": "central"}, "region: expected a region like us-central1"),
        ({"zone": "us-east1-b"}, "config: zone us-east1-b is not in region us-central1"),
        ({"domain": "https://sd.example.com/"}, "domain: expected a host name"),
        ({"admins": ["ada@example.com", "bob"]}, "admins[1]: expected an email address"),
        ({"cluster__gpu__type": "nvidia-h100"}, "cluster.gpu.type: Input should be 'nvidia-l4'"),
        ({"cluster__gpu__min_nodes": 5}, "cluster.gpu: min_nodes (5) exceeds max_nodes (4)"),
        ({"cluster__gpu__machine_type": "n1-standard-8"}, "nvidia-l4 GPUs need a g2-standard"),
        ({"cluster__gpu__driver_version": "disabled"}, "cluster.gpu.driver_version: Input"),
        ({"cluster__name": "SD"}, "cluster.name: 1-40 lowercase letters"),
        ({"cruiser__connector_range": "10.8.0.0/24"}, "cruiser.connector_range: a VPC connector"),
        ({"cruiser__connector_range": "not-a-range"}, "cruiser.connector_range: expected an IPv4"),
        ({"cruiser__schedule": "*/5 * * *"}, "cruiser.schedule: a cron schedule has 5 fields"),
        ({"cruiser__mode": "lambda"}, "cruiser.mode: Input should be 'function' or 'cronjob'"),
        ({"filestore__capacity_gb": 512}, "filestore: capacity_gb must be at least 1024"),
        (
            {"filestore__tier": "BASIC_SSD", "filestore__capacity_gb": 2048},
            "filestore: capacity_gb must be at least 2560 for tier BASIC_SSD",
        ),
        ({"filestore__share": "Models"}, "filestore.share: 1-16 lowercase letters"),
        ({"filestore__share": "a_very_long_share_name"}, "filestore.share: 1-16"),
        ({"filestore__share": "1share"}, "filestore.share: 1-16"),
        ({"redis__tier": "standard"}, "redis.tier: Input should be 'basic' or 'standard_ha'"),
        ({"redis__version": "7.2"}, "redis.version: expected a version like redis_7_2"),
        ({"agones__version": "latest"}, "agones.version: expected a version like 1.60.0"),
        ({"fleet__min": 5, "fleet__max": 2}, "fleet: min (5) exceeds max (2)"),
        ({"fleet__buffer": 0}, "fleet.buffer: at least 1: Agones's Buffer autoscaler"),
        (
            {"fleet__buffer": 2, "fleet__min": 1},
            "fleet: min (1) must be 0 or at least buffer (2)",
        ),
        (
            {"fleet__max": 10},
            "config: fleet.max (10) is more WebUIs than the GPU pool can run: "
            "cluster.gpu.max_nodes 4 with count 1 GPU(s) each, at 1 per WebUI, holds 4; "
            "the rest would stay Pending. Lower fleet.max to 4",
        ),
        ({"cluster__gpu__max_nodes": 3}, "config: fleet.max (4) is more WebUIs than the"),
        ({"iap__external_users": True}, "iap: external_users needs oauth_secret"),
        ({"iap__oauth_secret": "IAP_Client"}, "iap.oauth_secret: 1-63 lowercase letters"),
        ({"iap__audience": "1234"}, "iap.audience: expected /projects/NUMBER/global/backend"),
        ({"image_tag": "has space"}, "image_tag: a Docker tag"),
        ({"static_ip_name": "Sd_IP"}, "static_ip_name: 1-63 lowercase letters"),
    ],
)
def test_a_bad_value_names_its_key(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    found = problems(tmp_path, **changes)
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'deploy.yaml'}: ")
    assert expected in found[0]


def test_the_gpu_pool_holds_max_nodes_times_count_webuis(tmp_path: Path) -> None:
    two_gpus = {"machine_type": "g2-standard-24", "count": 2, "max_nodes": 2}
    fits = {"project": "sd-test-project", "domain": "sd.example.org", "fleet": {"max": 4}}
    assert load_config(write(tmp_path, {**fits, "cluster": {"gpu": two_gpus}})).fleet.max == 4
    [found] = problems(tmp_path, cluster__gpu=two_gpus, fleet__max=5)
    assert "fleet.max (5) is more WebUIs than the GPU pool can run" in found
    assert "holds 4" in found


def test_your_own_oauth_client_for_iap(tmp_path: Path) -> None:
    iap = {"oauth_secret": "iap-oauth-client", "external_users": True}
    data = {"project": "sd-test-project", "domain": "sd.example.org", "iap": iap}
    config = load_config(write(tmp_path, data))
    assert config.iap.oauth_secret == "iap-oauth-client"
    assert config.iap.external_users is True
    inside = {**data, "iap": {"oauth_secret": "iap-oauth-client"}}
    assert load_config(write(tmp_path, inside)).iap.external_users is False


def test_every_problem_is_reported_on_its_own_line(tmp_path: Path) -> None:
    found = problems(tmp_path, project="X", region="nowhere", redis__size_gb=0)
    assert [line.split(": ")[1] for line in found] == ["project", "region", "redis.size_gb"]


def test_required_keys_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"region": "us-central1"}))
    assert [p.split(": ", 1)[1] for p in caught.value.problems] == [
        "project: required",
        "domain: required",
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"projet": "x"}, "projet: unknown key (did you mean project?)"),
        ({"cluster__gpus": {}}, "cluster.gpus: unknown key (did you mean gpu?)"),
        ({"cluster__gpu__driver": "latest"}, "cluster.gpu.driver: unknown key (did you mean"),
        ({"password": "x"}, "password: unknown key"),
    ],
)
def test_unknown_keys_are_refused(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    found = problems(tmp_path, **changes)
    assert any(expected in line for line in found), found


def test_a_section_left_empty_takes_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("project: sd-test-project\ndomain: sd.example.org\niap:\n  # audience: x\n")
    assert load_config(path).iap.audience is None


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"deploy.yaml: no such file"):
        load_config(tmp_path / "deploy.yaml")


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("project: sd-test-project\ndomain: [sd.example.org\nzone: x\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "deploy.yaml: line " in str(caught.value)
    assert str(caught.value).count("\n") == 0


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("project: sd-test-project\ndomain: a.example.org\nproject: other-project\n")
    with pytest.raises(ConfigError, match=r"line 3, column 1: key 'project' given twice"):
        load_config(path)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("- project\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_long_values_are_not_echoed(tmp_path: Path) -> None:
    secretish = "x" * 200
    found = problems(tmp_path, domain=secretish)
    assert secretish not in found[0]
    assert "domain: expected a host name" in found[0]
