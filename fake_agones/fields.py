"""Field selectors on GameServers: ``metadata.name``, ``metadata.namespace`` and the CRD's
``selectableFields`` (``status.state``, ``status.nodeName``; Agones chart >= 1.58).

Parsing follows k8s.io/apimachinery ``pkg/fields/selector.go`` (terms split on unescaped
commas; ``!=``, ``==``, ``=``; "invalid selector: '%s'; can't understand '%s'"); the field
check follows apiextensions-apiserver's crConverter.ConvertFieldLabel ("field label not
supported: %s"). Both reach the client as 400 BadRequest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUPPORTED = ("metadata.name", "metadata.namespace", "status.state", "status.nodeName")
_OPERATORS = ("!=", "==", "=")


class FieldSelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Term:
    field: str
    value: str
    equal: bool

    def matches(self, obj: dict[str, Any]) -> bool:
        return (field_value(obj, self.field) == self.value) == self.equal


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[Term, ...] = ()

    def matches(self, obj: dict[str, Any]) -> bool:
        return all(term.matches(obj) for term in self.terms)


def field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, str) else ""


def parse(text: str) -> FieldSelector:
    terms = []
    for part in sorted(_split_terms(text)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise FieldSelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, operator, value = split
        if field not in SUPPORTED:
            raise FieldSelectorError(f"field label not supported: {field}")
        terms.append(Term(field, _unescape(value), operator != "!="))
    return FieldSelector(tuple(terms))


def _split_terms(text: str) -> list[str]:
    terms, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            current += char
            escaped = True
        elif char == ",":
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for index in range(len(term)):
        for operator in _OPERATORS:
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


def _unescape(value: str) -> str:
    out, escaped = "", False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise FieldSelectorError(
                    f"invalid field selector: invalid escape sequence: \\{char}"
                )
            out += char
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            if char in ",=":
                raise FieldSelectorError(f"invalid field selector: unescaped character: {char}")
            out += char
    return out
