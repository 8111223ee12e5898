"""A plan: every command and API request a deploy would send, in order, none of them sent."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# A proto-plus request (filestore_v1.CreateInstanceRequest, ...). proto-plus has no type
# information, so mypy sees these classes as Any anyway.
Message = Any

HEADER = (
    "Plan for an empty project: nothing is run or sent. A real run checks each thing first "
    "and skips what already exists. <placeholders> stand for values known only at run time."
)


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    stdin: str | None = None  # as shown: secrets replaced


@dataclass
class Plan:
    out: Callable[[str], None]
    actions: list[Command | Message] = field(default_factory=list)

    def command(self, argv: Sequence[str], stdin: str | None = None) -> None:
        self.actions.append(Command(tuple(argv), stdin))
        self.out(f"  $ {shlex.join(argv)}")
        if stdin is not None:
            self.out("    with standard input:")
            self._indented(stdin)

    def request(self, message: Message) -> None:
        self.actions.append(message)
        self.out(f"  API request {request_name(message)}:")
        self._indented(request_json(message))

    def _indented(self, text: str) -> None:
        for line in text.splitlines():
            self.out(f"      {line}")


def request_name(message: Message) -> str:
    """`filestore_v1.CreateInstanceRequest`."""
    kind = type(message)
    package = re.search(r"\w+_v\d+\w*", kind.__module__)
    return f"{package.group(0)}.{kind.__name__}" if package else kind.__name__


def request_json(message: Message) -> str:
    return str(
        type(message).to_json(
            message, use_integers_for_enums=False, always_print_fields_with_no_presence=False
        )
    )
