"""Running shell commands (gcloud, helm, kubectl, git): for real, or only written into a plan.

Steps say what kind of command they run, which is what a plan, a log and the read-only view
for `--only` need to know:

- `query`: reads; returns None when what it asks about does not exist.
- `change`: creates or changes something in the project or the cluster.
- `local`: changes only this machine (the kubeconfig, helm's repository cache).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from deploy.plan import Plan
from deploy.types import CommandFailed, NeedsChange, Stdin, minutes

# How gcloud, helm and kubectl say "no such thing" (gcloud: NOT_FOUND, "was not found", 404;
# helm: "release: not found"; kubectl: "(NotFound) ... not found").
NOT_FOUND = re.compile(r"not[ _]found|does not exist|\b404\b", re.IGNORECASE)
PROGRESS_EVERY = 30.0


class Runner(Protocol):
    def query(self, argv: Sequence[str], *, planned: str | None = None) -> str | None:
        """Stdout of a read-only command, or None when what it asks about does not exist.
        A plan returns `planned` instead."""

    def change(self, argv: Sequence[str], *, stdin: Stdin | None = None) -> str:
        """Run a command that creates or changes something; its stdout."""

    def local(self, argv: Sequence[str]) -> str:
        """Run a command that changes only this machine; its stdout."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class SubprocessRunner:
    """Runs commands in `cwd`, capturing their output, with a progress line every 30 s."""

    out: Callable[[str], None]
    cwd: Path
    verbose: bool = False
    progress_every: float = PROGRESS_EVERY
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def query(self, argv: Sequence[str], *, planned: str | None = None) -> str | None:
        if self.verbose:
            self.out(f"    $ {shlex.join(argv)}")
        result = self._run(argv, None)
        if result.returncode == 0:
            return result.stdout
        if NOT_FOUND.search(result.stderr):
            return None
        raise CommandFailed(argv, result.returncode, result.stderr)

    def change(self, argv: Sequence[str], *, stdin: Stdin | None = None) -> str:
        shown = "  (with standard input, not shown)" if stdin else ""
        self.out(f"    $ {shlex.join(argv)}{shown}")
        return self._checked(argv, stdin)

    def local(self, argv: Sequence[str]) -> str:
        if self.verbose:
            self.out(f"    $ {shlex.join(argv)}")
        return self._checked(argv, None)

    def _checked(self, argv: Sequence[str], stdin: Stdin | None) -> str:
        result = self._run(argv, stdin)
        if result.returncode != 0:
            raise CommandFailed(argv, result.returncode, result.stderr)
        return result.stdout

    def _run(self, argv: Sequence[str], stdin: Stdin | None) -> Completed:
        # No prompts: a deploy must never hang waiting for an answer nobody sees.
        env = {**self.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=self.cwd,
                env=env,
            )
        except FileNotFoundError:
            raise CommandFailed(argv, 127, f"{argv[0]}: not found on PATH") from None
        return self._wait(process, argv, stdin.text if stdin else None)

    def _wait(
        self, process: subprocess.Popen[str], argv: Sequence[str], text: str | None
    ) -> Completed:
        started = time.monotonic()
        while True:
            try:
                stdout, stderr = process.communicate(text, timeout=self.progress_every)
                return Completed(process.returncode, stdout, stderr)
            except subprocess.TimeoutExpired:
                text = None  # already sent; communicate() must not get it twice
                waited = minutes(time.monotonic() - started)
                self.out(f"    … {' '.join(argv[:3])} still running ({waited})")


@dataclass
class PlanRunner:
    """Writes every command into the plan and runs none."""

    plan: Plan

    def query(self, argv: Sequence[str], *, planned: str | None = None) -> str | None:
        self.plan.command(argv)
        return planned

    def change(self, argv: Sequence[str], *, stdin: Stdin | None = None) -> str:
        self.plan.command(argv, stdin.shown if stdin else None)
        return ""

    def local(self, argv: Sequence[str]) -> str:
        self.plan.command(argv)
        return ""


@dataclass
class ReadOnlyRunner:
    """For steps run only for their results: reading is fine, changing is refused."""

    inner: Runner

    def query(self, argv: Sequence[str], *, planned: str | None = None) -> str | None:
        return self.inner.query(argv, planned=planned)

    def change(self, argv: Sequence[str], *, stdin: Stdin | None = None) -> str:
        raise NeedsChange(shlex.join(argv))

    def local(self, argv: Sequence[str]) -> str:
        return self.inner.local(argv)
