"""GameServerAllocation: what the Agones extension server accepts, refuses and answers."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from kubernetes import client

from fake_agones import FakeAgones
from tests.fake_agones.conftest import (
    GSA,
    JSON,
    OUTPUTS_ANNOTATION,
    allocate,
    allocation,
    confirmed,
    content_type,
    error_body,
    get_gs,
)

URL = "/apis/allocation.agones.dev/v1/namespaces/default/gameserverallocations"
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
USER = "sd-allocator/user"


def test_allocation_turns_a_ready_gameserver_allocated_and_answers_with_its_pod_ip(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    before = {view.name: view for view in fake.snapshot()}
    answer = allocate(
        api,
        allocation(labels={USER: "alice-1a2b"}, annotations={"sd-allocator/email": "a@x.org"}),
    )

    assert answer["kind"] == "GameServerAllocation"
    assert answer["apiVersion"] == "allocation.agones.dev/v1"
    status = answer["status"]
    name = status["gameServerName"]
    assert answer["metadata"]["name"] == name
    assert answer["metadata"]["namespace"] == "default"
    assert status["state"] == "Allocated"
    assert status["source"] == "local"
    assert status["ports"] == [{"name": "sd", "port": fake.webui_port}]
    assert status["address"] == "10.128.0.2"
    assert status["nodeName"] == "gke-fake-gpu-node"
    assert [a["type"] for a in status["addresses"]] == ["InternalIP", "Hostname", "PodIP"]
    assert status["addresses"][2]["address"] == before[name].pod_ip
    assert status["metadata"]["labels"][USER] == "alice-1a2b"
    assert status["metadata"]["labels"]["agones.dev/fleet"] == "sd-webui"
    annotations = status["metadata"]["annotations"]
    assert annotations["sd-allocator/email"] == "a@x.org"
    assert annotations["agones.dev/sdk-version"] == "1.60.0"
    assert RFC3339_NANO.match(annotations["agones.dev/last-allocated"])
    assert answer["spec"]["selectors"][0]["gameServerState"] == "Ready"
    assert answer["spec"]["scheduling"] == "Packed"
    assert answer["spec"]["required"] == {}
    assert answer["spec"]["multiClusterSetting"] == {"policySelector": {}}

    confirmed(fake, name)  # then nothing changes it any more, however slow the machine
    stored = get_gs(api, name)
    assert stored["status"]["state"] == "Allocated"
    assert stored["metadata"]["labels"][USER] == "alice-1a2b"
    assert stored["metadata"]["annotations"] == {**annotations, OUTPUTS_ANNOTATION: "alice-1a2b"}
    assert int(stored["metadata"]["resourceVersion"]) > int(before[name].resource_version)


def test_without_a_content_type_agones_fails_in_plain_text_and_allocates_nothing(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    with pytest.raises(client.ApiException) as raised:
        api.create_namespaced_custom_object(**GSA, namespace="default", body=allocation())
    assert raised.value.status == 500
    assert (
        raised.value.body == "error parsing mediatype from a request header: mime: no media type\n"
    )
    assert content_type(raised.value) == "text/plain; charset=utf-8"
    assert {view.state for view in fake.snapshot()} == {"Ready"}


@pytest.mark.parametrize(
    ("content_type", "status", "text"),
    [
        ("text/plain", 500, "Could not find deserializer\n"),
        ("application", 500, "Could not find deserializer\n"),
        ("/json", 500, "error parsing mediatype from a request header: mime: no media type\n"),
        (
            "application/",
            500,
            "error parsing mediatype from a request header: mime: expected token after slash\n",
        ),
        ("application/json; charset=utf-8", 201, None),
        ("Application/JSON", 201, None),
    ],
)
def test_the_media_type_is_parsed_as_go_parses_it(
    http: httpx.Client, content_type: str, status: int, text: str | None
) -> None:
    response = http.post(URL, json=allocation(), headers={"Content-Type": content_type})
    assert response.status_code == status
    if text is not None:
        assert response.text == text
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_yaml_body_is_decoded_too(http: httpx.Client) -> None:
    body = "apiVersion: allocation.agones.dev/v1\nkind: GameServerAllocation\nspec: {}\n"
    response = http.post(URL, content=body, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 201
    assert response.json()["status"]["state"] == "Allocated"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "couldn't get version/kind; json parse error: unexpected end of JSON input"),
        (b"{nope", "couldn't get version/kind; json parse error: invalid character"),
        (b"[]", "couldn't get version/kind; json parse error: json: cannot unmarshal array"),
        (
            b'{"apiVersion": "v1", "kind": "Pod"}',
            'no kind "Pod" is registered for version "v1" in scheme',
        ),
        (
            b'{"spec": {"selectors": "all"}}',
            "json: cannot unmarshal string into Go struct field "
            "GameServerAllocation.spec.selectors of type []v1.GameServerSelector",
        ),
        (
            b'{"spec": {"metadata": {"labels": {"a": 1}}}}',
            "json: cannot unmarshal number into Go struct field "
            "GameServerAllocation.spec.metadata.labels of type string",
        ),
    ],
)
def test_a_body_that_does_not_decode_is_a_plain_500(
    http: httpx.Client, body: bytes, message: str
) -> None:
    response = http.post(URL, content=body, headers=JSON)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.text.startswith("error decoding body: " + message)


def test_apiversion_and_kind_default_and_unknown_fields_are_dropped(http: httpx.Client) -> None:
    response = http.post(URL, json={"spec": {"bogus": 1, "selectors": [{"x": 2}]}}, headers=JSON)
    assert response.status_code == 201
    answer = response.json()
    assert answer["kind"] == "GameServerAllocation"
    assert answer["apiVersion"] == "v1"  # the struct's starting TypeMeta, never overwritten
    assert answer["spec"]["selectors"] == [{"gameServerState": "Ready"}]


def test_selectors_in_order_prefer_the_persons_allocated_gameserver(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    alice = allocate(api, allocation(labels={USER: "alice"}))["status"]["gameServerName"]

    def mine_or_ready(person: str) -> list[dict[str, Any]]:
        return [
            {
                "matchLabels": {"agones.dev/fleet": "sd-webui", USER: person},
                "gameServerState": "Allocated",
            },
            {"matchLabels": {"agones.dev/fleet": "sd-webui"}, "gameServerState": "Ready"},
        ]

    again = allocate(api, allocation(*mine_or_ready("alice"), labels={USER: "alice"}))
    assert again["status"]["gameServerName"] == alice
    assert again["status"]["state"] == "Allocated"

    bob = allocate(api, allocation(*mine_or_ready("bob"), labels={USER: "bob"}))["status"][
        "gameServerName"
    ]
    assert bob != alice
    labels = {view.name: view.labels.get(USER) for view in fake.snapshot()}
    assert labels == {alice: "alice", bob: "bob"}


def test_reallocating_refreshes_last_allocated_every_time(api: client.CustomObjectsApi) -> None:
    first = allocate(api, allocation(labels={USER: "alice"}))
    name = first["status"]["gameServerName"]
    selector = {"matchLabels": {USER: "alice"}, "gameServerState": "Allocated"}
    second = allocate(api, allocation(selector))
    assert second["status"]["gameServerName"] == name
    stamps = [
        a["status"]["metadata"]["annotations"]["agones.dev/last-allocated"] for a in (first, second)
    ]
    assert stamps[0] != stamps[1]


def test_nothing_left_is_unallocated_with_an_empty_name_and_source(
    api: client.CustomObjectsApi,
) -> None:
    allocate(api, allocation())
    allocate(api, allocation())
    answer = allocate(api, allocation())
    assert answer["status"] == {"state": "UnAllocated", "gameServerName": "", "source": ""}
    assert "name" not in answer["metadata"]
    nobody = allocate(
        api, allocation({"matchLabels": {USER: "nobody"}, "gameServerState": "Allocated"})
    )
    assert nobody["status"]["state"] == "UnAllocated"


def test_only_gameservers_in_the_allocations_namespace_are_candidates(
    api: client.CustomObjectsApi,
) -> None:
    answer = allocate(api, allocation(), namespace="elsewhere")
    assert answer["status"]["state"] == "UnAllocated"
    assert answer["metadata"]["namespace"] == "elsewhere"


def test_match_expressions_select_as_label_selectors_do(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    alice = allocate(api, allocation(labels={USER: "alice"}))["status"]["gameServerName"]
    selector = {
        "matchExpressions": [
            {"key": USER, "operator": "In", "values": ["alice", "carol"]},
            {"key": "agones.dev/fleet", "operator": "Exists"},
        ],
        "gameServerState": "Allocated",
    }
    assert allocate(api, allocation(selector))["status"]["gameServerName"] == alice
    not_alice = {"matchExpressions": [{"key": USER, "operator": "DoesNotExist"}]}
    other = allocate(api, allocation(not_alice))["status"]["gameServerName"]
    assert other not in ("", alice)


def test_deprecated_required_and_preferred_become_selectors(api: client.CustomObjectsApi) -> None:
    body = allocation()
    body["spec"] = {
        "required": {"matchLabels": {"agones.dev/fleet": "sd-webui"}},
        "preferred": [{"matchLabels": {USER: "alice"}, "gameServerState": "Allocated"}],
    }
    answer = allocate(api, body)
    assert answer["status"]["state"] == "Allocated"
    assert answer["spec"]["required"] == {
        "matchLabels": {"agones.dev/fleet": "sd-webui"},
        "gameServerState": "Ready",
    }
    assert answer["spec"]["selectors"] == [
        {"matchLabels": {USER: "alice"}, "gameServerState": "Allocated"},
        {"matchLabels": {"agones.dev/fleet": "sd-webui"}, "gameServerState": "Ready"},
    ]


def test_distributed_scheduling_allocates_too(api: client.CustomObjectsApi) -> None:
    answer = allocate(api, allocation(scheduling="Distributed"))
    assert answer["status"]["state"] == "Allocated"
    assert answer["spec"]["scheduling"] == "Distributed"


def test_an_email_is_not_a_label_value(fake: FakeAgones, api: client.CustomObjectsApi) -> None:
    with pytest.raises(client.ApiException) as raised:
        allocate(api, allocation(labels={USER: "alice@example.com"}))
    assert raised.value.status == 422
    status = error_body(raised.value)
    assert status["kind"] == "Status"
    assert status["reason"] == "Invalid"
    assert status["code"] == 422
    assert status["message"].startswith(
        'GameServerAllocation.allocation.agones.dev "" is invalid: spec.metadata.labels: '
        'Invalid value: "alice@example.com": a valid label must be an empty string or consist '
        "of alphanumeric characters"
    )
    assert status["details"]["group"] == "allocation.agones.dev"
    assert status["details"]["kind"] == "GameServerAllocation"
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.metadata.labels"]
    assert status["details"]["causes"][0]["reason"] == "FieldValueInvalid"
    assert {view.state for view in fake.snapshot()} == {"Ready"}


def test_a_label_value_longer_than_63_characters_is_refused(api: client.CustomObjectsApi) -> None:
    with pytest.raises(client.ApiException) as raised:
        allocate(api, allocation(labels={USER: "a" * 64}))
    causes = error_body(raised.value)["details"]["causes"]
    assert causes[0]["message"].endswith("must be no more than 63 characters")


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"selectors": [{"gameServerState": "Shutdown"}]},
            "spec.selectors[0].gameServerState",
            'Invalid value: "Shutdown": GameServerState must be either Allocated or Ready',
        ),
        (
            {"scheduling": "Random"},
            "spec.scheduling",
            'Unsupported value: "Random": supported values: "Packed", "Distributed"',
        ),
        (
            {"selectors": [{"matchExpressions": [{"key": "a", "operator": "Near"}]}]},
            "spec.selectors[0].labelSelector",
            'Error converting label selector: "Near" is not a valid label selector operator',
        ),
        (
            {"metadata": {"annotations": {"bad key!": "x"}}},
            "spec.metadata.annotations",
            'Invalid value: "bad key!": name part must consist of alphanumeric characters',
        ),
    ],
)
def test_an_invalid_spec_is_422_with_a_cause_per_error(
    http: httpx.Client, spec: dict[str, Any], field: str, message: str
) -> None:
    body = {"apiVersion": "allocation.agones.dev/v1", "kind": "GameServerAllocation", "spec": spec}
    response = http.post(URL, json=body, headers=JSON)
    assert response.status_code == 422
    causes = response.json()["details"]["causes"]
    assert [cause["field"] for cause in causes] == [field]
    assert message in causes[0]["message"]


def test_several_errors_are_listed_in_one_message(http: httpx.Client) -> None:
    spec = {"scheduling": "Random", "selectors": [{"gameServerState": "Starting"}]}
    body = {"kind": "GameServerAllocation", "spec": spec}
    message = http.post(URL, json=body, headers=JSON).json()["message"]
    assert message.startswith('GameServerAllocation.allocation.agones.dev "" is invalid: [spec.')
    assert message.endswith("]")


def test_only_post_is_supported(http: httpx.Client) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = http.request(method, URL)
        assert response.status_code == 405
        assert response.text == "Method not supported\n"
    assert http.get(URL + "/some-name").text == "404 page not found\n"


def test_multi_cluster_allocation_without_a_policy_fails(http: httpx.Client) -> None:
    response = http.post(URL, json=allocation(multiClusterSetting={"enabled": True}), headers=JSON)
    assert response.status_code == 500
    assert response.text == "no multi-cluster allocation policy is specified\n"


def test_every_allocation_request_is_logged_with_its_outcome(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    allocate(api, allocation(labels={USER: "alice"}))
    with pytest.raises(client.ApiException):
        api.create_namespaced_custom_object(**GSA, namespace="default", body=allocation())
    first, second = fake.allocation_log()
    assert (first.status, first.outcome) == (201, "Allocated")
    assert first.game_server
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Authorization"] == "Bearer ***"
    assert json.loads(first.body)["spec"]["metadata"]["labels"] == {USER: "alice"}
    assert (second.status, second.outcome) == (500, "error")
    assert "Content-Type" not in second.headers
