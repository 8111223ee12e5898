"""JSON schemas of the monitoring kinds the chart can render, which kubernetes-validate does
not know.

Written from the CRDs: Managed Prometheus' `monitoring.googleapis.com/v1` PodMonitoring, Rules
and ClusterRules (GoogleCloudPlatform/prometheus-engine, charts/operator/crds/, with the CEL
rules of Rules: exactly one of record and alert, annotations on alerts only), and the
Prometheus Operator's `monitoring.coreos.com/v1` PrometheusRule (prometheus-operator,
example/prometheus-operator-crd-full/monitoring.coreos.com_prometheusrules.yaml). Strict, as
in gke_schemas.py: a field the CRD lacks is an error, as the API server would prune it.
Only the parts the chart can render are spelt out in full.
"""

from __future__ import annotations

from typing import Any

STRING = {"type": "string"}


def _strict(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


STRINGS = {"type": "object", "additionalProperties": STRING}
# The Prometheus Operator's duration; Managed Prometheus parses the same strings.
DURATION = {
    "type": "string",
    "pattern": "^(0|"
    + "".join(f"(([0-9]+){unit})?" for unit in ("y", "w", "d", "h", "m", "s", "ms"))
    + ")$",
}
METADATA = _strict(
    {
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "namespace": STRING,
        "labels": STRINGS,
        "annotations": STRINGS,
    },
    ("name",),
)


def _object(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _strict(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


_RULE_FIELDS = {
    "record": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
    "alert": STRING,
    "expr": STRING,
    "for": DURATION,
    "labels": STRINGS,
    "annotations": STRINGS,
}
GMP_RULE = {
    "oneOf": [
        _strict({k: v for k, v in _RULE_FIELDS.items() if k != "record"}, ("alert", "expr")),
        _strict({k: _RULE_FIELDS[k] for k in ("record", "expr", "labels")}, ("record", "expr")),
    ]
}
GMP_RULES_SPEC = _strict(
    {
        "groups": {
            "type": "array",
            "items": _strict(
                {
                    "name": STRING,
                    "interval": DURATION,
                    "rules": {"type": "array", "minItems": 1, "items": GMP_RULE},
                },
                ("name", "rules"),
            ),
        }
    },
    ("groups",),
)

PROMETHEUS_RULE = _object(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    _strict(
        {
            "groups": {
                "type": "array",
                "items": _strict(
                    {
                        "name": {"type": "string", "minLength": 1},
                        "interval": DURATION,
                        "labels": STRINGS,
                        "limit": {"type": "integer"},
                        "rules": {
                            "type": "array",
                            "items": _strict(
                                {**_RULE_FIELDS, "record": STRING, "keep_firing_for": DURATION},
                                ("expr",),
                            ),
                        },
                    },
                    ("name",),
                ),
            }
        }
    ),
)

_PORT = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "minLength": 1}]}
POD_MONITORING = _object(
    "monitoring.googleapis.com/v1",
    "PodMonitoring",
    _strict(
        {
            "selector": _strict(
                {
                    "matchLabels": STRINGS,
                    "matchExpressions": {"type": "array", "items": {"type": "object"}},
                }
            ),
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "items": _strict(
                    {
                        "port": _PORT,
                        "interval": DURATION,
                        "timeout": DURATION,
                        "path": STRING,
                        "scheme": {"enum": ["http", "https"]},
                        "metricRelabeling": {"type": "array", "items": {"type": "object"}},
                        "params": {"type": "object"},
                    },
                    ("port", "interval"),
                ),
            },
            "targetLabels": {"type": "object"},
            "filterRunning": {"type": "boolean"},
            "limits": {"type": "object"},
        },
        ("selector", "endpoints"),
    ),
)

SCHEMAS = {
    "PrometheusRule": PROMETHEUS_RULE,
    "Rules": _object("monitoring.googleapis.com/v1", "Rules", GMP_RULES_SPEC),
    "ClusterRules": _object("monitoring.googleapis.com/v1", "ClusterRules", GMP_RULES_SPEC),
    "PodMonitoring": POD_MONITORING,
}
