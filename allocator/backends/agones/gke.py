"""Reaching a GKE cluster's API from outside it (the cruiser as a Cloud Function).

A Cloud Function has neither in-cluster credentials nor a kubeconfig with an auth plugin. It
gets the cluster's endpoint and CA certificate from the settings (`SDA_KUBE_API_URL`,
`SDA_KUBE_CA_CERT`, which `make deploy` fills in) and a Google access token for its own service
account from the metadata server (google-auth's application default credentials), refreshed
before it expires. GKE maps that account to Kubernetes RBAC like any other user.
"""

from __future__ import annotations

import base64
import tempfile
import threading
from typing import Any

from kubernetes import client

# With userinfo.email, GKE names the service account to RBAC by its email (which the chart's
# RoleBinding binds); without it, by its numeric id (as gke-gcloud-auth-plugin asks for both).
SCOPES = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
]


def google_configuration(api_url: str, ca_cert: str | None) -> client.Configuration:
    """A client configuration that authenticates with Google application default credentials."""
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=SCOPES)
    configuration = client.Configuration()
    configuration.host = api_url.rstrip("/")
    if ca_cert:
        configuration.ssl_ca_cert = _ca_file(ca_cert)
    lock = threading.Lock()

    def refresh(config: Any) -> None:  # called by the client before every request
        with lock:
            if not credentials.valid:
                credentials.refresh(google.auth.transport.requests.Request())
            config.api_key["BearerToken"] = f"Bearer {credentials.token}"

    configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]
    configuration.api_key["BearerToken"] = ""
    return configuration


def _ca_file(ca_cert: str) -> str:
    """The client wants a file: the CA as given (base64 of the PEM, as GKE reports it, or PEM)."""
    text = ca_cert.strip()
    pem = text if text.startswith("-----BEGIN") else base64.b64decode(text).decode()
    with tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False) as handle:
        handle.write(pem)
        return handle.name
