"""Settings: defaults that fit Agones' own, and one clear line for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.sdk_url == "http://localhost:9358"
    assert settings.webui_url == "http://127.0.0.1:7860"
    assert settings.share_dir == Path("/share")
    assert settings.outputs_dir == Path("/workspace/outputs")
    assert settings.state_dir == Path("/sidecar-state")
    assert (settings.max_file_bytes, settings.max_files) == (256 * 2**20, 10_000)
    assert (settings.poll_seconds, settings.drain_timeout) == (0.5, 20.0)
    assert (settings.health_period, settings.ping_timeout) == (5.0, 3.0)
    assert (settings.start_timeout, settings.log_level) == (1800.0, "INFO")


def test_values_are_read_and_tidied() -> None:
    settings = Settings.from_env(
        {
            "AGONES_SDK_HTTP_PORT": "9400",
            "WEBUI_URL": "http://[::1]:7861/",
            "SHARE_DIR": "/mnt/filestore",
            "OUTPUTS_DIR": "/data/webui/outputs/",
            "STATE_DIR": "/data/sidecar",
            "MAX_FILE_BYTES": "1024",
            "MAX_FILES": "5",
            "DELIVERY_POLL_SECONDS": "0.2",
            "DRAIN_TIMEOUT_SECONDS": "0",
            "HEALTH_PERIOD_SECONDS": "2",
            "WEBUI_START_TIMEOUT_SECONDS": "0",
            "LOG_LEVEL": "debug",
        }
    )
    assert settings.sdk_url == "http://localhost:9400"
    assert settings.webui_url == "http://[::1]:7861"
    assert settings.share_dir == Path("/mnt/filestore")
    assert settings.outputs_dir == Path("/data/webui/outputs")
    assert settings.state_dir == Path("/data/sidecar")
    assert (settings.max_file_bytes, settings.max_files) == (1024, 5)
    assert (settings.poll_seconds, settings.drain_timeout) == (0.2, 0.0)
    assert (settings.health_period, settings.ping_timeout) == (2.0, 2.0)  # never above the period
    assert (settings.start_timeout, settings.log_level) == (0.0, "DEBUG")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGONES_SDK_HTTP_PORT", "0"),
        ("AGONES_SDK_HTTP_PORT", "65536"),
        ("AGONES_SDK_HTTP_PORT", "-1"),
        ("WEBUI_URL", "127.0.0.1:7860"),
        ("WEBUI_URL", "ftp://127.0.0.1"),
        ("WEBUI_URL", "http://127.0.0.1:99999"),
        ("WEBUI_URL", "http://127.0.0.1:7860/?x=1"),
        ("SHARE_DIR", "share"),
        ("SHARE_DIR", "/share/../etc"),
        ("OUTPUTS_DIR", "outputs"),
        ("OUTPUTS_DIR", "/workspace/../outputs"),
        ("OUTPUTS_DIR", "/share/users/alice/outputs"),
        ("OUTPUTS_DIR", "/sidecar-state/x"),
        ("STATE_DIR", "/share/state"),
        ("MAX_FILE_BYTES", "0"),
        ("MAX_FILE_BYTES", "1e6"),
        ("MAX_FILES", "-1"),
        ("DELIVERY_POLL_SECONDS", "0"),
        ("DRAIN_TIMEOUT_SECONDS", "-1"),
        ("HEALTH_PERIOD_SECONDS", "0"),
        ("HEALTH_PERIOD_SECONDS", "nan"),
        ("HEALTH_PERIOD_SECONDS", "five"),
        ("WEBUI_PING_TIMEOUT_SECONDS", "6"),
        ("WEBUI_START_TIMEOUT_SECONDS", "-1"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_value_names_the_variable_on_one_line(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    message = str(raised.value)
    assert message.startswith(f"{name}={value!r}: ") and "\n" not in message


@pytest.mark.parametrize(
    ("name", "value", "other"),
    [
        ("STATE_DIR", "/workspace/outputs", "OUTPUTS_DIR"),
        ("OUTPUTS_DIR", "/", "SHARE_DIR"),
        ("SHARE_DIR", "/workspace", "OUTPUTS_DIR"),
    ],
)
def test_the_share_and_the_pod_local_folders_must_not_overlap(
    name: str, value: str, other: str
) -> None:
    """The outputs and the state are this pod's alone; the share is every pod's."""
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    message = str(raised.value)
    assert name in message and other in message and "\n" not in message
