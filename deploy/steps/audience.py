"""Finding the IAP audience, `/projects/NUMBER/global/backendServices/ID`, of the backend
service that GKE's Ingress controller creates for the allocator's Service.

ingress-gce writes a JSON description on each backend service it creates, e.g.
`{"kubernetes.io/service-name":"sd-allocator/sd-allocator","kubernetes.io/service-port":"http"}`
(kubernetes/ingress-gce, pkg/utils/description.go and ServicePort.GetDescription: the
Service's namespace/name, and its port as the Ingress names it, by name or number; newer
releases may add `x-features`). gcloud's filter `description~...` matches it (checked with
gcloud 528's own filter compiler).
"""

from __future__ import annotations

import json
from typing import Any

from deploy.context import Context
from deploy.names import NAMESPACE, SERVICE, SERVICE_PORTS
from deploy.wait import poll

SERVICE_NAME = f"{NAMESPACE}/{SERVICE}"
DISCOVERY_TIMEOUT = 600.0


def discover(ctx: Context, *, wait: bool) -> str | None:
    """The audience, or None when the backend service does not exist (yet). With `wait`,
    keeps looking for up to 10 minutes (the Ingress takes a few to appear)."""
    if not wait:
        return _look(ctx, planned=[])
    planned = [_planned_service()]
    what = "the Ingress's backend service (to learn the IAP audience)"
    return poll(ctx, what, lambda: _look(ctx, planned), timeout=DISCOVERY_TIMEOUT, interval=15)


def _look(ctx: Context, planned: list[dict[str, str]]) -> str | None:
    services = ctx.query_json(
        ctx.gcloud(
            "compute",
            "backend-services",
            "list",
            "--global",
            f"--filter=description~{SERVICE_NAME}",
            "--format=json",
        ),
        planned=planned,
    )
    found = pick(services or [])
    if found is None:
        return None
    ctx.facts["backend_service"] = found["name"]
    audience = f"/projects/{_project_number(ctx)}/global/backendServices/{found['id']}"
    ctx.facts["audience"] = audience
    return audience


def pick(services: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The backend service for our Service's port, or the only one naming our Service."""
    ours = [s for s in services if _field(s, "service-name") == SERVICE_NAME]
    on_port = [s for s in ours if _field(s, "service-port") in SERVICE_PORTS]
    if len(on_port) == 1:
        return on_port[0]
    return ours[0] if len(ours) == 1 else None


def _field(service: dict[str, Any], name: str) -> Any:
    """`kubernetes.io/<name>` from ingress-gce's JSON description."""
    try:
        found = json.loads(service.get("description") or "{}")
    except json.JSONDecodeError:
        return None
    return found.get(f"kubernetes.io/{name}") if isinstance(found, dict) else None


def _project_number(ctx: Context) -> str:
    known = ctx.facts.get("project_number")
    if known:
        return known
    project = ctx.read_json(
        ["gcloud", "projects", "describe", ctx.config.project, "--format=json"],
        planned={"projectNumber": "<project-number>"},
    )
    ctx.facts["project_number"] = str(project["projectNumber"])
    return ctx.facts["project_number"]


def _planned_service() -> dict[str, str]:
    description = {"kubernetes.io/service-name": SERVICE_NAME, "kubernetes.io/service-port": "http"}
    return {
        "name": "<backend-service-name>",
        "id": "<backend-service-id>",
        "description": json.dumps(description),
    }
