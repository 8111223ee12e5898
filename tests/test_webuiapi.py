"""Scripts that drive the A1111 API with `webuiapi`, through the allocator, as people do.

`webuiapi` (the usual A1111 API client) talks to a real allocator in this process with the local
backend running real demo WebUIs. A script carries the identity the deployment uses on the
client's requests session: the email header (`header`), or the signed assertion that Google IAP
adds once it has accepted the script's OIDC bearer token (`iap`; fake_iap signs it here).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import webuiapi
from PIL import Image

from fake_iap import ASSERTION_HEADER, AUDIENCE, KeyServer, new_key, token
from tests.support.inprocess import InProcessAllocator
from tests.support.processes import header_for, wait_until

START_SECONDS = 90
DELAY = 1.0
"""Seconds one generation takes: long enough to watch its progress through the proxy."""
TRIES = 10
"""Generations a test may run to see one in progress: a machine too slow to look in time gets
another, so the verdict is the same on every machine."""
WEBUI = (
    "{python} -m demo_webui --port {port} --user-dir {user_dir} --outputs-dir {outputs_dir} "
    f"--delay {DELAY}"
)
KEY = new_key("k1")
NOT_SIGNED_IN = {
    "error": "Not signed in",
    "message": "No verified identity came with this request.",
}


def allocator_with(data_dir: Path, **settings: str) -> InProcessAllocator:
    # A real WebUI takes far longer than SDA_ALLOCATION_WAIT to start; with 0, every first
    # call here gets the answer that scripts get there.
    return InProcessAllocator.with_settings(
        data_dir, local_command=WEBUI, allocation_wait="0", **settings
    )


@pytest.fixture(scope="module")
def behind_header(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessAllocator]:
    with allocator_with(tmp_path_factory.mktemp("header"), identity="header") as allocator:
        yield allocator


@pytest.fixture(scope="module")
def iap_keys() -> Iterator[KeyServer]:
    server = KeyServer(KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def behind_iap(
    iap_keys: KeyServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessAllocator]:
    with allocator_with(
        tmp_path_factory.mktemp("iap"),
        identity="iap",
        iap_audience=AUDIENCE,
        iap_jwks_url=iap_keys.url,
    ) as allocator:
        yield allocator


def client(allocator: InProcessAllocator, identity: dict[str, str]) -> webuiapi.WebUIApi:
    """webuiapi set up as a script does. Its constructor has already asked for
    /sdapi/v1/scripts without the identity: refused, which webuiapi ignores."""
    api = webuiapi.WebUIApi(host="127.0.0.1", port=allocator.port)
    api.session.headers.update(identity)
    return api


def iap_assertion(email: str) -> dict[str, str]:
    """What reaches the allocator once IAP has accepted the script's bearer token."""
    return {ASSERTION_HEADER: token(KEY, email)}


def txt2img(api: webuiapi.WebUIApi, steps: int = 2) -> Any:
    return api.txt2img(prompt="a lighthouse", seed=7, steps=steps, width=64, height=64)


