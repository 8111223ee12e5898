"""What we send to Agones and how we read its answers, rule by rule."""

from __future__ import annotations

from allocator.backends.agones.gameservers import (
    allocation_request,
    is_gone,
    owner,
    pod_ip,
    port_named,
)
from tests.support.people import person

ALICE = person("alice@example.com")


def test_allocation_prefers_the_persons_own_gameserver_then_a_ready_one() -> None:
    body = allocation_request(ALICE, "sd-webui", 0.0)
    assert body["apiVersion"] == "allocation.agones.dev/v1"
    assert body["kind"] == "GameServerAllocation"
    mine, ready = body["spec"]["selectors"]
    assert mine == {
        "matchLabels": {"agones.dev/fleet": "sd-webui", "sd-allocator/user": ALICE.slug},
        "gameServerState": "Allocated",
    }
    assert ready == {"matchLabels": {"agones.dev/fleet": "sd-webui"}, "gameServerState": "Ready"}
    metadata = body["spec"]["metadata"]
    assert metadata["labels"] == {"sd-allocator/user": ALICE.slug}
    assert metadata["annotations"] == {
        "sd-allocator/email": "alice@example.com",
        "sd-allocator/allocated-at": "1970-01-01T00:00:00Z",
    }


def test_only_the_pod_ip_is_dialled_never_the_node() -> None:
    node_only = [
        {"type": "InternalIP", "address": "10.128.0.2"},
        {"type": "Hostname", "address": "gke-node"},
    ]
    assert pod_ip(node_only) is None
    assert pod_ip([*node_only, {"type": "PodIP", "address": "10.52.3.17"}]) == "10.52.3.17"
    assert pod_ip(None) is None


def test_ports_are_found_by_name_not_position() -> None:
    ports = [{"name": "default", "port": 7654}, {"name": "sd", "port": 7860}]
    assert port_named(ports, "sd") == 7860
    assert port_named(list(reversed(ports)), "sd") == 7860
    assert port_named(ports, "webui") is None
    assert port_named([{"name": "sd", "port": "7860"}], "sd") is None


def test_gone_means_deleted_terminating_or_terminal() -> None:
    assert not is_gone({"metadata": {}, "status": {"state": "Allocated"}})
    assert is_gone({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {}})
    for state in ("Unhealthy", "Shutdown", "Error"):
        assert is_gone({"metadata": {}, "status": {"state": state}})


def test_owner_reads_the_label_and_annotation() -> None:
    gameserver = {
        "metadata": {
            "labels": {"sd-allocator/user": ALICE.slug},
            "annotations": {"sd-allocator/email": ALICE.email},
        }
    }
    assert owner(gameserver) == (ALICE.slug, ALICE.email)
    assert owner({"metadata": {}}) == (None, None)
