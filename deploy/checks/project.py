"""The project: gcloud's account, the project's organization (which decides IAP's OAuth
client), billing, and which of the APIs the deploy uses are still off."""

from __future__ import annotations

from typing import Any

from deploy.checks import Finding, note, ok, stop
from deploy.context import Context
from deploy.steps import apis
from deploy.steps.oauth_secret import REDIRECT_URI

CONSOLE = "https://console.cloud.google.com"
PARENTS = {"organization": "in an organization", "folder": "in a folder"}  # parent.type


def signed_in(ctx: Context) -> list[Finding]:
    accounts = ctx.query_json(["gcloud", "auth", "list", "--format=json"]) or []
    active = [a.get("account") for a in accounts if a.get("status") == "ACTIVE"]
    if not active:
        return [stop("gcloud is not signed in", "gcloud auth login")]
    return [ok(f"gcloud signed in as {active[0]}")]


def exists(ctx: Context) -> list[Finding]:
    project = ctx.config.project
    if _describe(ctx) is not None:
        return [ok(f"project {project} exists")]
    return [
        stop(
            f"project {project} not found, or gcloud's account may not see it",
            "check project in the config (gcloud projects list), or ask for a role on it",
        )
    ]


def oauth_client(ctx: Context) -> list[Finding]:
    """IAP's Google-managed OAuth client serves only a project inside an organization, and
    admits only that organization's accounts; anything else needs a client of your own."""
    project = ctx.config.project
    parent = ((_describe(ctx) or {}).get("parent") or {}).get("type")
    in_org = parent in PARENTS
    where = PARENTS.get(str(parent), "not in an organization")
    external = ctx.config.iap.external_users
    if in_org and not external:
        return [ok(f"project {project}: {where}, so IAP can use Google's own OAuth client")]
    if ctx.config.iap.oauth_secret:
        return [ok(f"project {project}: {where}; iap.oauth_secret names your own OAuth client")]
    why = "iap.external_users is set" if external else f"the project is {where}"
    return [stop(f"a custom OAuth client is required: {why}", oauth_client_steps(project))]


def _describe(ctx: Context) -> Any:
    project = ctx.config.project
    return ctx.query_json(["gcloud", "projects", "describe", project, "--format=json"])


def oauth_client_steps(project: str) -> str:
    return "\n".join(
        [
            "IAP's Google-managed client serves only projects inside an organization, and only",
            "that organization's accounts. Make your own client in the Console (the IAP OAuth",
            "Admin API, gcloud iap oauth-brands/oauth-clients, was shut down on 19 March 2026):",
            "1. an OAuth consent screen (type External for accounts outside an organization;",
            "   while it is in Testing, only its test users can sign in):",
            f"   {CONSOLE}/apis/credentials/consent?project={project}",
            "2. Create credentials, OAuth client ID, type Web application:",
            f"   {CONSOLE}/apis/credentials?project={project}",
            "   then give it the authorized redirect URI (CLIENT_ID: the new client's ID)",
            f"   {REDIRECT_URI}",
            "3. a name for its Secret into the config as iap.oauth_secret (e.g. iap-oauth-client)",
            "   and run the deploy again: once the cluster and its namespace exist, the chart",
            "   step stops and prints the kubectl command that puts the client ID and secret",
            "   into that Secret (keys client_id, client_secret); run it, then the deploy again",
        ]
    )


def billing(ctx: Context) -> list[Finding]:
    project = ctx.config.project
    found = ctx.query_json(["gcloud", "billing", "projects", "describe", project, "--format=json"])
    if found and found.get("billingEnabled"):
        return [ok(f"billing enabled ({found.get('billingAccountName', 'an account')})")]
    return [
        stop(
            f"billing is not enabled for {project}: the deploy can create nothing",
            f"gcloud billing projects link {project} --billing-account=ACCOUNT_ID\n"
            "(gcloud billing accounts list shows yours; or in the Console: Billing)",
        )
    ]


def enabled_apis(ctx: Context) -> tuple[frozenset[str], list[Finding]]:
    """The project's enabled APIs, and which of those the deploy uses are still off (only a
    report: the apis step enables them)."""
    listed = ctx.query_json(ctx.gcloud("services", "list", "--enabled", "--format=json")) or []
    enabled = frozenset(_service_name(item) for item in listed)
    needed = apis.needed(ctx.config)
    off = [api for api in needed if api not in enabled]
    if not off:
        return enabled, [ok(f"all {len(needed)} APIs the deploy uses are enabled")]
    return enabled, [note(f"not enabled yet: {', '.join(off)}", "the apis step enables them")]


def _service_name(item: Any) -> str:
    """`compute.googleapis.com`, from `config.name` or `projects/N/services/NAME`."""
    name = (item.get("config") or {}).get("name") or str(item.get("name", ""))
    return str(name).rsplit("/", 1)[-1]
