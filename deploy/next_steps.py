"""What is left for a person to do after a deploy: things no API can (or should) do alone."""

from __future__ import annotations

from deploy.context import Context
from deploy.names import NAMESPACE, RELEASE
from deploy.steps.audience import SERVICE_NAME

ROLE = "roles/iap.httpsResourceAccessor"


def show(ctx: Context) -> None:
    config = ctx.config
    project = config.project
    context = f"--context={ctx.facts['kube_context']}"
    lines = [
        "Next steps, by hand (once; a rerun of the deploy does not undo them):",
        "1. OAuth consent screen: if the project has none, create one of type Internal:",
        f"     https://console.cloud.google.com/apis/credentials/consent?project={project}",
        "2. DNS: at your DNS provider, an A record",
        f"     {config.domain}  ->  {ctx.facts.get('static_ip') or '<static-ip>'}",
        "3. The TLS certificate turns Active up to about 60 minutes after DNS points there:",
        f"     kubectl {context} get managedcertificate -n {NAMESPACE}",
        f"4. Let people in: grant {ROLE} (IAP-secured Web App User), to a group or to users:",
        *_grant(ctx),
        *_audience(ctx),
        "Check it: "
        f"helm test {RELEASE} -n {NAMESPACE} --kube-context={ctx.facts['kube_context']}"
        f", then open https://{config.domain}",
    ]
    ctx.out("")
    for line in lines:
        ctx.out(line)


def _grant(ctx: Context) -> list[str]:
    project = ctx.config.project
    service = ctx.facts.get("backend_service")
    if service:
        return [
            f"     gcloud iap web add-iam-policy-binding --resource-type=backend-services "
            f"--service={service} --member=group:TEAM@EXAMPLE.COM --role={ROLE} "
            f"--project={project}",
            f"   or in the console: https://console.cloud.google.com/security/iap?project={project}",
        ]
    return [
        f"     gcloud projects add-iam-policy-binding {project} "
        f"--member=group:TEAM@EXAMPLE.COM --role={ROLE}",
        "   (for every IAP-protected app in the project; per app: the IAP page of the console)",
    ]


def _audience(ctx: Context) -> list[str]:
    if ctx.config.iap.audience or ctx.facts.get("audience"):
        return []
    project = ctx.config.project
    return [
        "5. The IAP audience was not found (the Ingress had no backend service yet), so the",
        "   allocator cannot start. Once this lists a backend service, put",
        "   iap.audience: /projects/NUMBER/global/backendServices/ID in the config and rerun:",
        f"     gcloud compute backend-services list --global "
        f"--filter=description~{SERVICE_NAME} --format='value(name,id)' --project={project}",
        f"     gcloud projects describe {project} --format='value(projectNumber)'",
    ]
