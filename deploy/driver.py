"""Running the steps in order, and turning whatever stops one into a message that names it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from google.api_core.exceptions import GoogleAPICallError
from google.auth.exceptions import GoogleAuthError

from deploy import next_steps
from deploy.context import Context
from deploy.plan import HEADER
from deploy.steps import STEPS, Step, providers
from deploy.types import DeployError, NeedsChange


class StepError(DeployError):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


def run(
    ctx: Context,
    only: Sequence[str] = (),
    after: Mapping[str, Callable[[], None]] | None = None,
) -> None:
    """Run every step (or those named in `only`), then show what is left to do by hand.
    `after`: what to do once a step has run (the preflight's checks that waited for APIs)."""
    chosen = [s for s in STEPS if s.applies(ctx.config) and (not only or s.name in only)]
    readers = [] if ctx.plan or not only else providers(chosen, ctx.config)
    todo = [s for s in STEPS if s in chosen or s in readers]
    if ctx.plan:
        ctx.out(HEADER)
    for number, step in enumerate(todo, 1):
        reading = step in readers
        suffix = " (only reading what later steps need)" if reading else ""
        ctx.out(f"\n[{number}/{len(todo)}] {step.name}: {step.why}{suffix}")
        _run_step(ctx.read_only() if reading else ctx, step)
        if after and step.name in after and not reading:
            after[step.name]()
    if not only:
        next_steps.show(ctx)


def _run_step(ctx: Context, step: Step) -> None:
    try:
        step.run(ctx)
    except NeedsChange as exc:
        raise StepError(
            step.name,
            f"the chosen steps need what this step finds, but it would first have to change "
            f"something ({exc}). Run it first: --only {step.name}",
        ) from exc
    except DeployError as exc:
        raise StepError(step.name, str(exc)) from exc
    except GoogleAuthError as exc:
        raise StepError(
            step.name,
            f"no usable Google credentials ({exc}). Run: gcloud auth application-default login",
        ) from exc
    except GoogleAPICallError as exc:
        raise StepError(step.name, f"{type(exc).__name__}: {exc.message}") from exc
