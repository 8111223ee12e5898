"""Putting a deploy together: a real one, or a plan that runs nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy import tools
from deploy.api import GoogleApi, PlanApi
from deploy.clients import Clients, GoogleClients
from deploy.config import Config
from deploy.context import Context, Facts
from deploy.plan import Plan
from deploy.runner import PlanRunner, SubprocessRunner

ROOT = Path(__file__).resolve().parents[1]  # the repository: chart, images, function source


@dataclass
class Setup:
    """Where things are, and what tests replace (the Google clients, the clock)."""

    out: Callable[[str], None]
    root: Path = ROOT
    work_dir: Path | None = None  # default: .deploy in the repository
    verbose: bool = False
    clients: Clients | None = None  # default: the real ones, built on first use
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    progress_every: float = 30.0

    @property
    def generated(self) -> Path:
        return self.work_dir or self.root / ".deploy"


def real_context(config: Config, setup: Setup) -> Context:
    runner = SubprocessRunner(
        setup.out,
        setup.root,
        verbose=setup.verbose,
        progress_every=setup.progress_every,
        environ=tools.environment(setup.root),  # the operator's helm and kubectl first
    )
    api = GoogleApi(setup.clients or GoogleClients(config.project), setup.out)
    return Context(
        config,
        runner,
        api,
        Facts(),
        setup.root,
        setup.generated,
        setup.out,
        clock=setup.clock,
        sleep=setup.sleep,
    )


def plan_context(config: Config, setup: Setup) -> tuple[Context, Plan]:
    plan = Plan(setup.out)
    ctx = Context(
        config,
        PlanRunner(plan),
        PlanApi(plan),
        Facts.planned(config),
        setup.root,
        setup.generated,
        setup.out,
        plan=True,
    )
    return ctx, plan
