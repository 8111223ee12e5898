"""The objects a GKE cluster running Agones 1.60.0 would hold, as JSON.

Shapes come from agones ``pkg/apis/agones/v1/gameserver.go`` (GameServer, ApplyDefaults:
sdk-version annotation, finalizer ``agones.dev/controller``, health 5/3/5, sdkServer
9357/9358/Info, eviction Never, port range ``default``, status ports from containerPort for
``portPolicy: None``), ``fleet.go`` and the GameServerSet controller (labels
``agones.dev/fleet`` and ``agones.dev/gameserverset``, an owner reference, names made by
``generateName`` with kube's 5-character suffix from k8s.io/apimachinery ``util/rand``).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

Json = dict[str, Any]

GROUP = "agones.dev"
API_VERSION = "agones.dev/v1"
ALLOCATION_GROUP = "allocation.agones.dev"
SDK_VERSION = "1.60.0"
FINALIZER = "agones.dev/controller"
FLEET_LABEL = "agones.dev/fleet"
GAMESERVERSET_LABEL = "agones.dev/gameserverset"
LAST_ALLOCATED = "agones.dev/last-allocated"
READY_CONTAINER_ID = "agones.dev/ready-container-id"
CONTAINER = "sd-webui"
PORT_NAME = "sd"

NODE_NAME = "gke-fake-gpu-node"
NODE_ADDRESSES: list[Json] = [
    {"address": "10.128.0.2", "type": "InternalIP"},
    {"address": NODE_NAME, "type": "Hostname"},
]
NODE_ADDRESS = "10.128.0.2"

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


def new_uid() -> str:
    return str(uuid.uuid4())


def timestamp() -> str:
    """metav1.Time: RFC 3339, whole seconds, UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp_nano() -> str:
    """Go's time.Now().MarshalText() in UTC: RFC 3339 with trailing zeros trimmed."""
    now = datetime.now(UTC)
    fraction = f"{now.microsecond:06d}".rstrip("0")
    return now.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def pod_template(port: int) -> Json:
    return {
        "metadata": {"creationTimestamp": None, "labels": {"app": "sd-webui"}},
        "spec": {
            "containers": [
                {
                    "name": CONTAINER,
                    "image": "us-docker.pkg.dev/sd-allocator/images/sd-webui:latest",
                    "resources": {
                        "limits": {"nvidia.com/gpu": "1"},
                        "requests": {"cpu": "2", "memory": "12Gi"},
                    },
                },
                {
                    "name": "sidecar",
                    "image": "us-docker.pkg.dev/sd-allocator/images/sidecar:latest",
                    "env": [{"name": "WEBUI_PORT", "value": str(port)}],
                    "resources": {},
                },
            ],
        },
    }


def game_server_spec(port: int) -> Json:
    return {
        "container": CONTAINER,
        "eviction": {"safe": "Never"},
        "health": {"failureThreshold": 3, "initialDelaySeconds": 5, "periodSeconds": 5},
        "ports": [
            {
                "container": CONTAINER,
                "containerPort": port,
                "name": PORT_NAME,
                "portPolicy": "None",
                "protocol": "TCP",
                "range": "default",
            }
        ],
        "scheduling": "Packed",
        "sdkServer": {"grpcPort": 9357, "httpPort": 9358, "logLevel": "Info"},
        "template": pod_template(port),
    }


def game_server(namespace: str, fleet: str, owner: Json, port: int) -> Json:
    """A GameServer as the GameServerSet controller creates it, defaulted, state Creating."""
    set_name = owner["name"]
    return {
        "apiVersion": API_VERSION,
        "kind": "GameServer",
        "metadata": {
            "annotations": {"agones.dev/sdk-version": SDK_VERSION},
            "creationTimestamp": timestamp(),
            "finalizers": [FINALIZER],
            "generateName": f"{set_name}-",
            "generation": 1,
            "labels": {FLEET_LABEL: fleet, GAMESERVERSET_LABEL: set_name},
            "name": f"{set_name}-{suffix()}",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "blockOwnerDeletion": True,
                    "controller": True,
                    "kind": "GameServerSet",
                    "name": set_name,
                    "uid": owner["uid"],
                }
            ],
            "uid": new_uid(),
        },
        "spec": game_server_spec(port),
        "status": {
            "address": "",
            "addresses": None,
            "eviction": {"safe": "Never"},
            "nodeName": "",
            "players": None,
            "ports": None,
            "reservedUntil": None,
            "state": "Creating",
        },
    }


def scheduled_status(status: Json, port: int, pod_ip: str | None) -> None:
    """What the controller writes once the Pod has a node (and, from v1.58, its Pod IP)."""
    status["nodeName"] = NODE_NAME
    status["address"] = NODE_ADDRESS
    status["ports"] = [{"name": PORT_NAME, "port": port}]
    status["addresses"] = addresses(pod_ip)


def addresses(pod_ip: str | None) -> list[Json]:
    node = [dict(address) for address in NODE_ADDRESSES]
    return [*node, {"address": pod_ip, "type": "PodIP"}] if pod_ip else node


def container_id() -> str:
    return "containerd://" + secrets.token_hex(32)


def fleet(namespace: str, name: str, replicas: int, port: int) -> Json:
    return {
        "apiVersion": API_VERSION,
        "kind": "Fleet",
        "metadata": {
            "creationTimestamp": timestamp(),
            "generation": 1,
            "name": name,
            "namespace": namespace,
            "uid": new_uid(),
        },
        "spec": {
            "replicas": replicas,
            "scheduling": "Packed",
            "strategy": {
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                "type": "RollingUpdate",
            },
            "template": {
                "metadata": {"creationTimestamp": None},
                "spec": game_server_spec(port),
            },
        },
        "status": {
            "allocatedReplicas": 0,
            "players": None,
            "readyReplicas": 0,
            "replicas": 0,
            "reservedReplicas": 0,
        },
    }


def labels_of(obj: Json) -> dict[str, str]:
    labels: dict[str, str] = obj["metadata"].get("labels") or {}
    return labels


def state_of(obj: Json) -> str:
    state: str = (obj.get("status") or {}).get("state", "")
    return state


def is_being_deleted(obj: Json) -> bool:
    """GameServer.IsBeingDeleted: a deletionTimestamp, or state Shutdown."""
    return bool(obj["metadata"].get("deletionTimestamp")) or state_of(obj) == "Shutdown"


def pod_ip_of(obj: Json) -> str | None:
    for address in (obj.get("status") or {}).get("addresses") or []:
        if address.get("type") == "PodIP":
            found: str = address["address"]
            return found
    return None
