"""The GameServerAllocation type: decoded as Go decodes it, encoded as Go encodes it.

Agones decodes the body into its struct (agones ``pkg/apis/allocation/v1/
gameserverallocation.go``) with k8s.io/apimachinery's JSON serializer: unknown fields are
dropped, ``null`` is the zero value, a wrong JSON type fails with Go's UnmarshalTypeError
(wording approximated), apiVersion/kind default to allocation.agones.dev/v1
GameServerAllocation and any other kind fails ("no kind ... is registered"). The answer
echoes the struct: Go field order, ``omitempty`` honoured, struct fields always present
(``required``, ``metadata``, ``multiClusterSetting.policySelector``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

Json = dict[str, Any]
ROOT = "GameServerAllocation"


class DecodeError(ValueError):
    pass


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


T = TypeVar("T")
ReadOne = Callable[["Reader", Json, str], T]


class Reader:
    """Reads one JSON document into typed values, keeping Go's first type error."""

    def __init__(self) -> None:
        self.error: str | None = None

    def fail(self, value: Any, path: str, gotype: str) -> None:
        if self.error is None:
            kind = _json_kind(value)
            if kind == "number" and gotype == "int64":
                kind = f"number {value}"
            self.error = (
                f"json: cannot unmarshal {kind} into Go struct field {ROOT}.{path} of type {gotype}"
            )

    def object(self, value: Any, path: str, gotype: str) -> Json:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(value, path, gotype)
            return {}
        return value

    def string(self, value: Any, path: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(value, path, "string")
            return ""
        return value

    def optional_string(self, value: Any, path: str) -> str | None:
        return None if value is None else self.string(value, path)

    def boolean(self, value: Any, path: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            self.fail(value, path, "bool")
            return False
        return value

    def int64(self, value: Any, path: str) -> int:
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value, path, "int64")
            return 0
        return int(value)

    def optional_int64(self, value: Any, path: str) -> int | None:
        return None if value is None else self.int64(value, path)

    def string_map(self, value: Any, path: str) -> dict[str, str] | None:
        if value is None:
            return None
        items = self.object(value, path, "map[string]string")
        return {key: self.string(item, path) for key, item in items.items()}

    def string_list(self, value: Any, path: str) -> list[str] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(value, path, "[]string")
            return []
        return [self.string(item, path) for item in value]

    def objects(self, value: Any, path: str, gotype: str) -> list[Json] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(value, path, f"[]{gotype}")
            return []
        return [self.object(item, path, gotype) for item in value]

    def entries(self, value: Any, path: str, gotype: str) -> dict[str, Json] | None:
        if value is None:
            return None
        items = self.object(value, path, f"map[string]{gotype}")
        return {key: self.object(item, path, gotype) for key, item in items.items()}

    def listed(self, value: Any, path: str, gotype: str, read: ReadOne[T]) -> list[T] | None:
        """A JSON array of structs, each read by ``read``."""
        items = self.objects(value, path, gotype)
        return None if items is None else [read(self, item, path) for item in items]

    def mapped(self, value: Any, path: str, gotype: str, read: ReadOne[T]) -> dict[str, T] | None:
        """A JSON object of structs by key, each read by ``read``."""
        entries = self.entries(value, path, gotype)
        return None if entries is None else {k: read(self, v, path) for k, v in entries.items()}


def _omit_empty(pairs: list[tuple[str, Any]]) -> Json:
    return {key: value for key, value in pairs if value not in (None, "", {}, [], False, 0)}


@dataclass
class LabelSelector:
    match_labels: dict[str, str] | None = None
    match_expressions: list[Json] | None = None

    @classmethod
    def read(cls, reader: Reader, raw: Json, path: str) -> LabelSelector:
        expressions = raw.get("matchExpressions")
        return cls(
            reader.string_map(raw.get("matchLabels"), f"{path}.matchLabels"),
            reader.listed(
                expressions, f"{path}.matchExpressions", "v1.LabelSelectorRequirement", _requirement
            ),
        )

    def encode(self) -> Json:
        return _omit_empty(
            [("matchLabels", self.match_labels), ("matchExpressions", self.match_expressions)]
        )

    def as_dict(self) -> Json:
        return {"matchLabels": self.match_labels, "matchExpressions": self.match_expressions}


def _requirement(reader: Reader, raw: Json, path: str) -> Json:
    values = reader.string_list(raw.get("values"), f"{path}.values")
    requirement: Json = {
        "key": reader.string(raw.get("key"), f"{path}.key"),
        "operator": reader.string(raw.get("operator"), f"{path}.operator"),
    }
    if values:
        requirement["values"] = values
    return requirement


@dataclass
class Selector:
    labels: LabelSelector = field(default_factory=LabelSelector)
    game_server_state: str | None = None
    counters: dict[str, Json] | None = None
    lists: dict[str, Json] | None = None

    @classmethod
    def read(cls, reader: Reader, raw: Json, path: str) -> Selector:
        return cls(
            LabelSelector.read(reader, raw, path),
            reader.optional_string(raw.get("gameServerState"), f"{path}.gameServerState"),
            reader.mapped(
                raw.get("counters"), f"{path}.counters", "v1.CounterSelector", _counter_selector
            ),
            reader.mapped(raw.get("lists"), f"{path}.lists", "v1.ListSelector", _list_selector),
        )

    def apply_defaults(self) -> None:
        if self.game_server_state is None:
            self.game_server_state = "Ready"
        self.counters = self.counters if self.counters is not None else {}
        self.lists = self.lists if self.lists is not None else {}

    def encode(self) -> Json:
        encoded = self.labels.encode()
        encoded.update(
            _omit_empty(
                [
                    ("gameServerState", self.game_server_state),
                    ("counters", self.counters),
                    ("lists", self.lists),
                ]
            )
        )
        return encoded


def _counter_selector(reader: Reader, raw: Json, path: str) -> Json:
    names = ("minCount", "maxCount", "minAvailable", "maxAvailable")
    return {name: reader.int64(raw.get(name), f"{path}.{name}") for name in names}


def _list_selector(reader: Reader, raw: Json, path: str) -> Json:
    return {
        "containsValue": reader.string(raw.get("containsValue"), f"{path}.containsValue"),
        "minAvailable": reader.int64(raw.get("minAvailable"), f"{path}.minAvailable"),
        "maxAvailable": reader.int64(raw.get("maxAvailable"), f"{path}.maxAvailable"),
    }


def _priority(reader: Reader, raw: Json, path: str) -> Json:
    return {
        name: reader.string(raw.get(name), f"{path}.{name}") for name in ("type", "key", "order")
    }


def _counter_action(reader: Reader, raw: Json, path: str) -> Json:
    return _omit_none(
        {
            "action": reader.optional_string(raw.get("action"), f"{path}.action"),
            "amount": reader.optional_int64(raw.get("amount"), f"{path}.amount"),
            "capacity": reader.optional_int64(raw.get("capacity"), f"{path}.capacity"),
        }
    )


def _list_action(reader: Reader, raw: Json, path: str) -> Json:
    action = {
        "addValues": reader.string_list(raw.get("addValues"), f"{path}.addValues"),
        "deleteValues": reader.string_list(raw.get("deleteValues"), f"{path}.deleteValues"),
        "capacity": reader.optional_int64(raw.get("capacity"), f"{path}.capacity"),
    }
    return {k: v for k, v in action.items() if v not in (None, [])}


def _omit_none(values: Json) -> Json:
    return {key: value for key, value in values.items() if value is not None}


@dataclass
class Spec:
    multi_cluster_enabled: bool = False
    policy_selector: LabelSelector = field(default_factory=LabelSelector)
    required: Selector = field(default_factory=Selector)
    preferred: list[Selector] | None = None
    priorities: list[Json] | None = None
    selectors: list[Selector] | None = None
    scheduling: str = ""
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    counters: dict[str, Json] | None = None
    lists: dict[str, Json] | None = None

    @classmethod
    def read(cls, reader: Reader, raw: Json) -> Spec:
        multi_path = "spec.multiClusterSetting"
        multi = reader.object(raw.get("multiClusterSetting"), multi_path, "v1.MultiClusterSetting")
        policy_path = f"{multi_path}.policySelector"
        policy = reader.object(multi.get("policySelector"), policy_path, "v1.LabelSelector")
        required = reader.object(raw.get("required"), "spec.required", "v1.GameServerSelector")
        patch = reader.object(raw.get("metadata"), "spec.metadata", "v1.MetaPatch")
        selector = "v1.GameServerSelector"
        return cls(
            multi_cluster_enabled=reader.boolean(multi.get("enabled"), f"{multi_path}.enabled"),
            policy_selector=LabelSelector.read(reader, policy, policy_path),
            required=Selector.read(reader, required, "spec.required"),
            preferred=reader.listed(
                raw.get("preferred"), "spec.preferred", selector, Selector.read
            ),
            priorities=reader.listed(
                raw.get("priorities"), "spec.priorities", "v1.Priority", _priority
            ),
            selectors=reader.listed(
                raw.get("selectors"), "spec.selectors", selector, Selector.read
            ),
            scheduling=reader.string(raw.get("scheduling"), "spec.scheduling"),
            labels=reader.string_map(patch.get("labels"), "spec.metadata.labels"),
            annotations=reader.string_map(patch.get("annotations"), "spec.metadata.annotations"),
            counters=reader.mapped(
                raw.get("counters"), "spec.counters", "v1.CounterAction", _counter_action
            ),
            lists=reader.mapped(raw.get("lists"), "spec.lists", "v1.ListAction", _list_action),
        )

    def encode(self) -> Json:
        multi: Json = {"enabled": True} if self.multi_cluster_enabled else {}
        multi["policySelector"] = self.policy_selector.encode()
        encoded: Json = {"multiClusterSetting": multi, "required": self.required.encode()}
        if self.preferred:
            encoded["preferred"] = [selector.encode() for selector in self.preferred]
        if self.priorities:
            encoded["priorities"] = self.priorities
        if self.selectors:
            encoded["selectors"] = [selector.encode() for selector in self.selectors]
        encoded["scheduling"] = self.scheduling
        encoded["metadata"] = _omit_empty(
            [("labels", self.labels), ("annotations", self.annotations)]
        )
        encoded.update(_omit_empty([("counters", self.counters), ("lists", self.lists)]))
        return encoded


@dataclass
class GameServerAllocation:
    api_version: str
    metadata: Json
    spec: Spec
    status: Json | None = None

    def encode(self) -> Json:
        encoded: Json = {"kind": ROOT, "apiVersion": self.api_version, "metadata": self.metadata}
        encoded["spec"] = self.spec.encode()
        encoded["status"] = self.status or {"state": "", "gameServerName": "", "source": ""}
        return encoded


_OBJECT_META_STRINGS = ("name", "generateName")


def read(document: Any) -> GameServerAllocation:
    """Decode a parsed JSON document; raise DecodeError with Go's message."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise DecodeError(
            "couldn't get version/kind; json parse error: json: cannot unmarshal "
            + _json_kind(document)
            + " into Go value of type struct { "
            'APIVersion string "json:\\"apiVersion,omitempty\\""; '
            'Kind string "json:\\"kind,omitempty\\"" }'
        )
    api_version = _check_kind(document)
    reader = Reader()
    meta = reader.object(document.get("metadata"), "metadata", "v1.ObjectMeta")
    metadata: Json = {}
    for name in _OBJECT_META_STRINGS:
        value = reader.string(meta.get(name), f"metadata.{name}")
        if value:
            metadata[name] = value
    for name in ("labels", "annotations"):
        value_map = reader.string_map(meta.get(name), f"metadata.{name}")
        if value_map:
            metadata[name] = value_map
    spec = Spec.read(
        reader, reader.object(document.get("spec"), "spec", "v1.GameServerAllocationSpec")
    )
    if reader.error is not None:
        raise DecodeError(reader.error)
    return GameServerAllocation(api_version, metadata, spec)


def _check_kind(document: Json) -> str:
    """gvkWithDefaults, then the scheme lookup; returns the apiVersion the struct keeps."""
    api_version = document.get("apiVersion") or ""
    kind = document.get("kind") or ""
    for field_name, value in (("apiVersion", api_version), ("kind", kind)):
        if not isinstance(value, str):
            raise DecodeError(
                "couldn't get version/kind; json parse error: json: cannot unmarshal "
                f"{_json_kind(value)} into Go struct field .{field_name} of type string"
            )
    group, _, version = api_version.rpartition("/")
    if not api_version:
        group, version = "allocation.agones.dev", "v1"
    if (group, version, kind or ROOT) != ("allocation.agones.dev", "v1", ROOT):
        version_text = f"{group}/{version}" if group else version
        raise DecodeError(
            f'no kind "{kind or ROOT}" is registered for version "{version_text}" in scheme '
            '"pkg/runtime/scheme.go:100"'
        )
    # The struct starts as {Kind, APIVersion: "v1"}; the body overwrites what it carries.
    return api_version or "v1"