def refusal(call: Any) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of a webuiapi call that failed (it raises RuntimeError)."""
    with pytest.raises(RuntimeError) as failure:
        call()
    status, text = failure.value.args
    return status, json.loads(text)


def wait_for_webui(api: webuiapi.WebUIApi) -> None:
    """What a script does after a 503: ask again until its WebUI answers. Any call but a
    progress poll starts a WebUI when there is none; until it answers, 503 JSON says why."""

    def answers() -> bool:
        reply = api.session.get(f"{api.baseurl}/options")
        if reply.status_code != 503:
            assert reply.status_code == 200, reply.text
            return True
        assert reply.json()["state"] in ("allocating", "starting"), reply.text
        assert int(reply.headers["retry-after"]) > 0
        return False

    wait_until(answers, START_SECONDS, "the WebUI to answer through the proxy", interval=0.3)


def assert_first_call_starts_the_webui(api: webuiapi.WebUIApi) -> None:
    status, body = refusal(lambda: txt2img(api))
    assert status == 503
    assert body["state"] in ("allocating", "starting")
    assert body["retry_after"] > 0 and body["message"]
    wait_for_webui(api)


def assert_a_picture(result: Any) -> None:
    image = result.image
    assert isinstance(image, Image.Image)
    assert (image.format, image.size) == ("PNG", (64, 64))
    assert result.info["all_seeds"] == [7]


def test_a_script_with_the_email_header_starts_its_webui_and_gets_a_picture(
    behind_header: InProcessAllocator,
) -> None:
    api = client(behind_header, header_for("ann@example.com"))
    assert_first_call_starts_the_webui(api)
    assert_a_picture(txt2img(api))


def test_a_script_behind_iap_starts_its_webui_and_gets_a_picture(
    behind_iap: InProcessAllocator,
) -> None:
    api = client(behind_iap, iap_assertion("ivy@example.com"))
    assert_first_call_starts_the_webui(api)
    assert_a_picture(txt2img(api))
    idle = api.get_progress()
    assert (idle["progress"], idle["state"]["job_count"]) == (0, 0)


def watch_a_generation(
    generating: webuiapi.WebUIApi, watching: webuiapi.WebUIApi, steps: int
) -> list[dict[str, Any]]:
    """Polls get_progress() until one generation ends; returns the answers that showed it.
    Two clients: a requests session is not for two threads at once."""
    done = threading.Event()

    def generate() -> Any:
        try:
            return txt2img(generating, steps)
        finally:
            done.set()

    seen: list[dict[str, Any]] = []
    with ThreadPoolExecutor(1) as worker:
        result = worker.submit(generate)
        while not done.wait(0.02):
            progress = watching.get_progress()
            if progress["progress"] > 0:
                seen.append(progress)
        assert_a_picture(result.result())
    return seen


def test_a_script_reads_progress_through_the_proxy_while_its_generation_runs(
    behind_header: InProcessAllocator,
) -> None:
    identity = header_for("bea@example.com")
    generating, watching = client(behind_header, identity), client(behind_header, identity)
    wait_for_webui(generating)
    for steps in range(10, 10 + TRIES):  # each generation its own step count, to tell them apart
        seen = watch_a_generation(generating, watching, steps)
        if seen:
            break
    else:
        raise AssertionError(f"in {TRIES} generations, never saw one in progress")

    state = seen[-1]["state"]
    assert (state["job"], state["job_count"], state["sampling_steps"]) == (
        "scripts_txt2img",
        1,
        steps,
    )
    assert 0 < state["sampling_step"] <= steps
    assert all(0 < answer["progress"] <= 1 for answer in seen)
    assert watching.get_progress()["state"]["job_count"] == 0


def test_progress_polling_alone_never_starts_a_webui(behind_header: InProcessAllocator) -> None:
    """webuiapi returns whatever JSON comes back: a script that only polls gets the 503 body
    (state "none") in place of progress, and no GPU is taken for it."""
    api = client(behind_header, header_for("cal@example.com"))
    answer = api.get_progress()
    assert answer["state"] == "none" and "progress" not in answer
    status = api.session.get(f"{behind_header.url}/_allocator/status").json()
    assert status["state"] == "none"


@pytest.mark.parametrize("deployment", ["behind_header", "behind_iap"])
def test_a_script_without_identity_is_refused_with_json_not_a_login_page(
    deployment: str, request: pytest.FixtureRequest
) -> None:
    allocator: InProcessAllocator = request.getfixturevalue(deployment)
    api = client(allocator, {})
    assert refusal(lambda: txt2img(api)) == (401, NOT_SIGNED_IN)

    reply = api.session.get(f"{allocator.url}/_allocator/status", allow_redirects=False)
    assert reply.status_code == 401
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == NOT_SIGNED_IN
    # webuiapi does not look at the status of a progress poll: the refusal comes back as if it
    # were progress, and a script must check for it.
    assert api.get_progress() == NOT_SIGNED_IN
