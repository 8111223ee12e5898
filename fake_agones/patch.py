"""PATCH of a GameServer with a JSON merge patch (RFC 7386), checked as kube-apiserver checks
a custom resource update: the name and namespace must stay, a ``metadata.resourceVersion`` in
the patch is a precondition (409 "the object has been modified"), system fields keep their
values, labels and annotations must be valid and ``status.state`` must be in the CRD's enum
(422 Invalid). Other patch types: strategic merge is refused with kube's own 415 for custom
resources; JSON patch and apply patch are real on a cluster but not modelled here (415).
"""

from __future__ import annotations

import copy
from typing import Any

from fake_agones.errors import bad_request, conflict, invalid, unsupported_media_type
from fake_agones.validation import (
    FieldError,
    not_supported,
    validate_annotations,
    validate_labels,
)

Json = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STATES = [
    "PortAllocation",
    "Creating",
    "Starting",
    "Scheduled",
    "RequestReady",
    "Ready",
    "Shutdown",
    "Error",
    "Unhealthy",
    "Reserved",
    "Allocated",
]
_SYSTEM_FIELDS = (
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def check_media_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == MERGE_PATCH:
        return
    if media in ("application/json-patch+json", "application/apply-patch+yaml"):
        raise unsupported_media_type(
            f"fake_agones does not model {media} patches; use {MERGE_PATCH}"
        )
    raise unsupported_media_type(
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


def merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def apply(current: Json, patch: Any) -> Json:
    """The patched object, or the ApiError kube-apiserver would answer."""
    if not isinstance(patch, dict):
        raise bad_request(
            "json: cannot unmarshal array into Go value of type map[string]interface {}"
        )
    metadata = current["metadata"]
    name, namespace = metadata["name"], metadata["namespace"]
    asked: Json = patch["metadata"] if isinstance(patch.get("metadata"), dict) else {}
    if "resourceVersion" in asked and asked["resourceVersion"] != metadata["resourceVersion"]:
        raise conflict(
            name,
            "the object has been modified; please apply your changes to the latest version "
            "and try again",
        )
    if "uid" in asked and asked["uid"] != metadata["uid"]:
        raise conflict(
            name,
            f"Precondition failed: UID in precondition: {asked['uid']}, "
            f"UID in object meta: {metadata['uid']}",
        )
    merged: Json = merge(current, patch)
    merged_meta = merged.setdefault("metadata", {})
    if merged_meta.get("name") != name:
        raise bad_request(
            f"the name of the object ({merged_meta.get('name')}) does not match the name on "
            f"the URL ({name})"
        )
    if merged_meta.get("namespace") != namespace:
        raise bad_request(
            f"the namespace of the object ({merged_meta.get('namespace')}) does not match the "
            f"namespace on the URL ({namespace})"
        )
    for field in _SYSTEM_FIELDS:
        if field in metadata:
            merged_meta[field] = metadata[field]
        else:
            merged_meta.pop(field, None)
    merged["apiVersion"], merged["kind"] = current["apiVersion"], current["kind"]
    errors = _errors(merged)
    if errors:
        raise invalid("GameServer", "agones.dev", name, errors)
    return merged


def _errors(gs: Json) -> list[FieldError]:
    metadata = gs["metadata"]
    errors: list[FieldError] = []
    for field in ("labels", "annotations"):
        values = metadata.get(field) or {}
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise bad_request(
                f"json: cannot unmarshal number into Go struct field ObjectMeta.metadata.{field} "
                "of type string"
            )
    errors.extend(validate_labels(metadata.get("labels") or {}, "metadata.labels"))
    errors.extend(validate_annotations(metadata.get("annotations") or {}, "metadata.annotations"))
    state = (gs.get("status") or {}).get("state")
    if state is not None and state not in STATES:
        errors.append(not_supported("status.state", state, STATES))
    return errors
