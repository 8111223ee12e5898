"""The vocabulary every module of the deploy tool shares: secrets, standard input, errors.

This module imports nothing else of the deploy tool.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

NOT_SHOWN = "<not shown>"


class Secret:
    """A value that must never be printed: `str()` and `repr()` hide it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return NOT_SHOWN

    def __repr__(self) -> str:
        return f"Secret({NOT_SHOWN})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Stdin:
    """Text for a command's standard input (how secrets reach a command: never on argv).

    `shown` is what a plan or log prints in its place."""

    text: str
    shown: str


def minutes(seconds: float) -> str:
    """`2m05s`: how long something has taken."""
    whole, rest = divmod(int(seconds), 60)
    return f"{whole}m{rest:02d}s"


class DeployError(Exception):
    """Stops the deploy; the message is written for the person running it."""


class StepFailed(DeployError):
    """A step found something it cannot fix by itself."""


class CommandFailed(DeployError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        tail = "\n".join(stderr.strip().splitlines()[-15:]) or "(no error output)"
        super().__init__(f"`{shlex.join(argv)}` failed with exit status {returncode}:\n{tail}")
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


class NeedsChange(DeployError):
    """A step run only to read its results (for `--only`) would have to change something."""
