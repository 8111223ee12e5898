"""GameServers through the Kubernetes API: get, list with selectors, delete, patch, shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from fake_agones import FakeAgones
from tests.fake_agones.conftest import (
    GS,
    WAIT,
    Event,
    Lingering,
    allocate,
    allocation,
    as_json,
    client_for,
    delete_gs,
    error_body,
    get_fleet,
    get_gs,
    list_gs,
    patch_gs,
    wire_until,
)
from tests.fake_agones.schemas import pruned_fields, validation_errors

USER = "sd-allocator/user"


def items(api: client.CustomObjectsApi, **options: Any) -> list[str]:
    return [gs["metadata"]["name"] for gs in list_gs(api, **options)["items"]]


def test_a_gameserver_is_found_by_name_and_a_missing_one_is_notfound(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    name = fake.snapshot()[0].name
    gs = get_gs(api, name)
    assert gs["metadata"]["name"] == name
    assert gs["kind"] == "GameServer"
    with pytest.raises(client.ApiException) as raised:
        get_gs(api, "sd-webui-gone")
    assert raised.value.status == 404
    assert error_body(raised.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'gameservers.agones.dev "sd-webui-gone" not found',
        "reason": "NotFound",
        "details": {"name": "sd-webui-gone", "group": "agones.dev", "kind": "gameservers"},
        "code": 404,
    }


def test_gameservers_look_like_a_fleets_gameservers(fake: FakeAgones) -> None:
    gs = fake.game_server(fake.snapshot()[0].name)
    assert gs is not None
    metadata = gs["metadata"]
    fleet, set_suffix, own_suffix = metadata["name"].rsplit("-", 2)
    assert fleet == "sd-webui"
    assert len(set_suffix) == len(own_suffix) == 5
    assert metadata["labels"]["agones.dev/gameserverset"] == f"sd-webui-{set_suffix}"
    assert metadata["ownerReferences"][0]["kind"] == "GameServerSet"
    assert metadata["finalizers"] == ["agones.dev/controller"]
    assert metadata["annotations"]["agones.dev/sdk-version"] == "1.60.0"
    assert metadata["annotations"]["agones.dev/ready-container-id"].startswith("containerd://")
    assert gs["spec"]["ports"][0] == {
        "container": "sd-webui",
        "containerPort": fake.webui_port,
        "name": "sd",
        "portPolicy": "None",
        "protocol": "TCP",
        "range": "default",
    }
    assert gs["status"]["ports"] == [{"name": "sd", "port": fake.webui_port}]
    assert gs["status"]["eviction"] == {"safe": "Never"}


def test_every_gameserver_state_is_valid_against_the_crd_schema(
    fake: FakeAgones, api: client.CustomObjectsApi, http: httpx.Client
) -> None:
    allocate(api, allocation(labels={USER: "alice"}, annotations={"sd-allocator/email": "a@b.c"}))
    gone = fake.snapshot()[-1].name
    fake.delete(gone)

    def enough(events: list[Event]) -> bool:
        return any(e["type"] == "DELETED" for e in events) and len(events) > 12

    seen = [e["object"] for e in wire_until(http, enough, resourceVersion="1")]
    states = {gs["status"]["state"] for gs in seen}
    assert {"Creating", "Starting", "Scheduled", "RequestReady", "Ready", "Allocated"} <= states
    assert any(gs["metadata"].get("deletionTimestamp") for gs in seen)
    for gs in seen:
        assert validation_errors("gameservers", gs) == []
        assert pruned_fields("gameservers", gs) == []
    fleet = get_fleet(api)
    assert validation_errors("fleets", fleet) == []
    assert pruned_fields("fleets", fleet) == []


def test_the_schema_check_catches_what_kube_would_refuse(fake: FakeAgones) -> None:
    gs = fake.game_server(fake.snapshot()[0].name)
    assert gs is not None
    gs["status"]["state"] = "Sleeping"
    gs["spec"]["ports"][0]["portPolicy"] = "Host"
    gs["spec"]["ports"][0]["hostPort"] = 0
    assert len(validation_errors("gameservers", gs)) == 3
    gs["status"]["podIP"] = "127.0.0.2"
    assert pruned_fields("gameservers", gs) == [".status.podIP"]


def test_lists_filter_by_label_selector(fake: FakeAgones, api: client.CustomObjectsApi) -> None:
    alice = allocate(api, allocation(labels={USER: "alice"}))["status"]["gameServerName"]
    everyone = sorted(view.name for view in fake.snapshot())
    (other,) = set(everyone) - {alice}
    assert items(api, label_selector=f"{USER}=alice") == [alice]
    assert items(api, label_selector=f"{USER}==alice") == [alice]
    assert items(api, label_selector=f"{USER}!=alice") == [other]
    assert items(api, label_selector=f"{USER} in (bob, alice)") == [alice]
    assert items(api, label_selector=f"{USER} notin (alice)") == [other]
    assert items(api, label_selector=USER) == [alice]
    assert items(api, label_selector=f"!{USER}") == [other]
    assert items(api, label_selector=f"agones.dev/fleet=sd-webui,{USER}") == [alice]
    assert items(api, label_selector="agones.dev/fleet=elsewhere") == []


def test_lists_filter_by_selectable_fields(fake: FakeAgones, api: client.CustomObjectsApi) -> None:
    alice = allocate(api, allocation())["status"]["gameServerName"]
    (other,) = {view.name for view in fake.snapshot()} - {alice}
    assert items(api, field_selector="status.state=Allocated") == [alice]
    assert items(api, field_selector="status.state!=Allocated") == [other]
    assert items(api, field_selector=f"metadata.name=={other}") == [other]
    assert items(
        api, field_selector="metadata.namespace=default,status.nodeName=gke-fake-gpu-node"
    ) == sorted([alice, other])
    everywhere = as_json(
        api.list_cluster_custom_object(**GS, field_selector="status.state=Allocated")
    )
    assert [gs["metadata"]["name"] for gs in everywhere["items"]] == [alice]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fieldSelector": "spec.container=sd-webui"}, "field label not supported: spec.container"),
        (
            {"fieldSelector": "status.state"},
            "invalid selector: 'status.state'; can't understand 'status.state'",
        ),
        ({"labelSelector": "a in b"}, "unable to parse requirement: found 'b', expected: '('"),
        ({"labelSelector": "a=b=c"}, "found '=', expected: ',' or 'end of string'"),
        ({"labelSelector": "bad key=x"}, "found 'key', expected: in, notin"),
        ({"labelSelector": "a=b@c"}, 'values[0][a]: Invalid value: "b@c"'),
        ({"watch": "yes"}, 'strconv.ParseBool: parsing "yes": invalid syntax'),
    ],
)
def test_a_bad_selector_is_a_bad_request(
    http: httpx.Client, params: dict[str, str], message: str
) -> None:
    response = http.get("/apis/agones.dev/v1/namespaces/default/gameservers", params=params)
    assert response.status_code == 400
    status = response.json()
    assert (status["reason"], status["code"]) == ("BadRequest", 400)
    assert message in status["message"]


def test_a_list_has_a_resource_version_and_pages_with_limit_and_continue(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    fake.scale(3)
    fake.wait_ready(3, timeout=WAIT)
    first = list_gs(api, limit=2)
    assert int(first["metadata"]["resourceVersion"]) > 0
    assert first["metadata"]["remainingItemCount"] == 1
    assert len(first["items"]) == 2
    rest = list_gs(api, limit=2, _continue=first["metadata"]["continue"])
    assert rest["metadata"]["continue"] == ""
    names = [gs["metadata"]["name"] for gs in first["items"] + rest["items"]]
    assert names == sorted(view.name for view in fake.snapshot())


def test_delete_keeps_the_gameserver_terminating_until_its_pod_is_gone(
    lingering: tuple[FakeAgones, Lingering], tmp_path: Path
) -> None:
    fake, pods = lingering
    api = client_for(fake, tmp_path)
    name = fake.snapshot()[0].name
    before = get_gs(api, name)
    answer = delete_gs(api, name)
    assert answer["metadata"]["deletionTimestamp"]
    assert answer["metadata"]["deletionGracePeriodSeconds"] == 0
    assert answer["metadata"]["finalizers"] == ["agones.dev/controller"]
    assert answer["metadata"]["generation"] == before["metadata"]["generation"] + 1
    again = delete_gs(api, name)
    assert again["metadata"]["deletionTimestamp"] == answer["metadata"]["deletionTimestamp"]
    assert get_gs(api, name)["metadata"]["deletionTimestamp"]  # its Pod is still there
    pods.let_go()
    fake.wait_until(lambda views: name not in {view.name for view in views}, timeout=WAIT)
    with pytest.raises(client.ApiException) as raised:
        delete_gs(api, name)
    assert raised.value.status == 404
    assert fake.delete_counts() == {name: 2}


def test_delete_preconditions_that_do_not_hold_are_a_conflict(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    view = fake.snapshot()[0]
    stale_uid = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="0000"))
    with pytest.raises(client.ApiException) as raised:
        delete_gs(api, view.name, body=stale_uid)
    assert raised.value.status == 409
    status = error_body(raised.value)
    assert status["reason"] == "Conflict"
    assert status["details"] == {"name": view.name, "group": "agones.dev", "kind": "gameservers"}
    assert status["message"].startswith(
        f'Operation cannot be fulfilled on gameservers.agones.dev "{view.name}": '
    )
    stored = fake.game_server(view.name)
    assert stored is not None
    uid = stored["metadata"]["uid"]
    assert status["message"].endswith(
        f"Precondition failed: UID in precondition: 0000, UID in object meta: {uid}"
    )
    stale_rv = {"preconditions": {"resourceVersion": "1"}}
    with pytest.raises(client.ApiException) as raised:
        delete_gs(api, view.name, body=stale_rv)
    assert raised.value.status == 409
    assert not fake.snapshot()[0].deleting
    gs = fake.game_server(view.name)
    assert gs is not None
    exact = {
        "preconditions": {
            "uid": gs["metadata"]["uid"],
            "resourceVersion": gs["metadata"]["resourceVersion"],
        }
    }
    delete_gs(api, view.name, body=exact)
    assert fake.delete_counts() == {view.name: 1}


def test_a_merge_patch_changes_labels_and_annotations(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    name = fake.snapshot()[0].name
    before = fake.game_server(name)
    assert before is not None
    patch = {"metadata": {"labels": {USER: "alice"}, "annotations": {"sd-allocator/seen": "now"}}}
    after = patch_gs(api, name, patch)
    assert after["metadata"]["labels"][USER] == "alice"
    assert after["metadata"]["annotations"]["sd-allocator/seen"] == "now"
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    removed = patch_gs(api, name, {"metadata": {"labels": {USER: None}}})
    assert USER not in removed["metadata"]["labels"]


def test_a_patch_is_checked_like_an_update(fake: FakeAgones, http: httpx.Client) -> None:
    name = fake.snapshot()[0].name
    url = f"/apis/agones.dev/v1/namespaces/default/gameservers/{name}"
    merge = {"Content-Type": "application/merge-patch+json"}
    bad_label = http.patch(url, json={"metadata": {"labels": {USER: "a@b"}}}, headers=merge)
    assert bad_label.status_code == 422
    assert bad_label.json()["message"].startswith(
        f'GameServer.agones.dev "{name}" is invalid: metadata.labels'
    )
    stale = http.patch(
        url, json={"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}}, headers=merge
    )
    assert stale.status_code == 409
    assert "the object has been modified" in stale.json()["message"]
    renamed = http.patch(url, json={"metadata": {"name": "other"}}, headers=merge)
    assert renamed.status_code == 400
    state = http.patch(url, json={"status": {"state": "Sleeping"}}, headers=merge)
    assert state.status_code == 422
    strategic = http.patch(
        url, json={}, headers={"Content-Type": "application/strategic-merge-patch+json"}
    )
    assert strategic.status_code == 415
    assert strategic.json()["reason"] == "UnsupportedMediaType"
    assert (
        http.patch(
            url, json=[], headers={"Content-Type": "application/json-patch+json"}
        ).status_code
        == 415
    )


def test_unmodelled_verbs_and_unknown_paths_answer_as_kube_does(http: httpx.Client) -> None:
    missing = http.get("/apis/agones.dev/v1/namespaces/default/nothing")
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "details": {},
        "code": 404,
    }
    create = http.post("/apis/agones.dev/v1/namespaces/default/gameservers", json={})
    assert create.status_code == 405
    assert create.json()["reason"] == "MethodNotAllowed"


def test_every_request_needs_the_bearer_token(fake: FakeAgones) -> None:
    url = fake.url + "/apis/agones.dev/v1/namespaces/default/gameservers"
    unauthorized = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {fake.token}"},
    ):
        response = httpx.get(url, headers=headers, timeout=WAIT)
        assert response.status_code == 401
        assert response.json() == unauthorized
    assert (
        httpx.post(fake.url + "/_fake/fleet", json={"replicas": 9}, timeout=WAIT).status_code == 401
    )
    lower_case = {"Authorization": f"bearer {fake.token}"}
    assert httpx.get(url, headers=lower_case, timeout=WAIT).status_code == 200


def test_the_fleet_reports_its_replicas(fake: FakeAgones, api: client.CustomObjectsApi) -> None:
    allocate(api, allocation())
    fleet = get_fleet(api)
    assert fleet["spec"]["replicas"] == 2
    status = fleet["status"]
    assert (status["replicas"], status["readyReplicas"], status["allocatedReplicas"]) == (2, 1, 1)
    with pytest.raises(client.ApiException) as raised:
        get_fleet(api, "other")
    assert error_body(raised.value)["message"] == 'fleets.agones.dev "other" not found'
