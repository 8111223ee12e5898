"""Label selectors: the string form of ``?labelSelector=`` and the LabelSelector object.

Modelled on k8s.io/apimachinery ``pkg/labels/selector.go`` (lexer, parser, NewRequirement and
its messages, Requirement.Matches) and ``pkg/apis/meta/v1/helpers.go`` LabelSelectorAsSelector
(matchLabels become ``=``; In, NotIn, Exists, DoesNotExist; an empty selector matches
everything). Parse-error wording follows the parser's shape but is not byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fake_agones.validation import FieldError, invalid, label_value_errors, qualified_name_errors

_SPECIAL = "=!(),<>"
_TWO_CHAR = ("!=", "==")
_SET_OPS = ("in", "notin")


class SelectorError(ValueError):
    """A selector kube-apiserver would refuse."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.operator in ("=", "==", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        return present and _compare(self.operator, value, self.values[0])


def _compare(operator: str, value: str, bound: str) -> bool:
    try:
        number = int(value)
    except ValueError:
        return False
    return number > int(bound) if operator == "gt" else number < int(bound)


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)


EVERYTHING = Selector()


def requirement(key: str, operator: str, values: list[str]) -> Requirement:
    """NewRequirement: validates the key, the number of values and each value."""
    errors: list[FieldError] = []
    key_problems = qualified_name_errors(key)
    if key_problems:
        errors.append(invalid("key", key, "; ".join(key_problems)))
    if operator in _SET_OPS and not values:
        errors.append(
            invalid("values", values, "for 'in', 'notin' operators, values set can't be empty")
        )
    if operator in ("=", "==", "!=") and len(values) != 1:
        errors.append(
            invalid("values", values, "exact-match compatibility requires one single value")
        )
    if operator in ("exists", "!") and values:
        errors.append(
            invalid("values", values, "values set must be empty for exists and does not exist")
        )
    if operator in ("gt", "lt"):
        errors.extend(_integer_errors(values))
    for index, value in enumerate(values):
        problems = label_value_errors(value)
        if problems:
            errors.append(invalid(f"values[{index}][{key}]", value, "; ".join(problems)))
    if errors:
        messages = [error.error() for error in errors]
        raise SelectorError(messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]")
    return Requirement(key, operator, tuple(sorted(set(values))))


def _integer_errors(values: list[str]) -> list[FieldError]:
    if len(values) != 1:
        return [
            invalid("values", values, "for 'Gt', 'Lt' operators, exactly one value is required")
        ]
    try:
        int(values[0])
    except ValueError:
        return [
            invalid(
                "values[0]", values[0], "for 'Gt', 'Lt' operators, the value must be an integer"
            )
        ]
    return []


_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def from_label_selector(selector: dict[str, Any]) -> Selector:
    """LabelSelectorAsSelector over a decoded metav1.LabelSelector."""
    match_labels: dict[str, str] = selector.get("matchLabels") or {}
    expressions: list[dict[str, Any]] = selector.get("matchExpressions") or []
    requirements = [requirement(key, "=", [value]) for key, value in sorted(match_labels.items())]
    for expression in expressions:
        operator = expression.get("operator", "")
        if operator not in _OPERATORS:
            raise SelectorError(f'"{operator}" is not a valid label selector operator')
        values = list(expression.get("values") or [])
        requirements.append(requirement(expression.get("key", ""), _OPERATORS[operator], values))
    return Selector(tuple(requirements))


def parse(text: str) -> Selector:
    """labels.Parse: the string form, requirements joined by commas (AND)."""
    parser = _Parser(_tokens(text))
    return Selector(tuple(parser.selector()))


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif text[index : index + 2] in _TWO_CHAR:
            tokens.append(text[index : index + 2])
            index += 2
        elif char in _SPECIAL:
            tokens.append(char)
            index += 1
        else:
            end = index
            while end < len(text) and not text[end].isspace() and text[end] not in _SPECIAL:
                end += 1
            tokens.append(text[index:end])
            index = end
    return tokens


def _is_identifier(token: str | None) -> bool:
    return token is not None and token[0] not in _SPECIAL


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.position += 1
        return token

    def selector(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        if self.peek() is None:
            return requirements
        while True:
            token = self.peek()
            if not (_is_identifier(token) or token == "!"):
                raise SelectorError(f"found '{token}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self.requirement())
            except SelectorError as error:
                raise SelectorError(f"unable to parse requirement: {error}") from None
            token = self.take()
            if token is None:
                return requirements
            if token != ",":
                raise SelectorError(f"found '{token}', expected: ',' or 'end of string'")
            if not (_is_identifier(self.peek()) or self.peek() == "!"):
                raise SelectorError(f"found '{self.peek()}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        negated = self.peek() == "!"
        if negated:
            self.take()
        key = self.take()
        if not _is_identifier(key):
            raise SelectorError(f"found '{key}', expected: identifier")
        assert key is not None
        if negated or self.peek() in (None, ","):
            return requirement(key, "!" if negated else "exists", [])
        operator = self.operator()
        values = self.set_values() if operator in _SET_OPS else [self.single_value()]
        return requirement(key, operator, values)

    def operator(self) -> str:
        token = self.take()
        names = {
            "=": "=",
            "==": "==",
            "!=": "!=",
            ">": "gt",
            "<": "lt",
            "in": "in",
            "notin": "notin",
        }
        if token not in names:
            raise SelectorError(f"found '{token}', expected: in, notin, =, ==, !=, gt, lt")
        return names[token]

    def single_value(self) -> str:
        token = self.peek()
        if token in (None, ","):
            return ""
        if not _is_identifier(token):
            raise SelectorError(f"found '{token}', expected: identifier")
        self.take()
        assert token is not None
        return token

    def set_values(self) -> list[str]:
        opening = self.take()
        if opening != "(":
            raise SelectorError(f"found '{opening}', expected: '('")
        values: list[str] = []
        while True:
            token = self.take()
            if token == ")":
                return values
            if token == ",":
                values.append("")
                continue
            if not _is_identifier(token):
                raise SelectorError(f"found '{token}', expected: ',', ')' or identifier")
            assert token is not None
            values.append(token)
            following = self.take()
            if following == ")":
                return values
            if following != ",":
                raise SelectorError(f"found '{following}', expected: ',' or ')'")
