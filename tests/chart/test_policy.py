"""Security rules every rendered object must follow, whatever the values."""

from __future__ import annotations

import pytest

from tests.chart.render import Obj, containers, one, pod_specs, render, walk
from tests.chart.test_validity import VARIANTS

GS_VERBS = ["get", "list", "watch", "delete"]
ROOT_HOOK = "sd-allocator-share-setup"  # the one root container; see test_the_root_hook_...


@pytest.fixture(scope="module", params=list(VARIANTS.values()), ids=list(VARIANTS.keys()))
def objects(request: pytest.FixtureRequest) -> list[Obj]:
    return render(*request.param)


def test_no_host_ports_or_host_namespaces(objects: list[Obj]) -> None:
    for path, value in (item for obj in objects for item in walk(obj)):
        name = path.rsplit(".", 1)[-1]
        assert name != "hostPort", path
        assert not (name in ("hostNetwork", "hostPID", "hostIPC") and value), path
        assert name != "hostPath", path


def test_every_fleet_port_has_port_policy_none_and_the_webui_port_is_named_sd() -> None:
    fleet = one(render(), "Fleet")
    ports = fleet["spec"]["template"]["spec"]["ports"]
    assert ports and all(port["portPolicy"] == "None" for port in ports)
    assert [port["name"] for port in ports] == ["sd"]
    assert ports[0]["containerPort"] == 7860 and ports[0]["protocol"] == "TCP"


