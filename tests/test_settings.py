"""A bad or missing setting stops start-up with one clear line naming it (exit code 2)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from allocator.settings import SettingsError, load_settings, unknown_variables

SD_ALLOCATOR = str(Path(sys.executable).parent / "sd-allocator")


def run_serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SDA_")}
    environ.update(env)
    return subprocess.run(
        [SD_ALLOCATOR, "serve", *args], env=environ, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"SDA_PORT": "eighty"}, (), "SDA_PORT: Input should be a valid integer"),
        ({}, ("--port", "70000"), "SDA_PORT: Input should be less than or equal to 65535"),
        ({"SDA_BACKEND": "static"}, (), "SDA_STATIC_TARGET is required"),
        (
            {"SDA_BACKEND": "cloud"},
            (),
            "SDA_BACKEND: Input should be 'local', 'static' or 'agones'",
        ),
        ({"SDA_HOST": "0.0.0.0"}, (), "SDA_IDENTITY=dev lets anyone sign in as anyone"),
        ({"SDA_IDLE_TIMEOUT": "-5"}, (), "SDA_IDLE_TIMEOUT: Input should be greater than 0"),
        ({"SDA_LOCAL_COMMAND": "webui --port {prt}"}, (), "SDA_LOCAL_COMMAND: unknown placeholder"),
        ({"SDA_WORKERS": "2"}, (), "SDA_REDIS_URL=memory lives inside one process"),
        ({"SDA_IDENTITY": "iap"}, (), "SDA_IAP_AUDIENCE is required"),
        (
            {"SDA_BACKEND": "agones", "KUBECONFIG": "/nonexistent/kubeconfig"},
            (),
            "SDA_BACKEND=agones: no Kubernetes credentials",
        ),
        ({"SDA_STATIC_TARGET": "nohost", "SDA_BACKEND": "static"}, (), "expected host:port"),
        ({}, ("--local-gpus", "0,1,0"), "SDA_LOCAL_GPUS: GPU 0 is listed twice"),
    ],
)
def test_bad_settings_stop_start_up_with_one_line(
    env: dict[str, str], args: tuple[str, ...], expected: str
) -> None:
    result = run_serve(*args, **env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_redis_url_is_never_echoed_in_errors() -> None:
    result = run_serve(SDA_REDIS_URL="http://user:hunter2@example.com")
    assert result.returncode == 2
    assert "hunter2" not in result.stderr
    assert "SDA_REDIS_URL" in result.stderr


def test_flags_and_variables_are_the_same_settings() -> None:
    settings = load_settings(idle_timeout="60", admins="Root@Example.com, b@example.com")
    assert settings.idle_timeout == 60
    assert settings.admins == ("root@example.com", "b@example.com")
    with pytest.raises(SettingsError, match="SDA_MAX_SESSIONS"):
        load_settings(max_sessions="0")


def test_a_mistyped_variable_is_pointed_out() -> None:
    found = unknown_variables({"SDA_IDLE_TIMOUT": "5", "SDA_PORT": "1", "SDA_REQUIRE_ALL": "1"})
    assert found == ["SDA_IDLE_TIMOUT (did you mean SDA_IDLE_TIMEOUT?)"]


def test_dev_identity_may_be_forced_onto_another_address() -> None:
    settings = load_settings(host="0.0.0.0", force_dev_identity="true")
    assert settings.identity == "dev"


@pytest.mark.parametrize(
    ("idle_timeout", "period", "delay"), [(900, 5.0, 3.0), (20, 5.0, 3.0), (4, 1.0, 1.0)]
)
def test_activity_timing_scales_with_a_short_idle_timeout(
    idle_timeout: float, period: float, delay: float
) -> None:
    settings = load_settings(idle_timeout=idle_timeout)
    assert (settings.activity_period, settings.busy_delay) == (period, delay)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"idle_timeout": 4, "activity_interval": 5}, "at most half of SDA_IDLE_TIMEOUT"),
        ({"idle_timeout": 10, "busy_after": 4.5}, "at most half of SDA_IDLE_TIMEOUT"),
        ({"activity_interval": 20, "busy_lease_ttl": 30}, "SDA_BUSY_LEASE_TTL must be more"),
    ],
)
def test_timing_that_cannot_keep_a_session_in_use_is_refused(
    given: dict[str, float], expected: str
) -> None:
    with pytest.raises(SettingsError, match=expected):
        load_settings(**given)


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ("0,1,0", "SDA_LOCAL_GPUS: GPU 0 is listed twice"),
        ("0,,1", "SDA_LOCAL_GPUS: an empty GPU id"),
        ("0,1,", "SDA_LOCAL_GPUS: an empty GPU id"),
        ("0;1", "SDA_LOCAL_GPUS: GPU id '0;1': use only letters, digits, '-' and ':'"),
        ("MIG-GPU-1/0/0", "use only letters, digits, '-' and ':'"),
        ("$(reboot)", "use only letters, digits, '-' and ':'"),
    ],
)
def test_a_gpu_list_with_a_duplicate_an_empty_or_an_odd_id_is_refused(
    gpus: str, expected: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(expected)):
        load_settings(local_gpus=gpus)


def test_gpu_ids_are_indexes_uuids_or_mig_devices() -> None:
    gpus = "0, GPU-8f3c2d1e-aaaa-bbbb-cccc-0123456789ab,MIG-5c89852c-d268-c3f3-1b07-005d5ae1dc3f"
    assert load_settings(local_gpus=gpus).local_gpus == (
        "0",
        "GPU-8f3c2d1e-aaaa-bbbb-cccc-0123456789ab",
        "MIG-5c89852c-d268-c3f3-1b07-005d5ae1dc3f",
    )
    assert load_settings(local_gpus=" ").local_gpus == ()


def test_the_gpu_placeholder_needs_gpus() -> None:
    command = "webui --port {port} --device-id {gpu}"
    with pytest.raises(SettingsError) as refused:
        load_settings(local_command=command)
    assert "SDA_LOCAL_COMMAND" in str(refused.value) and "SDA_LOCAL_GPUS" in str(refused.value)
    assert load_settings(local_command=command, local_gpus="0").local_command == command


@pytest.mark.parametrize(
    ("environ", "capacity"),
    [
        ({}, 4),
        ({"SDA_MAX_SESSIONS": "8"}, 8),
        ({"SDA_LOCAL_GPUS": "0,1"}, 2),  # not the default 4: one WebUI per GPU
        ({"SDA_LOCAL_GPUS": "0,1,2,3", "SDA_MAX_SESSIONS": "2"}, 2),  # the lower one wins
        ({"SDA_LOCAL_GPUS": "0,1", "SDA_MAX_SESSIONS": "8"}, 2),  # never two on one GPU
        ({"SDA_LOCAL_GPUS": "0,1", "SDA_MAX_SESSIONS": "4"}, 2),
    ],
)
def test_local_capacity_is_one_webui_per_gpu(
    environ: dict[str, str], capacity: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)  # as `serve` passes its flags on
    assert load_settings().local_capacity == capacity
