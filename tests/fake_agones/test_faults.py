"""Injected slowness and faults, through the Python controls and the /_fake/ endpoints."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from kubernetes import client
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from fake_agones import FakeAgones
from tests.fake_agones.conftest import JSON, WAIT, allocate, allocation, content_type

USER = "sd-allocator/user"
GSA_URL = "/apis/allocation.agones.dev/v1/namespaces/default/gameserverallocations"
GS_URL = "/apis/agones.dev/v1/namespaces/default/gameservers"
POD_IP_DELAY = 3.0


def test_latency_delays_every_request_without_queueing_them(
    fake: FakeAgones, http: httpx.Client
) -> None:
    latency, requests = 1.0, 6
    fake.set_latency(latency * 1000)

    def timed(_: int) -> tuple[int, float]:
        started = time.monotonic()
        status = http.get(GS_URL).status_code
        return status, time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(requests) as pool:
        answers = list(pool.map(timed, range(requests)))
    elapsed = time.monotonic() - started
    assert [status for status, _ in answers] == [200] * requests
    assert min(took for _, took in answers) >= latency  # every request is delayed
    # Queued, the last one would answer after all the delays added up, on any machine; here
    # all of them wait at once. The bound comes from that alternative, not from this machine's
    # speed: only a machine needing 5 s more for six loopback requests could break it.
    assert elapsed < requests * latency

    fake.set_latency(3_600_000)  # an hour: a control that waited would never answer
    assert http.get("/_fake/gameservers", timeout=WAIT).status_code == 200


def test_failed_allocations_answer_as_agones_does_and_change_nothing(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    fake.fail_allocations(2, status=500, message="could not update the selected GameServer")
    for _ in range(2):
        with pytest.raises(client.ApiException) as raised:
            allocate(api, allocation())
        assert raised.value.status == 500
        assert raised.value.body == "could not update the selected GameServer\n"
        assert content_type(raised.value) == "text/plain; charset=utf-8"
    assert {view.state for view in fake.snapshot()} == {"Ready"}
    assert allocate(api, allocation())["status"]["state"] == "Allocated"
    assert [record.fault for record in fake.allocation_log()] == ["fail", "fail", ""]


def test_an_invalid_request_gets_its_real_answer_and_leaves_the_fault_queued(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    fake.contend_allocations(1)
    with pytest.raises(client.ApiException) as raised:
        allocate(api, allocation(labels={USER: "not@a.label"}))
    assert raised.value.status == 422
    assert allocate(api, allocation())["status"]["state"] == "Contention"


def test_a_hanging_allocation_never_answers_and_allocates_nothing(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    fake.hang_allocations(1)
    with pytest.raises(ReadTimeoutError):  # no answer before the client gave up
        api.create_namespaced_custom_object(
            "allocation.agones.dev",
            "v1",
            "default",
            "gameserverallocations",
            allocation(),
            _headers=dict(JSON),
            _request_timeout=0.5,
        )
    assert {view.state for view in fake.snapshot()} == {"Ready"}
    assert allocate(api, allocation())["status"]["state"] == "Allocated"
    assert fake.allocation_log()[0].outcome == "hang"


def test_contention_is_a_201_without_a_gameserver(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    fake.contend_allocations(1)
    answer = allocate(api, allocation())
    assert answer["status"] == {"state": "Contention", "gameServerName": "", "source": ""}
    assert "name" not in answer["metadata"]
    assert {view.state for view in fake.snapshot()} == {"Ready"}


def test_a_lost_response_still_allocated_the_gameserver(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    fake.lose_allocation_responses(1)
    with pytest.raises(ProtocolError):  # the connection ended without an answer
        allocate(api, allocation(labels={USER: "alice"}))
    orphans = [view for view in fake.snapshot() if view.labels.get(USER) == "alice"]
    assert [view.state for view in orphans] == ["Allocated"]
    (record,) = fake.allocation_log()
    assert (record.outcome, record.game_server) == ("lost", orphans[0].name)


def test_a_delayed_pod_ip_appears_some_time_after_ready(
    fake: FakeAgones, api: client.CustomObjectsApi
) -> None:
    fake.set_pod_ip_delay(3600)  # held back until the test lets them come
    old = {view.name for view in fake.snapshot()}
    for name in old:
        fake.delete(name)
    fake.wait_until(
        lambda vs: (
            len(vs) == 2 and not old & {v.name for v in vs} and {v.state for v in vs} == {"Ready"}
        ),
        timeout=WAIT,
    )
    assert {view.pod_ip for view in fake.snapshot()} == {None}
    answer = allocate(api, allocation())
    assert [a["type"] for a in answer["status"]["addresses"]] == ["InternalIP", "Hostname"]
    assert {view.pod_ip for view in fake.snapshot()} == {None}
    fake.set_pod_ip_delay(0)
    views = fake.wait_until(lambda vs: all(v.pod_ip for v in vs), timeout=WAIT)
    assert {view.state for view in views} == {"Ready", "Allocated"}


def test_a_crashed_webui_turns_its_gameserver_unhealthy_and_it_is_replaced(
    fake: FakeAgones,
) -> None:
    crashed = fake.snapshot()[0].name
    assert fake.crash(crashed)
    fake.wait_until(lambda vs: crashed not in {v.name for v in vs} and len(vs) == 2, timeout=WAIT)
    assert not fake.crash("sd-webui-nobody")


def test_the_http_controls_do_what_the_python_ones_do(fake: FakeAgones, http: httpx.Client) -> None:
    names = sorted(view.name for view in fake.snapshot())
    assert sorted(gs["name"] for gs in http.get("/_fake/gameservers").json()) == names
    assert len(http.get("/_fake/ready", params={"count": 2}).json()) == 2
    assert http.get("/_fake/ready", params={"count": 3, "timeout": 0.2}).status_code == 504

    assert http.post("/_fake/faults", json={"kind": "contention", "count": 1}).status_code == 200
    assert http.post("/_fake/faults", json={"kind": "melt"}).status_code == 400
    answer = http.post(GSA_URL, json=allocation(), headers=JSON).json()
    assert answer["status"]["state"] == "Contention"
    http.post("/_fake/faults", json={"kind": "fail", "status": 503, "message": "busy"})
    failed = http.post(GSA_URL, json=allocation(), headers=JSON)
    assert (failed.status_code, failed.text) == (503, "busy\n")
    assert [r["outcome"] for r in http.get("/_fake/allocations").json()] == ["Contention", "error"]

    assert http.post(f"/_fake/gameservers/{names[0]}/unhealthy").json() == {"ok": True}
    assert http.post(f"/_fake/gameservers/{names[1]}/shutdown").json() == {"ok": True}
    assert http.post("/_fake/gameservers/nobody/crash").status_code == 404
    fake.wait_until(lambda vs: not set(names) & {v.name for v in vs} and len(vs) == 2, timeout=WAIT)
    fresh = fake.wait_ready(2, timeout=WAIT)[0].name
    assert http.delete(f"/_fake/gameservers/{fresh}").json() == {"ok": True}
    assert http.get("/_fake/deletes").json() == {}  # only API DELETEs are counted

    assert http.post("/_fake/fleet", json={"replicas": 3}).json() == {"ok": True}
    fake.wait_ready(3, timeout=WAIT)
    assert http.post("/_fake/latency", json={"ms": 1}).status_code == 200
    assert http.post("/_fake/pod-ip-delay", json={"seconds": 0}).status_code == 200
    assert http.post("/_fake/watch-history", json={"size": 10}).status_code == 200
    assert http.post("/_fake/watches/close").json() == {"closed": 0}
