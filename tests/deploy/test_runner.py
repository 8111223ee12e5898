"""Running commands: output captured, "not found" told apart from failure, secrets only on
standard input, a line every so often while something slow runs."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from deploy.config import Config
from deploy.plan import Command, Plan
from deploy.runner import PlanRunner, ReadOnlyRunner, SubprocessRunner
from deploy.steps import NAMES, STEPS, Step, providers
from deploy.types import CommandFailed, NeedsChange, Secret, Stdin
from tests.deploy.conftest import with_changes


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def runner(tmp_path: Path, out: list[str]) -> SubprocessRunner:
    return SubprocessRunner(out.append, tmp_path)


def test_a_query_returns_what_the_command_printed(tmp_path: Path) -> None:
    out: list[str] = []
    assert runner(tmp_path, out).query(python("print('{}')")) == "{}\n"
    assert out == []  # reading is quiet unless verbose


def test_not_found_is_an_answer_not_a_failure(tmp_path: Path) -> None:
    code = "import sys; sys.stderr.write('ERROR: NOT_FOUND: x was not found'); sys.exit(1)"
    assert runner(tmp_path, []).query(python(code)) is None


def test_any_other_failure_names_the_command_and_its_error(tmp_path: Path) -> None:
    code = "import sys; sys.stderr.write('line 1\\nPERMISSION_DENIED: no'); sys.exit(3)"
    with pytest.raises(CommandFailed) as caught:
        runner(tmp_path, []).change(python(code))
    message = str(caught.value)
    assert "failed with exit status 3" in message
    assert message.endswith("line 1\nPERMISSION_DENIED: no")
    assert "-c" in message


def test_standard_input_carries_the_secret_and_the_log_does_not(tmp_path: Path) -> None:
    out: list[str] = []
    secret = Secret("hunter2")
    code = "import sys; print(sys.stdin.read()[::-1])"
    stdin = Stdin(secret.reveal(), "<not shown>")
    assert runner(tmp_path, out).change(python(code), stdin=stdin) == "2retnuh\n"
    assert "hunter2" not in "\n".join(out)
    assert out[0].endswith("(with standard input, not shown)")
    assert str(secret) == "<not shown>" and "hunter2" not in repr(secret)


def test_prompts_are_switched_off(tmp_path: Path) -> None:
    code = "import os; print(os.environ['CLOUDSDK_CORE_DISABLE_PROMPTS'])"
    assert runner(tmp_path, []).query(python(code)) == "1\n"


def test_a_slow_command_shows_it_is_still_running(tmp_path: Path) -> None:
    out: list[str] = []
    shown_twice = tmp_path / "shown-twice"

    def show(line: str) -> None:
        out.append(line)
        if sum("still running" in shown for shown in out) == 2:
            shown_twice.touch()

    # The command runs until the runner has said twice that it still runs, however slow the
    # machine; after a minute without that it gives up, and the count below fails.
    wait = (
        "import pathlib, time\n"
        "deadline = time.monotonic() + 60\n"
        f"while not pathlib.Path({str(shown_twice)!r}).exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
    )
    SubprocessRunner(show, tmp_path, progress_every=0.2).change(python(wait))
    assert sum("still running" in line for line in out) >= 2


def test_a_missing_program_is_named(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match="no-such-tool: not found on PATH"):
        runner(tmp_path, []).change(["no-such-tool", "--version"])


def test_a_plan_records_and_runs_nothing() -> None:
    out: list[str] = []
    plan = Plan(out.append)
    planner = PlanRunner(plan)
    assert planner.query(["gcloud", "x"], planned="{}") == "{}"
    assert planner.change(["kubectl", "create", "-f", "-"], stdin=Stdin("s3cret", "<hidden>")) == ""
    assert plan.actions == [
        Command(("gcloud", "x")),
        Command(("kubectl", "create", "-f", "-"), "<hidden>"),
    ]
    assert "s3cret" not in "\n".join(out)


def test_reading_only_refuses_changes(tmp_path: Path) -> None:
    reader = ReadOnlyRunner(runner(tmp_path, []))
    assert reader.query(python("print(1)")) == "1\n"
    with pytest.raises(NeedsChange):
        reader.change(python("print(1)"))


def names(steps: Sequence[Step]) -> list[str]:
    return [step.name for step in steps]


def test_only_reads_the_steps_that_provide_what_it_needs(config: Config) -> None:
    def chosen(*picked: str) -> list[str]:
        return names(providers([s for s in STEPS if s.name in picked], config))

    assert chosen("chart") == ["images", "cluster", "filestore", "redis"]
    assert chosen("scheduler") == ["cluster", "redis", "function"]
    assert chosen("secret") == ["cluster", "redis"]
    assert chosen("cluster", "secret") == ["redis"]
    assert chosen("apis") == []


def test_every_needed_fact_is_given_by_an_earlier_step(config: Config) -> None:
    for mode in ("function", "cronjob"):
        given: set[str] = set()
        for step in STEPS:
            if not step.applies(with_changes(config, cruiser={"mode": mode})):
                continue
            assert set(step.needs) <= given, step.name
            given |= set(step.gives)
    assert len(set(NAMES)) == len(NAMES)
