"""GameServerAllocation as the Agones extension server (v1.60.0) answers it.

- Decoding (agones ``pkg/gameserverallocations/controller.go`` allocationDeserialization):
  ``mime.ParseMediaType`` on Content-Type, failing with a plain-text 500 "error parsing
  mediatype from a request header: mime: no media type" when there is none; a media type
  client-go's scheme has no serializer for is "Could not find deserializer"; a body that does
  not decode is "error decoding body: ..." - all 500 text/plain through ErrorHTTPHandler.
- Defaults and validation (``pkg/apis/allocation/v1/gameserverallocation.go`` ApplyDefaults,
  Validate): scheduling Packed|Distributed (NotSupported), selectors' gameServerState Ready or
  Allocated, label selectors that convert, counters/lists/priorities rules, metadata labels
  and annotations valid -> 422 Status reason Invalid with one cause per error.
- Converter folds deprecated ``preferred`` + ``required`` into ``selectors``;
  multiClusterSetting.enabled without a policy is a 500 "no multi-cluster allocation policy
  is specified" (allocator.go applyMultiClusterAllocation).
- Matching (find.go, allocation_cache.go): GameServers in the allocation's namespace, Ready or
  Allocated, not being deleted; Packed walks Allocated first, then by name; Distributed walks
  a shuffle; the first selector with a match wins. Applying (applyAllocationToGameServer)
  merges labels and annotations, always sets ``agones.dev/last-allocated`` (RFC3339Nano) and
  state Allocated in one update.
"""

from __future__ import annotations

import importlib
import json
import random
from typing import Any

from fake_agones import gsa as gsa_type
from fake_agones import labels
from fake_agones.errors import PlainError
from fake_agones.gsa import GameServerAllocation, Selector
from fake_agones.objects import LAST_ALLOCATED, state_of, timestamp, timestamp_nano
from fake_agones.validation import (
    FieldError,
    GoSyntax,
    invalid,
    not_supported,
    validate_annotations,
    validate_labels,
)

Json = dict[str, Any]
SERIALIZERS = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_TSPECIALS = set('()<>@,;:\\"/[]?=')
NEGATIVE = "must be greater than or equal to 0"
yaml = importlib.import_module("yaml")  # PyYAML comes with kubernetes; it has no stubs here


# --- decoding -----------------------------------------------------------------------------


def media_type(header: str | None) -> str:
    """Go's mime.ParseMediaType, as far as Agones depends on it."""
    base = (header or "").split(";", 1)[0].strip().lower()
    kind, rest = _token(base)
    problem = None
    if not kind:
        problem = "mime: no media type"
    elif rest and not rest.startswith("/"):
        problem = "mime: expected slash after first token"
    elif rest:
        subtype, rest = _token(rest[1:])
        if not subtype:
            problem = "mime: expected token after slash"
        elif rest:
            problem = "mime: unexpected content after media subtype"
    if problem:
        raise PlainError(500, f"error parsing mediatype from a request header: {problem}")
    return base


def _token(text: str) -> tuple[str, str]:
    end = 0
    while end < len(text) and text[end] not in _TSPECIALS and 0x20 < ord(text[end]) < 0x7F:
        end += 1
    return text[:end], text[end:]


