"""The preflight's checks (deploy/preflight.py runs them), and what each reports: findings.

A check only reads: PATH, or the project through `ctx.query_json`. It returns findings, each
`ok`, a `note` or a `stop` (the deploy must not begin), with the fix for a person to apply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from deploy.config import Config
from deploy.context import Context

Level = Literal["ok", "note", "stop"]


@dataclass(frozen=True)
class Finding:
    level: Level
    text: str
    fix: str = ""  # how to fix it (lines)


def ok(text: str) -> Finding:
    return Finding("ok", text)


def note(text: str, fix: str = "") -> Finding:
    return Finding("note", text, fix)


def stop(text: str, fix: str) -> Finding:
    return Finding("stop", text, fix)


def stops(findings: list[Finding]) -> bool:
    return any(finding.level == "stop" for finding in findings)


@dataclass(frozen=True)
class Check:
    name: str
    what: str  # what it reads
    run: Callable[[Context], list[Finding]]
    needs: tuple[str, ...] = ()  # APIs its commands need: not checked until they are enabled
    function_mode_only: bool = False

    @property
    def title(self) -> str:
        return f"{self.name}: {self.what}"

    def applies(self, config: Config) -> bool:
        return config.function_mode or not self.function_mode_only
