"""A kubeconfig for the fake: plain http server, bearer token, namespace in the context.

Written as JSON, which is YAML, so ``kubernetes.config.load_kube_config`` reads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CONTEXT = "fake-agones"


def kubeconfig(url: str, token: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write(path: Path, config: dict[str, Any]) -> Path:
    """Atomically, readable only by its owner (it holds the token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(config, file, indent=2)
    partial.replace(path)
    return path
