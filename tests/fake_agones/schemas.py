"""The Agones v1.60.0 CRD schemas as JSON Schema, and kube's pruning rule as a check."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

SCHEMAS = Path("/work/shared/schemas/agones-v1.60.0")
ROOT_FIELDS = {"apiVersion", "kind", "metadata"}


@cache
def openapi_schema(crd: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load((SCHEMAS / f"{crd}.agones.dev.yaml").read_text(), Loader=loader)
    schema: dict[str, Any] = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _as_json_schema(node: Any) -> Any:
    """OpenAPI v3 as kube reads it: ``nullable`` admits null, int-or-string admits both."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@cache
def _validator(crd: str) -> Draft7Validator:
    schema = _as_json_schema(copy.deepcopy(openapi_schema(crd)))
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def validation_errors(crd: str, obj: dict[str, Any]) -> list[str]:
    validator = _validator(crd)
    return [f"{list(error.path)}: {error.message}" for error in validator.iter_errors(obj)]


def pruned_fields(crd: str, obj: dict[str, Any]) -> list[str]:
    """Fields a real apiserver would drop because the structural schema does not know them."""
    return _unknown(obj, openapi_schema(crd), "", root=True)


def _unknown(value: Any, schema: dict[str, Any], path: str, root: bool = False) -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, list):
        items = schema.get("items", {})
        return [f for i, item in enumerate(value) for f in _unknown(item, items, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return []
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    found = []
    for key, item in value.items():
        if root and key in ROOT_FIELDS:
            continue
        if properties is not None and key in properties:
            found.extend(_unknown(item, properties[key], f"{path}.{key}"))
        elif isinstance(extra, dict):
            found.extend(_unknown(item, extra, f"{path}.{key}"))
        elif properties is not None:
            found.append(f"{path}.{key}")
    return found
