from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.api import GoogleApi
from deploy.app import Setup, plan_context
from deploy.config import Config, load_config
from deploy.context import Context, Facts
from deploy.plan import Plan
from tests.deploy.fakes import Clock, FakeClients

HERE = Path(__file__).parent
SAMPLE = HERE / "sample.yaml"
FAKE_CLI = HERE / "fake_cli.py"


class NoCommands:
    """A runner for steps that must not run any command."""

    def query(self, argv: Any, *, planned: Any = None) -> Any:
        raise AssertionError(f"unexpected command {argv}")

    change = local = query


@pytest.fixture
def config() -> Config:
    return load_config(SAMPLE)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def api_context(
    config: Config, clients: FakeClients, clock: Clock, out: list[str], **facts: str
) -> Context:
    """A real-mode context whose only outside world is the fake Google clients."""
    return Context(
        config,
        NoCommands(),  # type: ignore[arg-type]
        GoogleApi(clients, out.append),
        Facts(dict(facts)),
        HERE,
        HERE / ".unused",
        out.append,
        clock=clock,
        sleep=clock.sleep,
    )


def planned(config: Config, root: Path) -> tuple[Context, Plan, list[str]]:
    out: list[str] = []
    ctx, plan = plan_context(config, Setup(out=out.append, root=root))
    return ctx, plan, out


def with_changes(config: Config, **changes: Any) -> Config:
    """The config with some sections or keys replaced, validated again."""
    data = config.model_dump()
    for key, value in changes.items():
        if isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return Config.model_validate(data)


def install_stand_ins(
    root: Path, monkeypatch: pytest.MonkeyPatch, tools: tuple[str, ...]
) -> tuple[Path, Path]:
    """`tools` on PATH as fake_cli.py, sharing one simulated project: (state file, log)."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for tool in tools:
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKE_CLI}" {tool} "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    state, log = root / "state.json", root / "calls.jsonl"
    state.write_text("{}")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLI_STATE", str(state))
    monkeypatch.setenv("FAKE_CLI_LOG", str(log))
    return state, log
