"""The Secret holding your own OAuth client for IAP (`iap.oauth_secret`), checked before the
chart names it in its BackendConfig.

The deploy cannot make the client: the IAP OAuth Admin API (`gcloud iap oauth-clients`,
`oauth-brands`) was shut down in March 2026, so a person creates it in the Console and puts it
into the Secret. ingress-gce reads the keys `client_id` and `client_secret`; a missing Secret
or key would only show up as a load balancer that never turns IAP on.
"""

from __future__ import annotations

from deploy.context import Context
from deploy.names import NAMESPACE
from deploy.types import NOT_SHOWN, StepFailed

KEYS = ("client_id", "client_secret")
REDIRECT_URI = "https://iap.googleapis.com/v1/oauth/clientIds/CLIENT_ID:handleRedirect"


def check(ctx: Context, name: str) -> None:
    """Stop unless Secret `name` exists in the chart's namespace with both keys filled."""
    planned = {"data": dict.fromkeys(KEYS, NOT_SHOWN)}
    found = ctx.query_json(
        ctx.kubectl("get", "secret", name, f"--namespace={NAMESPACE}", "--output=json"), planned
    )
    if found is None:
        raise StepFailed(
            f"Secret {name} (iap.oauth_secret) is not in namespace {NAMESPACE}: IAP needs your "
            f"own OAuth client there.\n{_how(ctx, name)}"
        )
    missing = [key for key in KEYS if not (found.get("data") or {}).get(key)]
    if missing:
        raise StepFailed(
            f"Secret {name} (iap.oauth_secret) in namespace {NAMESPACE} has no "
            f"{' and no '.join(missing)}. Delete it (kubectl delete secret {name} "
            f"-n {NAMESPACE}) and make it again.\n{_how(ctx, name)}"
        )
    ctx.say(f"secret {name}: holds an OAuth client for IAP")


def _how(ctx: Context, name: str) -> str:
    return (
        "1. In the Console, APIs & Services → Credentials: an OAuth client ID of type Web "
        f"application, with the authorized redirect URI\n     {REDIRECT_URI}\n"
        "   (your client's ID in place of CLIENT_ID).\n"
        f"2. kubectl --context={ctx.facts['kube_context']} create secret generic {name} "
        f"-n {NAMESPACE} --from-literal=client_id=... --from-literal=client_secret=...\n"
        "3. Run the deploy again."
    )