def test_no_cluster_wide_rbac_and_no_wildcards(objects: list[Obj]) -> None:
    kinds = {obj["kind"] for obj in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    for role in (obj for obj in objects if obj["kind"] == "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)


def test_the_roles_grant_exactly_what_allocator_and_cruiser_use() -> None:
    objects = render()
    allocator = one(objects, "Role", "sd-allocator")["rules"]
    cruiser = one(objects, "Role", "sd-allocator-cruiser")["rules"]
    assert allocator == [
        {
            "apiGroups": ["allocation.agones.dev"],
            "resources": ["gameserverallocations"],
            "verbs": ["create"],
        },
        {"apiGroups": ["agones.dev"], "resources": ["gameservers"], "verbs": GS_VERBS},
    ]
    assert cruiser == [
        {"apiGroups": ["agones.dev"], "resources": ["gameservers"], "verbs": GS_VERBS}
    ]


def test_every_container_runs_as_non_root_without_escalation(objects: list[Obj]) -> None:
    for owner, pod, container in containers(objects):
        if owner["metadata"]["name"] == ROOT_HOOK:
            continue
        security = container.get("securityContext", {})
        pod_security = pod.get("securityContext", {})
        assert security.get("runAsNonRoot") or pod_security.get("runAsNonRoot"), container["name"]
        assert pod_security.get("runAsUser", 1) != 0 and security.get("runAsUser", 1) != 0
        assert security.get("allowPrivilegeEscalation") is False, container["name"]
        assert security.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
        assert "add" not in security.get("capabilities", {}), container["name"]
        assert not security.get("privileged"), container["name"]


def test_the_root_hook_only_creates_the_share_folders(objects: list[Obj]) -> None:
    job = one(objects, "Job", ROOT_HOOK)
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["CHOWN", "FOWNER"],
    }
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    script = container["command"][-1]
    assert "rm " not in script and "chown -R" not in script and "chmod -R" not in script


def test_every_container_has_cpu_and_memory_requests_and_limits(objects: list[Obj]) -> None:
    for _, _, container in containers(objects):
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= resources[kind].keys(), (container["name"], kind)


def test_our_own_containers_have_read_only_root_filesystems(objects: list[Obj]) -> None:
    for _, _, container in containers(objects):
        # The WebUI (A1111) writes next to its code; everything of ours writes only to mounts.
        if container["name"] != "sd-webui":
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, container


def test_service_account_tokens_only_where_the_kubernetes_api_is_used(objects: list[Obj]) -> None:
    for owner, pod in pod_specs(objects):
        uses_api = owner["kind"] in ("Deployment", "CronJob") or owner["kind"] == "Fleet"
        if not uses_api:
            assert pod.get("automountServiceAccountToken") is False, owner["metadata"]["name"]


def test_webui_pods_accept_connections_only_from_allocator_pods() -> None:
    objects = render()
    policy = one(objects, "NetworkPolicy", "sd-allocator-webui")
    fleet_labels = one(objects, "Fleet")["spec"]["template"]["spec"]["template"]["metadata"]
    allocator_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= fleet_labels["labels"].items()
    assert policy["spec"]["policyTypes"][0] == "Ingress"
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert source.keys() == {"podSelector"}, "no namespace- or IP-wide sources"
    assert source["podSelector"]["matchLabels"].items() <= allocator_labels.items()
    assert source["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "allocator"
    assert rule["ports"] == [{"port": 7860, "protocol": "TCP"}]


def test_allocator_pods_take_people_only_from_the_load_balancer() -> None:
    policy = one(render(), "NetworkPolicy", "sd-allocator-allocator")
    web, metrics = policy["spec"]["ingress"]
    assert web["ports"] == [{"port": 8080, "protocol": "TCP"}]
    blocks = [source["ipBlock"]["cidr"] for source in web["from"] if "ipBlock" in source]
    assert blocks == ["130.211.0.0/22", "35.191.0.0/16"]
    assert metrics["ports"] == [{"port": 9090, "protocol": "TCP"}]


def test_secrets_reach_pods_only_by_reference(objects: list[Obj]) -> None:
    assert not [obj for obj in objects if obj["kind"] == "Secret"], "the chart ships no secrets"
    for _, _, container in containers(objects):
        for variable in container.get("env", []):
            if variable["name"] == "SDA_REDIS_URL":
                assert "value" not in variable and "secretKeyRef" in variable["valueFrom"]


# --- people's folders: only the sidecar writes them --------------------------------------------

USERS = "users"


def share_mounts(pod: Obj, container: Obj) -> list[Obj]:
    """The container's mounts of the chart's shared volume (the PersistentVolumeClaim)."""
    claims = {v["name"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
    return [m for m in container.get("volumeMounts", []) if m["name"] in claims]


def test_no_container_but_the_sidecar_mounts_users_writable(objects: list[Obj]) -> None:
    for owner, pod, container in containers(objects):
        if owner["metadata"]["name"] == ROOT_HOOK or container["name"] == "sidecar":
            continue
        for mount in share_mounts(pod, container):
            if mount.get("subPath") in (USERS, None):
                assert mount.get("readOnly") is True, (owner["metadata"]["name"], mount)


def test_the_webui_mounts_only_models_read_only_and_pod_local_volumes(objects: list[Obj]) -> None:
    fleets = [o for o in objects if o["kind"] == "Fleet"]
    for fleet in fleets:
        pod = fleet["spec"]["template"]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        webui = next(c for c in pod["containers"] if c["name"] == "sd-webui")
        for mount in webui["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                assert mount["subPath"] == "models" and mount["readOnly"] is True, mount
            else:
                assert volume.keys() == {"name", "emptyDir"}, volume
        assert pod["terminationGracePeriodSeconds"] >= 30


def test_the_allocator_reads_users_and_the_cruiser_mounts_no_share() -> None:
    """The allocator reads users/ through a read-only claim, and writes only deletions/."""
    objects = render("cruiser.mode=cronjob")
    allocator = one(objects, "Deployment")["spec"]["template"]["spec"]
    claims = [v for v in allocator["volumes"] if "persistentVolumeClaim" in v]
    assert len(claims) == 1, "a claim used as two volumes of one pod is mounted once, if ever"
    users, deletions = share_mounts(allocator, allocator["containers"][0])
    assert (users["subPath"], users["readOnly"]) == (USERS, True)
    assert deletions["subPath"] == "deletions" and not deletions.get("readOnly")
    cron = one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert not [v for v in cron["volumes"] if "persistentVolumeClaim" in v]


# --- egress from WebUI pods --------------------------------------------------------------------

METADATA = "169.254.169.254"
API = "networkPolicy.webuiEgress.kubernetesApiCidrs={172.16.0.2/32}"
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]


def webui_policy(*sets: str) -> Obj:
    policy: Obj = one(render(*sets), "NetworkPolicy", "sd-allocator-webui")["spec"]
    return policy


def webui_egress(*sets: str) -> list[Obj]:
    rules: list[Obj] = webui_policy(API, *sets)["egress"]
    return rules


def test_without_the_control_planes_address_egress_is_not_limited() -> None:
    """Agones' SDK server runs in the pod: limiting egress before its API address is known
    would keep every WebUI from becoming Ready (make deploy fills the address)."""
    policy = webui_policy()
    assert policy["policyTypes"] == ["Ingress"] and "egress" not in policy
    assert webui_policy(API)["policyTypes"] == ["Ingress", "Egress"]


def test_webui_pods_reach_dns_and_the_api_and_nothing_else_by_default() -> None:
    dns, _ = webui_egress()
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]
    blocks = [peer["ipBlock"]["cidr"] for peer in dns["to"] if "ipBlock" in peer]
    assert blocks == [f"{METADATA}/32", "169.254.20.10/32"], "the metadata address: DNS only"
    (kube_dns,) = [peer for peer in dns["to"] if "podSelector" in peer]
    assert kube_dns["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert kube_dns["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }


def test_the_kubernetes_api_only_on_443_for_agones_sdk_server() -> None:
    _, api = webui_egress()
    assert api == {
        "to": [{"ipBlock": {"cidr": "172.16.0.2/32"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }


def test_the_internet_when_allowed_never_metadata_redis_api_or_the_cluster() -> None:
    sets = (
        "networkPolicy.webuiEgress.allowInternet=true",
        "networkPolicy.webuiEgress.redisCidrs={10.1.0.0/29}",
        "networkPolicy.webuiEgress.kubernetesApiCidrs={172.16.0.2/32}",
        "networkPolicy.webuiEgress.clusterCidrs={10.4.0.0/14,10.8.0.0/20}",
    )
    internet = webui_egress(*sets)[-1]
    assert "ports" not in internet
    (peer,) = internet["to"]
    assert peer["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert peer["ipBlock"]["except"] == [
        "169.254.0.0/16",
        *PRIVATE,  # Filestore's NFS among them: only the node may talk to it
        "10.1.0.0/29",
        "172.16.0.2/32",
        "10.4.0.0/14",
        "10.8.0.0/20",
    ]
    for rule in webui_egress(*sets):
        for target in rule["to"]:
            whole_namespace = "namespaceSelector" in target and "podSelector" not in target
            assert not whole_namespace, target
            selector = target.get("podSelector", {}).get("matchLabels", {})
            assert selector.get("app.kubernetes.io/component") != "allocator"
