"""List and watch query parameters, read the way kube-apiserver reads them.

Booleans parse as Go's strconv.ParseBool; a bad label or field selector, boolean or integer is
a 400 BadRequest (the handlers' ParameterCodec errors); an unparsable resourceVersion is the
storage versioner's InvalidError (k8s.io/apiserver ``pkg/storage/api_object_versioner.go``),
answered here as 422 (the exact code on a real server is unverified).
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

from fake_agones import fields, labels
from fake_agones.errors import bad_request, invalid
from fake_agones.validation import invalid as invalid_field

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class ListQuery:
    namespace: str | None
    labels: labels.Selector
    fields: fields.FieldSelector
    resource_version: int | None
    watch: bool
    bookmarks: bool
    timeout: float
    limit: int
    continue_after: str | None

    def matches(self, obj: dict[str, Any]) -> bool:
        metadata = obj["metadata"]
        if self.namespace is not None and metadata["namespace"] != self.namespace:
            return False
        return self.labels.matches(metadata.get("labels")) and self.fields.matches(obj)


def parse(namespace: str | None, query: MultiMapping[str]) -> ListQuery:
    try:
        label_selector = labels.parse(query.get("labelSelector", ""))
        field_selector = fields.parse(query.get("fieldSelector", ""))
    except ValueError as error:
        raise bad_request(str(error)) from None
    return ListQuery(
        namespace=namespace,
        labels=label_selector,
        fields=field_selector,
        resource_version=_resource_version(query.get("resourceVersion", "")),
        watch=_boolean(query.get("watch")),
        bookmarks=_boolean(query.get("allowWatchBookmarks")),
        timeout=_timeout(query.get("timeoutSeconds")),
        limit=_integer(query.get("limit")) or 0,
        continue_after=_continue(query.get("continue")),
    )


def _boolean(text: str | None) -> bool:
    if text is None or text == "":
        return False
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise bad_request(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _integer(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None


def _timeout(text: str | None) -> float:
    """Seconds; without one the apiserver picks 1800-3600 s (--min-request-timeout)."""
    seconds = _integer(text)
    if seconds is None or seconds <= 0:
        return random.uniform(1800, 3600)
    return float(seconds)


def _resource_version(text: str) -> int | None:
    if text in ("", "0"):
        return None
    if text.isdigit():
        return int(text)
    problem = invalid_field(
        "resourceVersion", text, f'strconv.ParseUint: parsing "{text}": invalid syntax'
    )
    raise invalid("gameservers", "agones.dev", "", [problem])


def continue_token(rv: int, last_key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": last_key + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _continue(token: str | None) -> str | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded))
        start: str = decoded["start"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version "
            "meta.k8s.io/v1)"
        ) from None
    return start.rstrip("\x00")
