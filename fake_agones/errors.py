"""Errors as kube-apiserver and Agones write them.

kube-apiserver answers every failure with a ``metav1.Status`` (k8s.io/apimachinery
``pkg/api/errors``: NewNotFound, NewConflict, NewInvalid, NewBadRequest, NewResourceExpired,
NewMethodNotSupported, NewUnauthorized). The Agones extension server, behind the aggregator,
answers its own failures with Go's ``http.Error``: plain text, ``X-Content-Type-Options:
nosniff``, the message plus a newline (agones ``pkg/util/https/https.go`` ErrorHTTPHandler).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from fake_agones.validation import FieldError

Json = dict[str, Any]


class ApiError(Exception):
    """A failure answered with a metav1.Status."""

    def __init__(self, code: int, reason: str, message: str, details: Json | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Json:
        body: Json = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body

    def response(self) -> web.Response:
        return web.Response(
            status=self.code,
            body=json.dumps(self.status(), separators=(",", ":")).encode(),
            content_type="application/json",
        )


class PlainError(Exception):
    """A failure answered the way Go's http.Error does: text/plain, message and newline."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.Response(
            status=self.code,
            body=(self.message + "\n").encode(),
            headers={
                "Content-Type": "text/plain; charset=utf-8",
                "X-Content-Type-Options": "nosniff",
            },
        )


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(name: str, resource: str = "gameservers", group: str = "agones.dev") -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f"{_qualified(resource, group)} {json.dumps(name)} not found",
        {"name": name, "group": group, "kind": resource},
    )


def no_such_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def conflict(
    name: str, cause: str, resource: str = "gameservers", group: str = "agones.dev"
) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f"Operation cannot be fulfilled on {_qualified(resource, group)} {json.dumps(name)}: "
        f"{cause}",
        {"name": name, "group": group, "kind": resource},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_large_resource_version(wanted: int, current: int) -> ApiError:
    return ApiError(
        504,
        "Timeout",
        f"Too large resource version: {wanted}, current: {current}",
        {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """NewInvalid: the aggregate message, one cause per field error."""
    qualified = f"{kind}.{group}" if group else kind
    messages = [error.error() for error in errors]
    joined = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    details: Json = {}
    if name:
        details["name"] = name
    details["group"] = group
    details["kind"] = kind
    details["causes"] = [error.cause() for error in errors]
    return ApiError(422, "Invalid", f"{qualified} {json.dumps(name)} is invalid: {joined}", details)
