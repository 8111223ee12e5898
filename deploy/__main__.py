"""`python -m deploy --config deploy.yaml [--plan] [--preflight] [--only STEP ...]` (what
`make deploy` runs). The preflight runs first, every time; `--preflight` runs only it.

Exit status: 0 done, 1 the preflight or a step stopped it (rerunning is safe), 2 the config or
the options are wrong.
"""

from __future__ import annotations

from pathlib import Path

import click

from deploy.app import Setup, plan_context, real_context
from deploy.config import ConfigError, load_config
from deploy.driver import StepError, run
from deploy.preflight import PreflightFailed, check, recheck
from deploy.steps import NAMES


def _steps(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    names = [name.strip() for item in value for name in item.split(",") if name.strip()]
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        raise click.BadParameter(f"unknown step {', '.join(unknown)}; steps: {', '.join(NAMES)}")
    return names


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The deploy config (start from deploy.example.yaml).",
)
@click.option("--plan", is_flag=True, help="Print every command and API request; run nothing.")
@click.option(
    "--preflight",
    "preflight_only",
    is_flag=True,
    help="Only check what the deploy needs (tools, project, quota, network); change nothing.",
)
@click.option(
    "--only",
    multiple=True,
    callback=_steps,
    metavar="STEP[,STEP]",
    help=f"Run only these steps (repeatable). Steps: {', '.join(NAMES)}.",
)
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where generated files go (default: .deploy in the repository).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also show the commands that only read.")
@click.pass_context
def main(
    click_ctx: click.Context,
    config_path: Path,
    plan: bool,
    preflight_only: bool,
    only: list[str],
    work_dir: Path | None,
    verbose: bool,
) -> None:
    """Deploy sd-allocator to a Google Cloud project, or change what differs from the config."""
    setup: Setup = click_ctx.obj or Setup(out=click.echo)
    setup.work_dir = work_dir.resolve() if work_dir else setup.work_dir
    setup.verbose = verbose
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click_ctx.exit(2)
    ctx = plan_context(config, setup)[0] if plan else real_context(config, setup)
    try:
        waiting = check(ctx)
        if not preflight_only:
            run(ctx, only, after={"apis": lambda: recheck(ctx, waiting)})
    except PreflightFailed as exc:
        click.echo(f"\ndeploy stopped by the preflight: {exc}", err=True)
        click_ctx.exit(1)
    except StepError as exc:
        click.echo(f"\ndeploy stopped at step {exc.step}: {exc}", err=True)
        click.echo(
            "Nothing after it ran. Fix the cause and run the same command again: every step "
            "checks what exists first, so rerunning is safe.",
            err=True,
        )
        click_ctx.exit(1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted; running the same command again is safe", err=True)
        click_ctx.exit(130)


if __name__ == "__main__":
    main()
