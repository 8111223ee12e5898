"""The sidecar's settings, read from environment variables and checked once at start.

``AGONES_SDK_HTTP_PORT`` (default ``9358``)
    The Agones SDK server's REST port on localhost; Agones sets it in every container of the pod.
``WEBUI_URL`` (default ``http://127.0.0.1:7860``)
    The WebUI in the same pod.
``SHARE_DIR`` (default ``/share``)
    The shared volume, an absolute path; pictures go to ``SHARE_DIR/users/<slug>/outputs``. Only
    the sidecar mounts ``users/`` (and ``deletions/``) there; the WebUI container never sees it.
``OUTPUTS_DIR`` (default ``/workspace/outputs``)
    Where the WebUI saves, on pod-local storage the sidecar mounts too (read-only is enough).
    Treated as hostile: only regular files are delivered, no symlink is followed.
``STATE_DIR`` (default ``/sidecar-state``)
    Pod-local storage only the sidecar mounts: its journal of delivered files and the owner.
``MAX_FILE_BYTES`` (default ``268435456``, 256 MiB)
    Larger files are not delivered (one log line each).
``MAX_FILES`` (default ``10000``)
    Files delivered per session (the pod's life); beyond it nothing more is (one log line).
``MAX_SESSION_BYTES`` (default ``21474836480``, 20 GiB)
    Bytes delivered per session; beyond it nothing more is (one log line). A sparse file costs
    its full size once copied, so `MAX_FILE_BYTES` times `MAX_FILES` alone is no bound.
``DELIVERY_POLL_SECONDS`` (default ``0.5``)
    How often the outputs folder is looked at; a file is finished when two looks agree, so it
    is delivered within about two periods of being complete.
``DELETIONS_PERIOD_SECONDS`` (default ``2``)
    How often people's requests to delete a picture (``SHARE_DIR/deletions``, written by the
    allocator) are carried out; every pod's sidecar does it, owned or not.
``OPTIONS_PERIOD_SECONDS`` (default ``60``)
    How often the WebUI's settings are read and, when changed, kept in
    ``SHARE_DIR/users/<slug>/webui/options.json`` (also once on SIGTERM).
``DRAIN_TIMEOUT_SECONDS`` (default ``20``)
    After SIGTERM, how long files still being written are waited for; keep it well below the
    pod's ``terminationGracePeriodSeconds``.
``HEALTH_PERIOD_SECONDS`` (default ``5``)
    How often the WebUI is pinged and, while it answers, Agones told it is healthy. Must be below
    the GameServer's ``spec.health.periodSeconds`` (a warning is logged if it is not).
``WEBUI_PING_TIMEOUT_SECONDS`` (default ``3``, or the period if that is shorter)
    How long one ``GET /internal/ping`` may take; at most the period.
``WEBUI_START_TIMEOUT_SECONDS`` (default ``1800``)
    How long a starting WebUI may take to answer for the first time. Until then Agones is told the
    pod is healthy, since a WebUI loads its model for minutes; after that, health pings stop and
    Agones replaces the pod. ``0`` waits forever.
``LOG_LEVEL`` (default ``INFO``)
    ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``.

A bad value stops the sidecar at start with one line naming the variable, and exit status 2. The
three folders must not overlap: the outputs and the state are pod-local, the share is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_PING_TIMEOUT = 3.0


class SettingsError(ValueError):
    """One bad setting; the message names it and says what is wrong, on one line."""


@dataclass(frozen=True)
class Settings:
    sdk_port: int = 9358
    webui_url: str = "http://127.0.0.1:7860"
    share_dir: Path = Path("/share")
    outputs_dir: Path = Path("/workspace/outputs")
    state_dir: Path = Path("/sidecar-state")
    max_file_bytes: int = 256 * 2**20
    max_files: int = 10_000
    max_session_bytes: int = 20 * 2**30
    poll_seconds: float = 0.5
    options_period: float = 60.0
    deletions_period: float = 2.0
    drain_timeout: float = 20.0
    health_period: float = 5.0
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    start_timeout: float = 1800.0
    log_level: str = "INFO"

    @property
    def sdk_url(self) -> str:
        return f"http://localhost:{self.sdk_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def read(name: str, parse: Callable[[str], T], default: T) -> T:
            text = env.get(name, "").strip()
            if not text:
                return default
            try:
                return parse(text)
            except ValueError as error:
                raise SettingsError(f"{name}={text!r}: {error}") from None

        period = read("HEALTH_PERIOD_SECONDS", _seconds(minimum=0.05, maximum=300), 5.0)
        ping_timeout = read(
            "WEBUI_PING_TIMEOUT_SECONDS",
            _seconds(minimum=0.05, maximum=period),
            min(DEFAULT_PING_TIMEOUT, period),
        )
        paths = {
            name: read(name, _absolute_path, default)
            for name, default in (
                ("SHARE_DIR", cls.share_dir),
                ("OUTPUTS_DIR", cls.outputs_dir),
                ("STATE_DIR", cls.state_dir),
            )
        }
        _check_apart(paths)
        return cls(
            sdk_port=read("AGONES_SDK_HTTP_PORT", _port, 9358),
            webui_url=read("WEBUI_URL", _http_url, cls.webui_url),
            share_dir=paths["SHARE_DIR"],
            outputs_dir=paths["OUTPUTS_DIR"],
            state_dir=paths["STATE_DIR"],
            max_file_bytes=read("MAX_FILE_BYTES", _count(1, 2**40), cls.max_file_bytes),
            max_files=read("MAX_FILES", _count(1, 10**7), cls.max_files),
            max_session_bytes=read("MAX_SESSION_BYTES", _count(1, 2**50), cls.max_session_bytes),
            poll_seconds=read("DELIVERY_POLL_SECONDS", _seconds(0.01, 3600), cls.poll_seconds),
            deletions_period=read(
                "DELETIONS_PERIOD_SECONDS", _seconds(0.01, 3600), cls.deletions_period
            ),
            options_period=read("OPTIONS_PERIOD_SECONDS", _seconds(0.01, 3600), cls.options_period),
            drain_timeout=read("DRAIN_TIMEOUT_SECONDS", _seconds(0, 3600), cls.drain_timeout),
            health_period=period,
            ping_timeout=ping_timeout,
            start_timeout=read("WEBUI_START_TIMEOUT_SECONDS", _seconds(0, math.inf), 1800.0),
            log_level=read("LOG_LEVEL", _log_level, "INFO"),
        )


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("not a TCP port (1-65535)")
    return int(text)


def _count(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not minimum <= int(text) <= maximum:
            raise ValueError(f"must be a whole number from {minimum} to {maximum}")
        return int(text)

    return parse


def _seconds(minimum: float, maximum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError("not a number of seconds") from None
        if not minimum <= seconds <= maximum:  # also refuses nan
            raise ValueError(f"must be between {minimum:g} and {maximum:g} seconds")
        return seconds

    return parse


def _http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError("has a bad port") from None
    return text.rstrip("/")


def _absolute_path(text: str) -> Path:
    path = Path(text)
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError("not an absolute path without '..'")
    return path


def _check_apart(paths: Mapping[str, Path]) -> None:
    """None of the folders may be, or lie inside, another: the share is seen by every pod, the
    outputs by this pod's WebUI too, the state by this sidecar only."""
    for name, path in paths.items():
        for other, other_path in paths.items():
            if other != name and path.is_relative_to(other_path):
                raise SettingsError(
                    f"{name}={str(path)!r}: must not be {other}={str(other_path)!r} or lie "
                    "inside it"
                )


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"not one of {', '.join(LOG_LEVELS)}")
    return level
