"""The chart's objects fit together and fit the programs they run: every SDA_* variable is a
real setting, the allocator started with the chart's own environment becomes ready against
TLS Redis and (fake) Agones, and the `helm test` script tells ready from broken."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from allocator.checks import HEALTH_PATHS
from allocator.cli import main as cli
from allocator.settings import Settings, load_settings, unknown_variables
from fake_agones import AppBacking, FakeAgones
from fake_iap import ASSERTION_HEADER, AUDIENCE, KeyServer, new_key, token
from sidecar.settings import Settings as SidecarSettings
from tests.chart.render import CHART, Obj, manifests, one, render, render_error
from tests.support.pods import pod_app
from tests.support.processes import AllocatorProcess, RedisServer, free_port
from tests.support.tls import make_tls_files

NAMESPACE = "sd-allocator"
HOST = "sd.example.com"
KEY = new_key("chart")
REDIS_CA_MOUNT = "/etc/sd-allocator/redis"


def env_of(container: Obj, secrets: dict[str, str], mounts: dict[str, Path]) -> dict[str, str]:
    """The container's environment as the kubelet would give it, with mounted paths moved
    to where this test put the files."""
    env = {}
    for variable in container.get("env", []):
        source = variable.get("valueFrom", {})
        if "value" in variable:
            value = str(variable["value"])
        elif "secretKeyRef" in source:
            value = secrets[source["secretKeyRef"]["key"]]
        else:
            assert source["fieldRef"]["fieldPath"] == "metadata.namespace", variable
            value = NAMESPACE
        for mount, local in mounts.items():
            if value.startswith(mount + "/"):
                value = str(local) + value.removeprefix(mount)
                break
        env[variable["name"]] = value
    return env


def allocator_container(objects: list[Obj]) -> Obj:
    container: Obj
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_every_sda_variable_the_chart_sets_is_a_setting_the_programs_accept(
    tmp_path: Path,
) -> None:
    objects = render(
        "cruiser.mode=cronjob",
        f"allocator.iapAudience={AUDIENCE}",
        "allocator.extraEnv.SDA_MAX_SESSION_AGE=43200",
    )
    cron = one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (ca := tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    secrets = {"url": "rediss://:auth@10.0.0.3:6378/0"}
    mounts = {REDIS_CA_MOUNT: tmp_path, "/tmp": tmp_path}
    for container in (allocator_container(objects), cron["containers"][0]):
        env = env_of(container, secrets, mounts)
        assert unknown_variables(env) == []
        settings = load_settings(**{k.removeprefix("SDA_").lower(): v for k, v in env.items()})
        assert settings.backend == "agones" and settings.namespace == NAMESPACE
        assert settings.redis_ca_cert == str(ca)
        assert settings.max_session_age == 43200
        assert not settings.cruise_in_process


def test_the_cronjob_runs_a_real_cli_command() -> None:
    cron = one(render("cruiser.mode=cronjob"), "CronJob")
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    command = cli.commands[args[0]]
    context = command.make_context(args[0], list(args[1:]))
    assert context.params["once"] and context.params["as_json"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


def test_the_sidecar_accepts_its_environment_and_pings_within_each_health_period() -> None:
    fleet = one(render(), "Fleet")
    spec = fleet["spec"]["template"]["spec"]
    pod = spec["template"]["spec"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "sidecar")
    settings = SidecarSettings.from_env(env_of(sidecar, {}, {}))
    assert settings.health_period < spec["health"]["periodSeconds"]
    assert settings.webui_url.endswith(f":{spec['ports'][0]['containerPort']}")
    assert settings.drain_timeout < pod["terminationGracePeriodSeconds"]
    assert settings.options_period == 60
    webui = next(c for c in pod["containers"] if c["name"] == "sd-webui")
    [sleep, seconds] = webui["lifecycle"]["preStop"]["exec"]["command"]  # for the last look
    assert sleep == "sleep" and 0 < int(seconds) < pod["terminationGracePeriodSeconds"]
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}
    assert settings.outputs_dir.parent == Path("/workspace") and "/workspace" in mounts
    assert str(settings.state_dir) in mounts
    assert str(settings.share_dir / "users") in mounts


def test_the_webui_pod_wiring() -> None:
    objects = render()
    fleet = one(objects, "Fleet")
    spec = fleet["spec"]["template"]["spec"]
    pod = spec["template"]["spec"]
    webui, sidecar = pod["containers"]
    assert spec["container"] == webui["name"] == spec["ports"][0]["container"] == "sd-webui"
    assert webui["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    mounts = {(m["name"], m.get("subPath"), m["mountPath"]): m for m in webui["volumeMounts"]}
    assert mounts["share", "models", "/share/models"]["readOnly"] is True
    assert ("share", "users", "/share/users") not in mounts, "the WebUI never sees users/"
    assert ("share", "deletions", "/share/deletions") not in mounts
    sidecar_mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}
    assert set(sidecar_mounts) == {
        "/share/users",
        "/share/deletions",
        "/workspace",
        "/sidecar-state",
    }, "no models"
    assert not sidecar_mounts["/share/users"].get("readOnly"), "it delivers there"
    assert sidecar_mounts["/share/deletions"]["subPath"] == "deletions"
    assert sidecar_mounts["/workspace"]["readOnly"] is True, "it only reads the outputs"
    for name in ("workspace", "sidecar-state"):
        assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == name), name
    assert "sidecar-state" not in {m["name"] for m in webui["volumeMounts"]}
    claim = next(v for v in pod["volumes"] if v["name"] == "share")
    assert claim["persistentVolumeClaim"]["claimName"] == "sd-allocator-share"
    assert spec["health"]["initialDelaySeconds"] >= 30
    allocator_env = {v["name"]: v.get("value") for v in allocator_container(objects)["env"]}
    assert allocator_env["SDA_FLEET"] == fleet["metadata"]["name"]
    shares = {
        m["subPath"]: m
        for m in allocator_container(objects)["volumeMounts"]
        if m["name"] in ("share", "deletions")
    }
    users, deletions = shares.pop("users"), shares.pop("deletions")
    assert shares == {}, "the allocator mounts nothing else of the share"
    assert allocator_env["SDA_USERS_DIR"] == users["mountPath"] and users["readOnly"] is True
    assert allocator_env["SDA_DELETIONS_DIR"] == deletions["mountPath"] == "/share/deletions"
    assert sidecar_mounts["/share/deletions"]["subPath"] == deletions["subPath"]
    assert Settings.model_fields["agones_port_name"].default == spec["ports"][0]["name"]


def test_the_load_balancer_pieces_name_each_other() -> None:
    objects = render()
    service = one(objects, "Service")
    backend = one(objects, "BackendConfig")
    ingress = one(objects, "Ingress")
    certificate = one(objects, "ManagedCertificate")
    frontend = one(objects, "FrontendConfig")
    annotations = service["metadata"]["annotations"]
    assert annotations["cloud.google.com/neg"] == '{"ingress": true}'
    assert annotations["cloud.google.com/backend-config"] == (
        f'{{"default": "{backend["metadata"]["name"]}"}}'
    )
    assert backend["spec"]["iap"] == {"enabled": True}
    assert backend["spec"]["timeoutSec"] >= 3600
    container = allocator_container(objects)
    assert backend["spec"]["healthCheck"]["requestPath"] == "/_allocator/healthz"
    probes = {kind: container[f"{kind}Probe"]["httpGet"]["path"] for kind in PROBES}
    assert set(probes.values()) == set(HEALTH_PATHS)
    # Traffic once Redis and the IAP keys are there, then as long as the process serves.
    assert probes == {
        "startup": "/_allocator/readyz",
        "readiness": "/_allocator/healthz",
        "liveness": "/_allocator/healthz",
    }
    assert backend["spec"]["healthCheck"]["port"] == container["ports"][0]["containerPort"]
    ingress_notes = ingress["metadata"]["annotations"]
    assert ingress_notes["kubernetes.io/ingress.global-static-ip-name"] == "sd-allocator-ip"
    assert (
        ingress_notes["networking.gke.io/managed-certificates"] == (certificate["metadata"]["name"])
    )
    assert (
        ingress_notes["networking.gke.io/v1beta1.FrontendConfig"] == (frontend["metadata"]["name"])
    )
    assert certificate["spec"]["domains"] == [ingress["spec"]["rules"][0]["host"]]


PROBES = ("startup", "readiness", "liveness")


def test_a_replica_going_away_finishes_what_it_serves() -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown = Settings.model_fields["shutdown_timeout"].default
    assert pause >= 10, "the load balancer needs seconds to stop sending new connections"
    assert pod["terminationGracePeriodSeconds"] > pause + shutdown
    draining = one(objects, "BackendConfig")["spec"]["connectionDraining"]
    assert draining["drainingTimeoutSec"] <= pod["terminationGracePeriodSeconds"]


def test_the_fleet_leaves_its_size_to_the_autoscaler() -> None:
    fleet = one(render(), "Fleet")
    assert "replicas" not in fleet["spec"], "an upgrade would fight the FleetAutoscaler"
    without_autoscaler = [
        str(manifests.HELM),
        "template",
        "x",
        str(CHART),
        "--api-versions",
        "agones.dev/v1/Fleet",
    ]
    output = subprocess.run(without_autoscaler, check=True, capture_output=True, text=True)
    fleets = [doc for doc in yaml.safe_load_all(output.stdout) if doc and doc["kind"] == "Fleet"]
    assert fleets[0]["spec"]["replicas"] == 1


def test_a_public_ingress_requires_iap() -> None:
    assert "/iap/enabled" in render_error("iap.enabled=false")
    behind_another_proxy = render("iap.enabled=false", "ingress.enabled=false")
    env = {v["name"]: v.get("value") for v in allocator_container(behind_another_proxy)["env"]}
    assert env["SDA_IDENTITY"] == "header"
    assert not [o for o in behind_another_proxy if o["kind"] == "Ingress"]


def test_allocators_are_spread_and_kept_available() -> None:
    objects = render()
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    topologies = [t["podAffinityTerm"]["topologyKey"] for t in affinity[next(iter(affinity))]]
    assert "kubernetes.io/hostname" in topologies
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


STORAGE = {
    "dynamic": ((), "sd-allocator-sd-allocator-share"),
    "dynamic, own class": (("storage.storageClassName=premium-rwx",), "premium-rwx"),
    "filestore": (
        (
            "storage.mode=filestore",
            "storage.filestore.ip=10.1.2.3",
            "storage.filestore.zone=us-central1-a",
            "storage.filestore.instance=sd-share",
            "storage.filestore.share=share",
        ),
        "",
    ),
}


@pytest.mark.parametrize("sets,storage_class", STORAGE.values(), ids=STORAGE.keys())
def test_storage_modes_keep_the_share_when_the_chart_goes(
    sets: tuple[str, ...], storage_class: str
) -> None:
    objects = render(*sets)
    claim = one(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["storageClassName"] == storage_class
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = [o for o in objects if o["kind"] == "PersistentVolume"]
    classes = [o for o in objects if o["kind"] == "StorageClass"]
    if storage_class:
        assert not volumes
        assert [c["metadata"]["name"] for c in classes] == (
            [storage_class] if storage_class.startswith("sd-allocator") else []
        )
        for storage in classes:
            assert storage["reclaimPolicy"] == "Retain", "deleting the claim keeps the pictures"
            assert storage["provisioner"] == "filestore.csi.storage.gke.io"
        return
    (volume,) = volumes
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert volume["spec"]["csi"] == {
        "driver": "filestore.csi.storage.gke.io",
        "volumeHandle": "modeInstance/us-central1-a/sd-share/share",
        "volumeAttributes": {"ip": "10.1.2.3", "volume": "share"},
    }
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"]


def test_an_existing_claim_is_used_as_it_is() -> None:
    objects = render("storage.mode=existingClaim", "storage.existingClaim=our-models")
    assert not [o for o in objects if o["kind"] in ("PersistentVolumeClaim", "PersistentVolume")]
    pod = one(objects, "Fleet")["spec"]["template"]["spec"]["template"]["spec"]
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if v["name"] == "share"
    ]
    assert claims == ["our-models"]


def test_the_cruiser_is_bound_to_its_role_in_either_mode() -> None:
    cron = render("cruiser.mode=cronjob")
    binding = one(cron, "RoleBinding", "sd-allocator-cruiser")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sd-allocator-cruiser", "namespace": NAMESPACE}
    ]
    assert one(cron, "CronJob")["spec"]["schedule"] == "* * * * *"
    email = "sd-cruiser@my-project.iam.gserviceaccount.com"
    function = render(f"cruiser.functionServiceAccount={email}")
    assert not [o for o in function if o["kind"] == "CronJob"]
    binding = one(function, "RoleBinding", "sd-allocator-cruiser")
    assert binding["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": email}
    ]
    unbound = render()
    assert not [o for o in unbound if o["kind"] == "RoleBinding" and "cruiser" in str(o)]


# --- the allocator as the chart runs it ------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[FakeAgones]:
    with FakeAgones(namespace=NAMESPACE, replicas=1, backing=AppBacking(pod_app)) as fake:
        fake.wait_ready(1)
        yield fake


@pytest.fixture(scope="module")
def keys() -> Iterator[KeyServer]:
    server = KeyServer(KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def charted(
    cluster: FakeAgones, keys: KeyServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AllocatorProcess, RedisServer]]:
    """`sd-allocator serve` with exactly the Deployment's environment, but for the ports
    (tests share this machine) and the addresses of the fakes standing in for Google."""
    folder = tmp_path_factory.mktemp("charted")
    tls = make_tls_files(folder / "tls")
    redis = RedisServer(folder / "redis", tls=tls)
    redis.start()
    objects = render(f"allocator.iapAudience={AUDIENCE}", "allocator.admins={ops@example.com}")
    mounts = {REDIS_CA_MOUNT: tls.ca_cert.parent, "/tmp": folder / "tmp"}
    env = env_of(allocator_container(objects), {"url": redis.url}, mounts)
    allocator = AllocatorProcess(folder)
    allocator.env.update(env)
    allocator.env.update(
        SDA_PORT=str(allocator.port),
        SDA_METRICS_PORT=str(free_port()),
        SDA_IAP_JWKS_URL=keys.url,
        KUBECONFIG=str(cluster.write_kubeconfig(folder / "kubeconfig")),
    )
    allocator.start()
    yield allocator, redis
    allocator.stop()
    redis.kill()


def helm_test(allocator: AllocatorProcess) -> subprocess.CompletedProcess[str]:
    """The `helm test` pod's own script, aimed at this allocator instead of the Service."""
    pod = one(render(), "Pod", "sd-allocator-test-health")
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-c"]
    script = command[2].replace(f"http://sd-allocator.{NAMESPACE}.svc", allocator.url)
    assert allocator.url in script
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_the_charted_allocator_serves_a_signed_in_person(
    charted: tuple[AllocatorProcess, RedisServer], cluster: FakeAgones
) -> None:
    allocator, _ = charted
    signed = {ASSERTION_HEADER: token(KEY, "alice@example.com"), "host": HOST}
    answer = httpx.get(f"{allocator.url}/whoami", headers=signed, timeout=20)
    assert answer.status_code == 200, answer.text
    assert [v.name for v in cluster.snapshot() if v.labels.get("sd-allocator/user")]
    stranger = httpx.get(
        f"{allocator.url}/whoami", headers={**signed, "host": "evil.test"}, timeout=20
    )
    assert stranger.status_code == 400
    unsigned = httpx.get(f"{allocator.url}/whoami", headers={"host": HOST}, timeout=20)
    assert unsigned.status_code == 401


def test_helm_test_passes_on_a_ready_allocator_and_fails_without_redis(
    charted: tuple[AllocatorProcess, RedisServer],
) -> None:
    allocator, redis = charted
    passed = helm_test(allocator)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "healthz 200" in passed.stdout and "readyz 200" in passed.stdout
    redis.kill()
    failed = helm_test(allocator)
    assert failed.returncode == 1
    assert "readyz 503" in failed.stdout


def notes(*sets: str) -> str:
    """NOTES.txt as `helm install` prints it (a client-side dry run needs no cluster)."""
    command = [str(manifests.HELM), "install", "sd-allocator", str(CHART), "--dry-run=client"]
    command += [arg for pair in sets for arg in ("--set", pair)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return output.split("NOTES:", 1)[1]


def test_the_notes_say_what_is_missing_and_what_to_do_next() -> None:
    first = notes()
    assert "Agones is not installed" in first
    assert "NOT READY YET" in first and "allocator.iapAudience" in first
    assert "sd.example.com -> the address of the static IP" in first
    assert "helm test sd-allocator" in first
    configured = notes(f"allocator.iapAudience={AUDIENCE}")
    assert "NOT READY YET" not in configured
