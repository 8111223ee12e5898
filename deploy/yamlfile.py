"""YAML in and out. Reading refuses a key given twice (YAML itself keeps the last one, which
hides typos) and reports where a problem is."""

from __future__ import annotations

from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]


class YamlError(Exception):
    """Not YAML, or a key twice; the message names the line and column."""


def load(text: str) -> Any:
    try:
        _refuse_duplicates(yaml.compose(text, Loader=yaml.SafeLoader))
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YamlError(f"{where}{problem}") from None


def dump(data: Any) -> str:
    return str(yaml.safe_dump(data, sort_keys=False))


def _refuse_duplicates(node: Any) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                mark = key.start_mark
                raise YamlError(
                    f"line {mark.line + 1}, column {mark.column + 1}: key {name!r} given twice"
                )
            seen.add(name)
            _refuse_duplicates(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicates(item)
