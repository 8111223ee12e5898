"""Stand-ins for gcloud, helm, kubectl and git: `fake_cli.py TOOL ARGS...`.

Each call is logged (argv and stdin, one JSON line) to $FAKE_CLI_LOG and answered from a
small simulated project kept in the JSON file $FAKE_CLI_STATE: describe finds what create
made, so a second deploy sees the first one's work. A call whose command line contains
$FAKE_CLI_FAIL fails like gcloud does. Only the commands the deploy uses are known; anything
else fails loudly, so a new command cannot slip through untested.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from typing import Any

AUTH_STRING = "s3cr3t-auth-0000-not-for-logs"
REDIS_CA = "-----BEGIN CERTIFICATE-----\nREDISCA\n-----END CERTIFICATE-----\n"
CLUSTER_CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nKUBECA\n").decode()


class Missing(Exception):
    pass


class Unknown(Exception):
    pass


class Refused(Exception):
    """Google refuses the call; the message starts with the error's code."""


def main() -> int:
    tool, args = sys.argv[1], sys.argv[2:]
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps({"argv": [tool, *args], "stdin": stdin}) + "\n")
    fail = os.environ.get("FAKE_CLI_FAIL")
    if fail and fail in " ".join([tool, *args]):
        sys.stderr.write(f"ERROR: ({tool}) something broke: quota exceeded for {fail}\n")
        return 1
    state = _load()
    words = [a for a in args if not a.startswith("-")]
    flags = dict(_flag(a) for a in args if a.startswith("--"))
    try:
        answer = HANDLERS[tool](state, words, flags, stdin)
    except Missing as exc:
        sys.stderr.write(f"ERROR: ({tool}) NOT_FOUND: {exc} was not found\n")
        return 1
    except Unknown:
        sys.stderr.write(f"fake {tool} does not know: {args}\n")
        return 3
    except Refused as exc:
        sys.stderr.write(f"ERROR: ({tool}) {exc}\n")
        return 1
    _save(state)
    if answer is not None:
        sys.stdout.write(answer if isinstance(answer, str) else json.dumps(answer))
    return 0


def _flag(arg: str) -> tuple[str, Any]:
    name, sep, value = arg[2:].partition("=")
    return name, value if sep else True


def _load() -> dict[str, Any]:
    with open(os.environ["FAKE_CLI_STATE"]) as handle:
        return dict(json.load(handle))


def _save(state: dict[str, Any]) -> None:
    with open(os.environ["FAKE_CLI_STATE"], "w") as handle:
        json.dump(state, handle)


def _table(state: dict[str, Any], name: str) -> dict[str, Any]:
    table: dict[str, Any] = state.setdefault(name, {})
    return table


def _found(table: dict[str, Any], key: str) -> Any:
    if key not in table:
        raise Missing(key)
    return table[key]


def gcloud(state: dict[str, Any], words: list[str], flags: dict[str, Any], stdin: str) -> Any:
    for prefix, handler in GCLOUD:
        if words[: len(prefix)] == prefix:
            return handler(state, words[len(prefix) :], flags, stdin)
    raise Unknown


