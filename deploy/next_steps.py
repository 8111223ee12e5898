"""What is left for a person to do after a deploy: things no API can (or should) do alone."""

from __future__ import annotations

from deploy.context import Context
from deploy.names import NAMESPACE, RELEASE
from deploy.steps.audience import SERVICE_NAME

ROLE = "roles/iap.httpsResourceAccessor"


def show(ctx: Context) -> None:
    config = ctx.config
    context = f"--context={ctx.facts['kube_context']}"
    lines = [
        "Next steps, by hand (once; a rerun of the deploy does not undo them):",
        *_consent_screen(ctx),
        "2. DNS: at your DNS provider, an A record",
        f"     {config.domain}  ->  {ctx.facts.get('static_ip') or '<static-ip>'}",
        "3. The TLS certificate turns Active up to about 60 minutes after DNS points there:",
        f"     kubectl {context} get managedcertificate -n {NAMESPACE}",
        f"4. Let people in: grant {ROLE} (IAP-secured Web App User) on the project,",
        "   to a group, a domain or people:",
        *_grant(ctx),
        *_audience(ctx),
        "Check it: "
        f"helm test {RELEASE} -n {NAMESPACE} --kube-context={ctx.facts['kube_context']}"
        f", then open https://{config.domain}",
    ]
    ctx.out("")
    for line in lines:
        ctx.out(line)


def _consent_screen(ctx: Context) -> list[str]:
    """Internal admits only the organization's accounts, which is all Google's managed OAuth
    client admits anyway; people from outside (or a project without an organization) need
    your own client and an External screen."""
    iap = ctx.config.iap
    if iap.external_users:
        kind = "External"
    elif iap.oauth_secret:
        kind = "Internal (External if the project is in no organization)"
    else:
        kind = "Internal"
    url = f"https://console.cloud.google.com/apis/credentials/consent?project={ctx.config.project}"
    return [
        f"1. OAuth consent screen: if the project has none, create one of type {kind}:",
        f"     {url}",
    ]


def _grant(ctx: Context) -> list[str]:
    """On the project, never on the backend service: GKE's Ingress controller names that
    (k8s1-...) and makes a new one, without grants, whenever the Ingress, the Service or the
    cluster is recreated; then everyone gets 403."""
    project = ctx.config.project
    return [
        f"     gcloud projects add-iam-policy-binding {project} "
        f"--member=group:TEAM@EXAMPLE.COM --role={ROLE}",
        "   (or --member=domain:EXAMPLE.COM, or --member=user:EMAIL; this admits them to every",
        "   IAP-protected app of the project. Not on the k8s1-... backend service: GKE makes a",
        "   new one, without the grant, whenever the Ingress or the cluster is recreated.)",
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
