"""The `sd-allocator` command: serve, and the operator's view of sessions."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click

from allocator.settings import (
    MEMORY_STORE,
    Settings,
    SettingsError,
    env_name,
    load_settings,
    unknown_variables,
)

T = TypeVar("T")
USAGE_ERROR = 2


def fail(message: str) -> NoReturn:
    click.echo(f"sd-allocator: error: {message}", err=True)
    sys.exit(USAGE_ERROR)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc))


def _setting_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One `--kebab-case` flag per setting, e.g. SDA_IDLE_TIMEOUT ↔ --idle-timeout."""
    for name, info in reversed(Settings.model_fields.items()):
        default = info.description or repr(info.default)  # a description says how it scales
        shown = "" if info.default_factory else f", default {default}"
        command = click.option(
            "--" + name.replace("_", "-"),
            name,
            metavar="VALUE",
            default=None,
            help=f"{env_name(name)}{shown}",
        )(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Give every person their own Stable Diffusion WebUI behind one proxy."""


@main.command()
@_setting_options
def serve(**flags: str | None) -> None:
    """Run the proxy. With no settings: the whole product on this machine."""
    for name, value in flags.items():
        if value is not None:
            os.environ[env_name(name)] = value  # workers read their settings from here
    settings = _settings()
    for variable in unknown_variables():
        click.echo(f"sd-allocator: warning: unknown setting {variable}", err=True)
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = tempfile.mkdtemp(prefix="sda-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    from allocator.backends import BackendUnavailable
    from allocator.identity import IdentityUnavailable
    from allocator.server import serve as run_server

    try:
        _check_available(settings)
    except (BackendUnavailable, IdentityUnavailable) as exc:
        fail(str(exc))
    _announce(settings)
    try:
        run_server(settings)
    except KeyboardInterrupt:  # Ctrl-C: uvicorn already shut down cleanly and re-raised it
        click.echo("sd-allocator: stopped", err=True)


def _check_available(settings: Settings) -> None:
    from allocator.backends import create_backend
    from allocator.identity import create_identity

    create_backend(settings)
    create_identity(settings)


def _announce(settings: Settings) -> None:
    where = f"http://{settings.host}:{settings.port}/"
    store = "memory" if settings.redis_url == MEMORY_STORE else "redis"
    click.echo(
        f"sd-allocator: serving on {where} (backend {settings.backend}, identity "
        f"{settings.identity}, store {store})",
        err=True,
    )
    if settings.identity == "dev":
        click.echo(f"sd-allocator: sign in at {where}_allocator/login", err=True)


@main.group()
def sessions() -> None:
    """Who has which WebUI (reads the store named by SDA_REDIS_URL)."""


def _core_call(action: Callable[[Any], Awaitable[T]]) -> T:
    settings = _settings()
    if settings.redis_url == MEMORY_STORE:
        fail(
            "SDA_REDIS_URL=memory: the sessions live inside the running server. Open "
            f"http://{settings.host}:{settings.port}/_allocator/admin (as one of SDA_ADMINS), or "
            "run the server with SDA_REDIS_URL=redis://… to use this command."
        )
    from allocator.backends import BackendUnavailable
    from allocator.runtime import Core
    from allocator.store import StoreUnavailable
    from allocator.types import BackendError

    async def run() -> T:
        core = Core.build(settings)
        try:
            return await action(core)
        finally:
            await core.close()

    try:
        return asyncio.run(run())
    except StoreUnavailable as exc:
        fail(f"cannot reach the session store: {exc}")
    except (BackendUnavailable, BackendError) as exc:
        fail(str(exc))


def _rows(views: list[Any], now: float) -> list[dict[str, Any]]:
    return [_row(view, now) for view in views]


def _row(view: Any, now: float) -> dict[str, Any]:
    row = {
        "email": view.session.email,
        "server": view.session.server,
        "address": view.session.authority,
        "backend": view.session.backend,
        "idle_seconds": int(now - view.last_activity),
        "busy": view.busy,
        "allocated_at": view.session.allocated_at,
    }
    gpu = view.session.placement.handle.get("gpu")  # local backend with SDA_LOCAL_GPUS
    if gpu is not None:
        row["gpu"] = gpu
    return row


@main.command()
@click.option("--once", is_flag=True, help="One pass, then exit (for a CronJob).")
@click.option("--dry-run", is_flag=True, help="Say what would be reclaimed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="A JSON summary line per pass.")
def cruise(once: bool, dry_run: bool, as_json: bool) -> None:
    """Give back WebUIs idle longer than SDA_IDLE_TIMEOUT, and reconcile orphans.

    Without --once: a pass every SDA_CRUISE_INTERVAL seconds until stopped. Exit code 1 when
    a --once pass could not release something (it is retried next pass).
    """
    settings = _settings()
    from allocator.logs import configure

    configure(settings.log_level, settings.log_format)  # logs go to stderr, summaries to stdout
    if settings.redis_url == MEMORY_STORE:
        fail(
            "SDA_REDIS_URL=memory: the sessions live inside the running server, whose own "
            "cruiser reclaims idle WebUIs (SDA_CRUISER). Point SDA_REDIS_URL at the "
            "allocator's Redis to run passes from here."
        )
    from cruiser.run import run_passes

    def report(summary: Any) -> None:
        click.echo(json.dumps(summary.as_json()) if as_json else summary.line())

    try:
        ok = run_passes(settings, once, dry_run, report)
    except KeyboardInterrupt:
        ok = True
    except Exception as exc:  # BackendUnavailable, an unreachable store at start
        fail(str(exc))
    sys.exit(0 if ok else 1)


@sessions.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def list_sessions(as_json: bool) -> None:
    """Every session, longest idle first."""
    now = time.time()
    rows = _rows(_core_call(lambda core: core.store.all_views(now)), now)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no sessions")
        return
    click.echo(f"{'EMAIL':40} {'SERVER':40} {'IDLE':>7} BUSY")
    for row in rows:
        busy = "yes" if row["busy"] else "no"
        click.echo(f"{row['email']:40} {row['server']:40} {row['idle_seconds']:>6}s {busy}")


@sessions.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def show_session(email: str, as_json: bool) -> None:
    """One person's session and its recent events (allocated, kept, given back and why)."""
    from allocator.usage_report import event_out

    now = time.time()
    normal = email.strip().lower()

    async def look(core: Any) -> tuple[Any, list[Any]]:
        return await core.store.view(normal, now), await core.allocations.events.recent(normal)

    view, events = _core_call(look)
    if view is None and not events:
        fail(f"{email} has no session and no recorded events")
    row: dict[str, Any] = {"email": normal, "session": None}
    if view is not None:
        row = _rows([view], now)[0]
    shown = [event_out(event) for event in events]
    if as_json:
        row["events"] = [event.model_dump() for event in shown]
        click.echo(json.dumps(row, indent=2))
        return
    for key, value in row.items():
        click.echo(f"{key:13} {'none' if value is None else value}")
    click.echo("events (newest first):" if shown else "events: none recorded")
    for event in shown:
        click.echo(f"  {event.message}")


@sessions.command("release")
@click.argument("email")
def release_session(email: str) -> None:
    """Give a person's WebUI back now (their saved images stay)."""
    released = _core_call(lambda core: core.allocations.release(email.strip().lower(), by="admin"))
    if not released:
        fail(f"{email} has no session")
    click.echo(f"released the WebUI of {email}")


@main.group()
def queue() -> None:
    """Who waits for a GPU, next first (reads the store named by SDA_REDIS_URL)."""


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def list_queue(as_json: bool) -> None:
    """Everyone waiting for a GPU, next first."""
    now = time.time()
    waiting = _core_call(lambda core: core.queue.waiting())
    rows = [
        {
            "position": entry.position,
            "email": entry.email,
            "waited_seconds": int(max(0.0, now - entry.joined)),
            "silent_seconds": int(max(0.0, now - entry.seen)),
        }
        for entry in waiting
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("nobody is waiting for a GPU")
        return
    click.echo(f"{'#':>3} {'EMAIL':40} {'WAITING':>8} {'LAST ASKED':>11}")
    for row in rows:
        click.echo(
            f"{row['position']:>3} {row['email']:40} {row['waited_seconds']:>7}s "
            f"{row['silent_seconds']:>9}s ago"
        )


@queue.command("remove")
@click.argument("email")
def remove_from_queue(email: str) -> None:
    """Take a person out of the queue (the ones behind move up)."""
    normal = email.strip().lower()
    if not _core_call(lambda core: core.allocations.leave_queue(normal, "removed")):
        fail(f"{email} is not in the queue")
    click.echo(f"took {email} out of the queue")


@main.command()
@click.option("--since", metavar="YYYY-MM-DD", help="First UTC day (default: a week ago).")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
@click.option("--csv", "as_csv", is_flag=True, help="One row per person per day.")
def usage(since: str | None, as_json: bool, as_csv: bool) -> None:
    """Allocated and busy (generating) GPU time per person per UTC day."""
    from allocator.usage_report import ReportError, hours, parse_since, usage_report
    from allocator.usage_report import as_csv as csv_text

    if as_json and as_csv:
        fail("choose one of --json and --csv")
    now = time.time()
    try:
        first = parse_since(since, now, _settings().usage_days)
    except ReportError as exc:
        fail(str(exc))
    report = _core_call(lambda core: usage_report(core.allocations.usage, first, now))
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return
    if as_csv:
        click.echo(csv_text(report), nl=False)
        return
    click.echo(f"GPU time from {report.since} to {report.until} (UTC days)")
    if not report.people:
        click.echo("no GPU time recorded")
        return
    click.echo(f"{'EMAIL':40} {'ALLOCATED':>10} {'GENERATING':>11}")
    for person in report.people:
        click.echo(
            f"{person.email:40} {hours(person.allocated_seconds):>10} "
            f"{hours(person.busy_seconds):>11}"
        )
    total = f"{hours(report.allocated_seconds):>10} {hours(report.busy_seconds):>11}"
    click.echo(f"{'total':40} {total}")