def _simple(table: str, created: dict[str, Any]) -> Any:
    """describe/create for a resource kept as a document, keyed by name."""

    def describe(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
        return _found(_table(state, table), rest[0])

    def create(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
        _table(state, table)[rest[0]] = {"name": rest[0], **created}
        return None

    return describe, create


def _images_list(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return [
        {"package": package, "version": "sha256:1", "tags": tags}
        for package, tags in _table(state, "images").items()
        if package.startswith(rest[0] + "/")
    ]


BUILDER = "roles/cloudbuild.builds.builder"


def _builds_as(state: dict[str, Any], account: Any) -> None:
    """A build runs as the account named (projects/P/serviceAccounts/EMAIL), or else as the
    Compute Engine default service account, which here (as in organisations created since
    May 2024) holds no role at all."""
    if not account:
        raise Refused(f"PERMISSION_DENIED: the default build service account lacks {BUILDER}")
    email = str(account).rsplit("/", 1)[-1]
    _found(_table(state, "accounts"), email.split("@")[0])
    member = f"serviceAccount:{email}"
    bindings = state.get("project_policy", {}).get("bindings", [])
    if not any(b["role"] == BUILDER and member in b["members"] for b in bindings):
        raise Refused(f"PERMISSION_DENIED: {email} lacks {BUILDER}")


def _logs_kept(config: str) -> bool:
    """Whether a build config names where the logs go (what a chosen account requires)."""
    with open(config) as handle:
        text = handle.read()
    return bool(re.search(r"^\s*logging:\s*(CLOUD_LOGGING_ONLY|NONE)\s*$|^logsBucket:", text, re.M))


def _build(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    _builds_as(state, flags.get("service-account"))
    if flags.get("service-account") and not _logs_kept(flags["config"]):
        raise Refused("INVALID_ARGUMENT: a build with a service account needs a logging option")
    values = dict(item.split("=", 1) for item in flags["substitutions"].split(","))
    for name in ("allocator", "sd-webui", "sidecar"):
        _table(state, "images").setdefault(f"{values['_REGISTRY']}/{name}", []).append(
            values["_TAG"]
        )


def _cluster_create(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    _table(state, "clusters")[rest[0]] = {
        "name": rest[0],
        "status": "RUNNING",
        "endpoint": "34.1.2.3",
        "masterAuth": {"clusterCaCertificate": CLUSTER_CA},
        "addonsConfig": {"gcpFilestoreCsiDriverConfig": {"enabled": True}},
        "networkConfig": {
            "datapathProvider": (
                "ADVANCED_DATAPATH" if flags.get("enable-dataplane-v2") else "LEGACY_DATAPATH"
            )
        },
        "currentMasterVersion": _master_version(state, flags.get("cluster-version")),
        "nodePools": [{"name": "default-pool", "config": {"serviceAccount": _node_account(flags)}}],
    }


# `gcloud container get-server-config`: the regular channel offers one minor above
# Agones 1.60's range (1.34-1.36); tests replace it through state["server_config"].
SERVER_CONFIG = {
    "channels": [
        {
            "channel": "REGULAR",
            "defaultVersion": "1.36.2-gke.1100",
            "validVersions": ["1.37.1-gke.1000", "1.36.2-gke.1100", "1.35.5-gke.1300"],
        },
        {"channel": "RAPID", "validVersions": ["1.38.0-gke.100", "1.37.1-gke.1000"]},
    ]
}


def _server_config(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return state.get("server_config", SERVER_CONFIG)


def _master_version(state: dict[str, Any], wanted: Any) -> str:
    """The newest regular-channel version of the minor asked for, else the channel default."""
    regular = state.get("server_config", SERVER_CONFIG)["channels"][0]
    offered = [v for v in regular["validVersions"] if v.startswith(f"{wanted}.")]
    default = regular.get("defaultVersion", regular["validVersions"][0])
    return str(offered[0] if wanted and offered else default)


def _node_account(flags: dict[str, Any]) -> str:
    return str(flags.get("service-account", "default"))  # GKE shows the default one so


def _cluster_update(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    """Only the maintenance exclusion the deploy adds is known. `old_gcloud` in the state:
    a gcloud (528) that lacks --add-maintenance-exclusion-until-end-of-support."""
    if state.get("old_gcloud"):
        raise Refused("unrecognized arguments: --add-maintenance-exclusion-until-end-of-support")
    cluster = _found(_table(state, "clusters"), rest[0])
    name = flags.get("add-maintenance-exclusion-name")
    if not name or not flags.get("add-maintenance-exclusion-until-end-of-support"):
        raise Unknown
    options = {
        "scope": str(flags.get("add-maintenance-exclusion-scope", "no_upgrades")).upper(),
        "endTimeBehavior": "UNTIL_END_OF_SUPPORT",
    }
    window = cluster.setdefault("maintenancePolicy", {}).setdefault("window", {})
    window.setdefault("maintenanceExclusions", {})[name] = {"maintenanceExclusionOptions": options}


def _pool_create(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    accelerator = dict(item.split("=") for item in flags["accelerator"].split(","))
    driver = accelerator.get("gpu-driver-version", "INSTALLATION_DISABLED").upper()
    _table(state, "pools")[rest[0]] = {
        "name": rest[0],
        "config": {
            "machineType": flags["machine-type"],
            "accelerators": [
                {
                    "acceleratorType": accelerator["type"],
                    "acceleratorCount": accelerator["count"],  # int64: a string in JSON
                    "gpuDriverInstallationConfig": {"gpuDriverVersion": driver},
                }
            ],
            "serviceAccount": _node_account(flags),
            **({"spot": True} if flags.get("spot") else {}),
        },
        "autoscaling": {
            "enabled": True,
            "minNodeCount": int(flags["min-nodes"]),
            "maxNodeCount": int(flags["max-nodes"]),
        },
    }


def _redis_create(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    _table(state, "redis")[rest[0]] = {
        "state": "READY",
        "host": "10.0.0.3",
        "port": 6378,
        "authorizedNetwork": flags["network"],
        "authEnabled": bool(flags.get("enable-auth")),
        "transitEncryptionMode": "SERVER_AUTHENTICATION",
        "serverCaCerts": [{"cert": REDIS_CA}],
    }


def _auth_string(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    _found(_table(state, "redis"), rest[0])
    return {"authString": AUTH_STRING}


def _projects(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    verb, project = rest[0], rest[1]
    policy = state.setdefault("project_policy", {"bindings": []})
    if verb == "describe":  # state["project"]: other fields, e.g. {"parent": None}
        found = {"projectId": project, "projectNumber": "123456789012", "parent": ORGANIZATION}
        return {**found, **state.get("project", {})}
    if verb == "get-iam-policy":
        return policy
    if verb == "add-iam-policy-binding":
        if state.get("iam_lag", 0) > 0:  # a new account, not known to IAM everywhere yet
            state["iam_lag"] -= 1
            _save(state)
            raise Refused(f"INVALID_ARGUMENT: Service account {flags['member']} does not exist.")
        return _bind(policy, flags)
    raise Unknown


def _bind(policy: dict[str, Any], flags: dict[str, Any]) -> Any:
    policy.setdefault("bindings", []).append({"role": flags["role"], "members": [flags["member"]]})
    return policy


def _secrets(state: dict[str, Any], rest: list[str], flags: dict[str, Any], stdin: str) -> Any:
    secrets = _table(state, "secrets")
    if rest[0] == "create":
        secrets[rest[1]] = {"versions": [stdin], "policy": {}}
        return None
    if rest[:2] == ["versions", "access"]:
        versions = _found(secrets, flags["secret"])["versions"]
        data = base64.urlsafe_b64encode(versions[-1].encode()).decode()
        return {"name": "projects/p/secrets/s/versions/1", "payload": {"data": data}}
    if rest[:2] == ["versions", "add"]:
        _found(secrets, rest[2])["versions"].append(stdin)
        return None
    secret = _found(secrets, rest[1])
    if rest[0] == "describe":
        return {"name": rest[1]}
    if rest[0] == "get-iam-policy":
        return secret["policy"]
    if rest[0] == "add-iam-policy-binding":
        return _bind(secret["policy"], flags)
    raise Unknown


def _functions(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    functions = _table(state, "functions")
    verb, name = rest[0], rest[1]
    if verb == "describe":
        return _found(functions, name)
    if verb == "deploy":
        _builds_as(state, flags.get("build-service-account"))
        label, value = flags["update-labels"].split("=")
        functions[name] = {
            "state": "ACTIVE",
            "labels": {label: value},
            "serviceConfig": {
                "uri": f"https://{name}-xyz-uc.a.run.app",
                "service": f"projects/p/locations/r/services/{name}",
            },
        }
        return None
    if verb == "add-invoker-policy-binding":
        return _bind(
            _table(state, "run_policies").setdefault(name, {}),
            {**flags, "role": "roles/run.invoker"},
        )
    raise Unknown


def _run_policy(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return _table(state, "run_policies").get(rest[0], {})


def _backend_services(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return state.get("backend_services", [])


def _ok(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return None


# What the preflight reads. Tests change the answers through state: "gcloud_accounts",
# "project" (above), "billing" (false: off), "services" (the enabled APIs), "quotas"
# (metric: limit, the region's and the project's alike), "networks" (by name), "subnets".
ORGANIZATION = {"type": "organization", "id": "100200300400"}
QUOTAS = {"NVIDIA_L4_GPUS": 8.0, "PREEMPTIBLE_NVIDIA_L4_GPUS": 8.0, "GPUS_ALL_REGIONS": 8.0}
NETWORKS = {"default": {"name": "default", "autoCreateSubnetworks": True}}
SUBNETS = [
    {"name": "default", "network": "default", "region": "europe-west4",
     "ipCidrRange": "10.164.0.0/20"},
]  # fmt: skip


def _accounts(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return state.get("gcloud_accounts", [{"account": "ada@test.example", "status": "ACTIVE"}])


def _billing(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return {
        "name": f"projects/{rest[0]}/billingInfo",
        "billingAccountName": "billingAccounts/012345-6789AB-CDEF01",
        "billingEnabled": state.get("billing", True),
    }


def _enable(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    enabled = state.setdefault("services", [])
    enabled.extend(api for api in rest if api not in enabled)


def _services(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return [{"config": {"name": api}, "state": "ENABLED"} for api in state.get("services", [])]


def _quotas(state: dict[str, Any]) -> list[dict[str, Any]]:
    limits = {**QUOTAS, **state.get("quotas", {})}
    return [{"metric": name, "limit": limit, "usage": 0.0} for name, limit in limits.items()]


def _region(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return {"name": rest[0], "quotas": _quotas(state)}


def _project_info(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return {"name": flags["project"], "quotas": _quotas(state)}


def _network(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    """`network_appears_after`: describes that find nothing first (a new project's default
    network shows up a while after Compute Engine is enabled)."""
    if state.get("network_appears_after", 0) > 0:
        state["network_appears_after"] -= 1
        _save(state)  # a command that fails saves nothing by itself
        raise Missing(rest[0])
    return _found(state.get("networks", NETWORKS), rest[0])


def _subnets(state: dict[str, Any], rest: list[str], flags: dict[str, Any], _: str) -> Any:
    return [s for s in state.get("subnets", SUBNETS) if s["network"] == flags["network"]]


ADDRESS = _simple("addresses", {"address": "34.120.0.7", "addressType": "EXTERNAL"})
REPOSITORY = _simple("repositories", {"format": "DOCKER"})
CLUSTER = _simple("clusters", {})
POOL = _simple("pools", {})
REDIS = _simple("redis", {})
ACCOUNT = _simple("accounts", {})
CONNECTOR = _simple("connectors", {"network": "default", "ipCidrRange": "10.8.0.0/28"})
GCLOUD = [
    (["services", "enable"], _enable),
    (["artifacts", "repositories", "describe"], REPOSITORY[0]),
    (["artifacts", "repositories", "create"], REPOSITORY[1]),
    (["artifacts", "docker", "images", "list"], _images_list),
    (["builds", "submit"], _build),
    (["compute", "addresses", "describe"], ADDRESS[0]),
    (["compute", "addresses", "create"], ADDRESS[1]),
    (["container", "clusters", "describe"], CLUSTER[0]),
    (["container", "clusters", "create"], _cluster_create),
    (["container", "clusters", "get-credentials"], _ok),
    (["container", "clusters", "update"], _cluster_update),
    (["container", "get-server-config"], _server_config),
    (["container", "node-pools", "describe"], POOL[0]),
    (["container", "node-pools", "create"], _pool_create),
    (["redis", "instances", "describe"], REDIS[0]),
    (["redis", "instances", "create"], _redis_create),
    (["redis", "instances", "get-auth-string"], _auth_string),
    (["projects"], _projects),
    (["compute", "backend-services", "list"], _backend_services),
    (
        ["iam", "service-accounts", "describe"],
        lambda s, r, f, i: ACCOUNT[0](s, [r[0].split("@")[0]], f, i),
    ),
    (["iam", "service-accounts", "create"], ACCOUNT[1]),
    (["secrets"], _secrets),
    (["compute", "networks", "vpc-access", "connectors", "describe"], CONNECTOR[0]),
    (["compute", "networks", "vpc-access", "connectors", "create"], CONNECTOR[1]),
    (["functions"], _functions),
    (["run", "services", "get-iam-policy"], _run_policy),
    # the preflight
    (["auth", "list"], _accounts),
    (["billing", "projects", "describe"], _billing),
    (["services", "list"], _services),
    (["compute", "regions", "describe"], _region),
    (["compute", "project-info", "describe"], _project_info),
    (["compute", "networks", "describe"], _network),
    (["compute", "networks", "subnets", "list"], _subnets),
]


def helm(state: dict[str, Any], words: list[str], flags: dict[str, Any], stdin: str) -> Any:
    releases = _table(state, "releases")
    if words[:2] == ["repo", "add"]:
        return None
    if words[0] == "history":
        return _found(releases, f"{flags['namespace']}/{words[1]}")[-1:]
    if words[0] == "upgrade":
        history = releases.setdefault(f"{flags['namespace']}/{words[1]}", [])
        status = {"status": "deployed", "description": flags["description"], "chart": words[2]}
        history.append({"revision": len(history) + 1, **status})
        if words[1] == "sd-allocator":  # the Ingress appears; ingress-gce names its backend
            state["backend_services"] = [_backend_service()]
            deployment = {"metadata": {"name": "sd-allocator"}}
            _table(state, "kubernetes")["deployment/sd-allocator/sd-allocator"] = deployment
        return None
    raise Unknown


def _backend_service() -> dict[str, Any]:
    description = {
        "kubernetes.io/service-name": "sd-allocator/sd-allocator",
        "kubernetes.io/service-port": "http",
    }
    return {
        "name": "k8s1-abc-sd-allocator-sd-allocator-80-x",
        "id": "4242",
        "description": json.dumps(description),
    }


def kubectl(state: dict[str, Any], words: list[str], flags: dict[str, Any], stdin: str) -> Any:
    objects = _table(state, "kubernetes")
    if words[:1] == ["get"]:
        namespace = flags.get("namespace", "")
        return _found(objects, f"{words[1]}/{namespace}/{words[2]}")
    if words[:2] == ["create", "namespace"]:
        objects[f"namespace//{words[2]}"] = {"metadata": {"name": words[2]}}
        return None
    if words[:2] == ["rollout", "restart"]:
        _found(objects, f"{words[2]}/{flags['namespace']}/{words[3]}")
        return None
    if words[0] in ("create", "replace"):
        manifest = json.loads(stdin)
        meta = manifest["metadata"]
        objects[f"{manifest['kind'].lower()}/{meta['namespace']}/{meta['name']}"] = manifest
        return None
    raise Unknown


def git(state: dict[str, Any], words: list[str], flags: dict[str, Any], stdin: str) -> Any:
    if words == ["rev-parse", "HEAD"]:
        return "abc1234\n"
    raise Unknown


HANDLERS = {"gcloud": gcloud, "helm": helm, "kubectl": kubectl, "git": git}

if __name__ == "__main__":
    sys.exit(main())