def decode(content_type: str | None, body: bytes) -> GameServerAllocation:
    media = media_type(content_type)
    if media not in SERIALIZERS:
        raise PlainError(500, "Could not find deserializer")
    try:
        return gsa_type.read(_document(media, body))
    except gsa_type.DecodeError as error:
        raise PlainError(500, f"error decoding body: {error}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _document(media: str, body: bytes) -> Any:
    if media == "application/vnd.kubernetes.protobuf":
        if not body.startswith(b"k8s\x00"):
            raise gsa_type.DecodeError(
                "provided data does not appear to be a protobuf message, expected prefix "
                "[107 56 115 0]"
            )
        raise gsa_type.DecodeError(
            "object *v1.GameServerAllocation does not implement the protobuf marshalling "
            "interface and cannot be decoded"
        )
    if media == "application/yaml":
        try:
            return yaml.safe_load(body.decode("utf-8", "replace"))
        except yaml.YAMLError as error:
            first = str(error).splitlines()[0]
            raise gsa_type.DecodeError(f"error converting YAML to JSON: yaml: {first}") from None
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise gsa_type.DecodeError(
            f"couldn't get version/kind; json parse error: {_go_json_error(body, error)}"
        ) from None


def _go_json_error(body: bytes, error: Exception) -> str:
    text = body.decode("utf-8", "replace")
    position = getattr(error, "pos", 0)
    if position >= len(text.rstrip()):
        return "unexpected end of JSON input"
    return f"invalid character '{text[position]}' looking for beginning of value"


def prepare(gsa: GameServerAllocation, namespace: str) -> None:
    """What allocationDeserialization does after decoding: namespace, timestamp, defaults."""
    metadata = {k: v for k, v in gsa.metadata.items() if k in ("name", "generateName")}
    metadata["namespace"] = namespace
    metadata["creationTimestamp"] = timestamp()
    metadata.update({k: v for k, v in gsa.metadata.items() if k in ("labels", "annotations")})
    gsa.metadata = metadata
    spec = gsa.spec
    spec.scheduling = spec.scheduling or "Packed"
    for priority in spec.priorities or []:
        priority["order"] = priority["order"] or "Ascending"
    if spec.selectors:
        for selector in spec.selectors:
            selector.apply_defaults()
    else:
        spec.required.apply_defaults()
        for selector in spec.preferred or []:
            selector.apply_defaults()


# --- validation ---------------------------------------------------------------------------


def validate(gsa: GameServerAllocation) -> list[FieldError]:
    spec = gsa.spec
    errors: list[FieldError] = []
    if spec.scheduling not in ("Packed", "Distributed"):
        errors.append(not_supported("spec.scheduling", spec.scheduling, ["Packed", "Distributed"]))
    errors.extend(_selector_errors(spec.required, "spec.required"))
    for index, selector in enumerate(spec.preferred or []):
        errors.extend(_selector_errors(selector, f"spec.preferred[{index}]"))
    for index, selector in enumerate(spec.selectors or []):
        errors.extend(_selector_errors(selector, f"spec.selectors[{index}]"))
    errors.extend(_priority_errors(spec.priorities or []))
    errors.extend(_counter_action_errors(spec.counters or {}))
    for key, action in sorted((spec.lists or {}).items()):
        if action.get("capacity", 0) < 0:
            errors.append(invalid(f"spec.lists[{key}].capacity", action["capacity"], NEGATIVE))
    errors.extend(validate_labels(spec.labels or {}, "spec.metadata.labels"))
    errors.extend(validate_annotations(spec.annotations or {}, "spec.metadata.annotations"))
    return errors


def _selector_errors(selector: Selector, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    try:
        labels.from_label_selector(selector.labels.as_dict())
    except labels.SelectorError as error:
        errors.append(
            invalid(
                f"{path}.labelSelector",
                GoSyntax(_go_label_selector(selector.labels)),
                f"Error converting label selector: {error}",
            )
        )
    state = selector.game_server_state
    if state is not None and state not in ("Allocated", "Ready"):
        errors.append(
            invalid(
                f"{path}.gameServerState",
                state,
                "GameServerState must be either Allocated or Ready",
            )
        )
    for key, counter in sorted((selector.counters or {}).items()):
        errors.extend(_range_errors(f"{path}.counters[{key}]", counter, "Count"))
        errors.extend(_range_errors(f"{path}.counters[{key}]", counter, "Available"))
    for key, listed in sorted((selector.lists or {}).items()):
        errors.extend(_range_errors(f"{path}.lists[{key}]", listed, "Available"))
    return errors


def _range_errors(path: str, values: Json, suffix: str) -> list[FieldError]:
    low, high = values[f"min{suffix}"], values[f"max{suffix}"]
    errors = [
        invalid(f"{path}.{name}{suffix}", value, NEGATIVE)
        for name, value in (("min", low), ("max", high))
        if value < 0
    ]
    if high < low and high != 0:
        detail = f"max{suffix} must zero or greater than min{suffix} {low}"
        errors.append(invalid(path, high, detail))
    return errors


def _priority_errors(priorities: list[Json]) -> list[FieldError]:
    errors = []
    for index, priority in enumerate(priorities):
        path = f"spec.priorities[{index}]"
        if priority["type"] not in ("Counter", "List"):
            errors.append(invalid(path, priority["type"], 'type must be "Counter" or "List"'))
        if not priority["key"]:
            errors.append(invalid(path, priority["type"], "key must not be nil"))
        if priority["order"] not in ("Ascending", "Descending"):
            errors.append(
                invalid(path, priority["order"], 'order must be "Ascending" or "Descending"')
            )
    return errors


def _counter_action_errors(counters: dict[str, Json]) -> list[FieldError]:
    errors = []
    for key, action in sorted(counters.items()):
        path = f"spec.counters[{key}]"
        for name in ("amount", "capacity"):
            if action.get(name, 0) < 0:
                errors.append(invalid(f"{path}.{name}", action[name], NEGATIVE))
        if "amount" in action and "action" not in action:
            detail = 'action must be "Increment" or "Decrement" if the amount is not nil'
            errors.append(invalid(path, None, detail))
        if "action" in action and "amount" not in action:
            errors.append(invalid(path, None, "amount must not be nil if action is not nil"))
    return errors


def _go_label_selector(selector: gsa_type.LabelSelector) -> str:
    if selector.match_labels is None:
        match_labels = "map[string]string(nil)"
    else:
        pairs = ", ".join(
            f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(selector.match_labels.items())
        )
        match_labels = f"map[string]string{{{pairs}}}"
    if selector.match_expressions is None:
        expressions = "[]v1.LabelSelectorRequirement(nil)"
    else:
        items = ", ".join(_go_requirement(item) for item in selector.match_expressions)
        expressions = f"[]v1.LabelSelectorRequirement{{{items}}}"
    return f"v1.LabelSelector{{MatchLabels:{match_labels}, MatchExpressions:{expressions}}}"


def _go_requirement(requirement: Json) -> str:
    values = requirement.get("values")
    shown = (
        "[]string{" + ", ".join(json.dumps(v) for v in values) + "}" if values else "[]string(nil)"
    )
    return (
        f"v1.LabelSelectorRequirement{{Key:{json.dumps(requirement['key'])}, "
        f"Operator:{json.dumps(requirement['operator'])}, Values:{shown}}}"
    )


def convert(gsa: GameServerAllocation) -> None:
    """Converter: deprecated preferred + required become selectors, when there are none."""
    if not gsa.spec.selectors:
        gsa.spec.selectors = [*(gsa.spec.preferred or []), gsa.spec.required]


# --- allocating ---------------------------------------------------------------------------


def candidates(objects: list[Json], namespace: str, scheduling: str) -> list[Json]:
    pool = [
        gs
        for gs in objects
        if gs["metadata"]["namespace"] == namespace
        and state_of(gs) in ("Ready", "Allocated")
        and not gs["metadata"].get("deletionTimestamp")
    ]
    if scheduling == "Distributed":
        random.shuffle(pool)
    else:
        pool.sort(key=lambda gs: (state_of(gs) != "Allocated", gs["metadata"]["name"]))
    return pool


def choose(gsa: GameServerAllocation, pool: list[Json]) -> Json | None:
    for selector in gsa.spec.selectors or []:
        by_labels = labels.from_label_selector(selector.labels.as_dict())
        for gs in pool:
            if _matches(selector, gs) and by_labels.matches(gs["metadata"].get("labels")):
                return gs
    return None


def _matches(selector: Selector, gs: Json) -> bool:
    if selector.game_server_state is not None and state_of(gs) != selector.game_server_state:
        return False
    status = gs.get("status") or {}
    if selector.counters and not status.get("counters"):
        return False
    return not (selector.lists and not status.get("lists"))


def apply_to(gsa: GameServerAllocation, gs: Json) -> None:
    """applyAllocationToGameServer, on a copy the store then writes as one update."""
    metadata = gs["metadata"]
    if gsa.spec.labels is not None:
        metadata["labels"] = {**(metadata.get("labels") or {}), **gsa.spec.labels}
    annotations = {**(metadata.get("annotations") or {}), **(gsa.spec.annotations or {})}
    annotations[LAST_ALLOCATED] = timestamp_nano()
    metadata["annotations"] = annotations
    gs["status"]["state"] = "Allocated"


def allocated(gsa: GameServerAllocation, gs: Json) -> Json:
    name = gs["metadata"]["name"]
    gsa.metadata = {"name": name, **{k: v for k, v in gsa.metadata.items() if k != "name"}}
    status = gs["status"]
    answer: Json = {"state": "Allocated", "gameServerName": name}
    if status.get("ports"):
        answer["ports"] = [_port(port) for port in status["ports"]]
    if status.get("address"):
        answer["address"] = status["address"]
    if status.get("addresses"):
        answer["addresses"] = [
            {"type": a["type"], "address": a["address"]} for a in status["addresses"]
        ]
    if status.get("nodeName"):
        answer["nodeName"] = status["nodeName"]
    answer["source"] = "local"
    meta = gs["metadata"]
    answer["metadata"] = {k: meta[k] for k in ("labels", "annotations") if meta.get(k)}
    gsa.status = answer
    return gsa.encode()


def _port(port: Json) -> Json:
    return (
        {"name": port["name"], "port": port["port"]} if port.get("name") else {"port": port["port"]}
    )


def not_allocated(gsa: GameServerAllocation, state: str) -> Json:
    gsa.status = {"state": state, "gameServerName": "", "source": ""}
    return gsa.encode()
