"""JSON schemas of the GKE kinds the chart uses, which kubernetes-validate does not know.

Written from the Go types in kubernetes/ingress-gce (pkg/apis/backendconfig/v1/types.go:
BackendConfigSpec, IAPConfig, OAuthClientCredentials, ConnectionDrainingConfig,
HealthCheckConfig), strict: a field those types lack is an error, as the API server would
prune it silently. Only the parts the chart can render are spelt out in full.
"""

from __future__ import annotations

from typing import Any

INT = {"type": "integer"}
STRING = {"type": "string"}


def _strict(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _object(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _strict(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {"type": "object"},
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


BACKEND_CONFIG = _object(
    "cloud.google.com/v1",
    "BackendConfig",
    _strict(
        {
            "iap": _strict(
                {
                    "enabled": {"type": "boolean"},
                    "oauthclientCredentials": _strict(
                        {"secretName": STRING, "clientID": STRING, "clientSecret": STRING},
                        ("secretName",),
                    ),
                },
                ("enabled",),
            ),
            "timeoutSec": INT,
            "connectionDraining": _strict({"drainingTimeoutSec": INT}),
            "healthCheck": _strict(
                {
                    "checkIntervalSec": INT,
                    "timeoutSec": INT,
                    "healthyThreshold": INT,
                    "unhealthyThreshold": INT,
                    "type": {"enum": ["HTTP", "HTTPS", "HTTP2"]},
                    "port": INT,
                    "requestPath": STRING,
                }
            ),
            "cdn": {"type": "object"},
            "securityPolicy": _strict({"name": STRING}, ("name",)),
            "sessionAffinity": {"type": "object"},
            "customRequestHeaders": _strict({"headers": {"type": "array", "items": STRING}}),
            "logging": {"type": "object"},
        }
    ),
)

MANAGED_CERTIFICATE = _object(
    "networking.gke.io/v1",
    "ManagedCertificate",
    _strict(
        {"domains": {"type": "array", "items": STRING, "minItems": 1, "maxItems": 100}},
        ("domains",),
    ),
)

FRONTEND_CONFIG = _object(
    "networking.gke.io/v1beta1",
    "FrontendConfig",
    _strict(
        {
            "redirectToHttps": _strict(
                {
                    "enabled": {"type": "boolean"},
                    "responseCodeName": {
                        "enum": [
                            "MOVED_PERMANENTLY_DEFAULT",
                            "FOUND",
                            "SEE_OTHER",
                            "TEMPORARY_REDIRECT",
                            "PERMANENT_REDIRECT",
                        ]
                    },
                }
            ),
            "sslPolicy": STRING,
        }
    ),
)

SCHEMAS = {
    "BackendConfig": BACKEND_CONFIG,
    "ManagedCertificate": MANAGED_CERTIFICATE,
    "FrontendConfig": FRONTEND_CONFIG,
}
