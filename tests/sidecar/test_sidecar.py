"""The sidecar keeps its promises to Agones and to the person the pod is given to.

Real processes: ``python -m sidecar`` against a fake Agones SDK server (`tests.sidecar.fake_sdk`,
in the test's event loop) and a real ``python -m demo_webui``, one for the file (it takes seconds
to start) plus one that the first test starts late and kills.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.outputs import SUBFOLDERS
from sidecar.ownership import USER_LABEL
from tests.sidecar.fake_sdk import FakeAgonesSDK
from tests.sidecar.processes import DemoWebUI, SidecarProcess, sidecar_environment

PERIOD = 0.2
"""HEALTH_PERIOD_SECONDS here: short, so that missing pings show quickly."""
ALICE = "alice-example-com-0123456789abcdef"
BOB = "bob-example-com-fedcba9876543210"

StartSidecar = Callable[..., SidecarProcess]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder standing in for the pod's file systems: WebUI folders and shared volumes."""
    return tmp_path_factory.mktemp("pod")


@pytest.fixture(scope="module")
def webui(pod: Path) -> Iterator[DemoWebUI]:
    started = DemoWebUI(pod).start()
    try:
        yield started.wait_until_it_answers()
    finally:
        started.kill()


@pytest.fixture
def share(pod: Path, request: pytest.FixtureRequest) -> Path:
    """This test's shared volume, inside the folder the WebUI may save into."""
    name: str = request.node.name
    folder = pod / "shares" / name.replace("/", "_")
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
async def sdk() -> AsyncIterator[FakeAgonesSDK]:
    server = await FakeAgonesSDK().start()
    yield server
    await server.stop()


@pytest.fixture
def start_sidecar(tmp_path: Path) -> Iterator[StartSidecar]:
    started: list[SidecarProcess] = []

    def start(sdk: FakeAgonesSDK, webui_url: str, share: Path, **settings: str) -> SidecarProcess:
        sidecar = SidecarProcess(
            tmp_path / f"sidecar-{len(started)}.log",
            AGONES_SDK_HTTP_PORT=str(sdk.port),
            WEBUI_URL=webui_url,
            SHARE_DIR=str(share),
            HEALTH_PERIOD_SECONDS=str(PERIOD),
            LOG_LEVEL="DEBUG",
            **settings,
        )
        started.append(sidecar.start())
        return sidecar

    yield start
    for sidecar in started:
        sidecar.stop()


async def options_of(webui: DemoWebUI) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=webui.url, timeout=10) as client:
        response = await client.get("/sdapi/v1/options")
    response.raise_for_status()
    options: dict[str, Any] = response.json()
    return options


def contents(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def updates_seen(sidecar: SidecarProcess, count: int) -> None:
    await sidecar.wait_for_log("GameServer update:", count)


# --- Ready and healthy ----------------------------------------------------------------------


async def test_ready_only_once_the_webui_answers_and_no_health_pings_once_it_stops(
    pod: Path, sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    late_webui = DemoWebUI(pod)
    sidecar = start_sidecar(sdk, late_webui.url, share)

    await sidecar.wait_for_log("waiting for the WebUI")
    await sdk.wait_for("/health", count=3)  # while it starts, Agones hears the pod is alive
    assert sdk.count("/ready") == 0

    launched = time.monotonic()
    late_webui.start()
    try:
        ready = await sdk.wait_for("/ready", within=60)
        assert ready.at > launched
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{late_webui.url}/internal/ping")).status_code == 200
        await sdk.wait_for("/health", count=sdk.count("/health") + 3)
    finally:
        late_webui.kill()

    await sidecar.wait_for_log("has not answered /internal/ping")
    pings = sdk.count("/health")
    await asyncio.sleep(5 * PERIOD)  # five periods in which a ping would have come
    assert sdk.count("/health") == pings
    assert sdk.count("/ready") == 1
    assert sidecar.running(), "the sidecar must keep watching, not exit"


async def test_a_webui_that_never_starts_gets_no_health_pings_after_the_start_timeout(
    sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    nowhere = DemoWebUI(share)  # never started
    sidecar = start_sidecar(sdk, nowhere.url, share, WEBUI_START_TIMEOUT_SECONDS="0.5")

    await sidecar.wait_for_log("has not answered in 0.5 s; no more health pings")
    pings = sdk.count("/health")
    assert pings >= 1
    await asyncio.sleep(5 * PERIOD)
    assert sdk.count("/health") == pings
    assert sdk.count("/ready") == 0 and sidecar.running()


async def test_the_sdk_server_may_start_late(
    webui: DemoWebUI, share: Path, start_sidecar: StartSidecar
) -> None:
    sdk = FakeAgonesSDK()  # not listening yet: connections are refused
    sidecar = start_sidecar(sdk, webui.url, share)
    for failure in ("POST /ready failed", "health ping failed", "watching the GameServer failed"):
        await sidecar.wait_for_log(failure)

    await sdk.start()
    try:
        await sdk.wait_for("/ready")
        await sdk.wait_for("/health")
        await sdk.allocate({USER_LABEL: ALICE})
        await sidecar.wait_for_log("now saves")
    finally:
        await sdk.stop()


# --- the person's folder --------------------------------------------------------------------


async def test_the_label_sends_the_persons_pictures_to_their_folder(
    webui: DemoWebUI, sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    sidecar = start_sidecar(sdk, webui.url, share)
    await sdk.wait_for("/ready")
    await sdk.allocate({USER_LABEL: ALICE})
    await sidecar.wait_for_log("now saves")

    outputs = share / "users" / ALICE / "outputs"
    for folder in [outputs, *(outputs / name for name in SUBFOLDERS.values())]:
        assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o770, folder
    options = await options_of(webui)
    assert options["outdir_samples"] == ""
    assert options["outdir_txt2img_samples"] == str(outputs / "txt2img-images")
    assert options["outdir_save"] == str(outputs / "saved")

    async with httpx.AsyncClient(base_url=webui.url, timeout=30) as client:
        body = {"prompt": "alice's cat", "seed": 11, "steps": 1, "width": 64, "height": 64}
        generated = await client.post("/sdapi/v1/txt2img", json=body)
        [picture] = (outputs / "txt2img-images").glob("*-11.png")
        assert base64.b64decode(generated.json()["images"][0]) == picture.read_bytes()
        assert (await client.get(f"/gradio_api/file={picture}")).status_code == 200


async def test_the_same_person_again_changes_nothing(
    webui: DemoWebUI, sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    sidecar = start_sidecar(sdk, webui.url, share)
    await sdk.wait_for("/ready")
    await sdk.allocate({USER_LABEL: ALICE})
    await sidecar.wait_for_log("now saves")
    seen = sidecar.log().count("GameServer update:")

    await sdk.set_label(USER_LABEL, ALICE)
    await sdk.end_streams()  # and the reconnected stream starts with the same GameServer
    await updates_seen(sidecar, seen + 2)

    assert sidecar.log().count("now saves") == 1
    assert sidecar.log().count("is given to") == 1
    assert sdk.count("/shutdown") == 0


async def test_a_label_set_while_the_watch_was_down_is_seen_after_reconnecting(
    webui: DemoWebUI, sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    sidecar = start_sidecar(sdk, webui.url, share)
    await sdk.wait_for("/ready")
    await sdk.wait_until(lambda: sdk.watch_connections == 1)  # watching starts apart from /ready
    await sdk.end_streams()
    await sdk.allocate({USER_LABEL: ALICE})  # before the sidecar is back
    await sidecar.wait_for_log("now saves")
    assert sdk.watch_connections == 2


async def test_a_second_person_never_gets_the_pod(
    webui: DemoWebUI, sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    sidecar = start_sidecar(sdk, webui.url, share)
    await sdk.wait_for("/ready")
    await sdk.allocate({USER_LABEL: ALICE})
    await sidecar.wait_for_log("now saves")
    alices = await options_of(webui)

    await sdk.set_label(USER_LABEL, BOB)
    await sdk.wait_for("/shutdown")

    assert await options_of(webui) == alices
    assert not (share / "users" / BOB).exists()
    assert "not switching, asking Agones to shut the pod down" in sidecar.log()
    seen = sidecar.log().count("GameServer update:")
    await sdk.set_label(USER_LABEL, "carol-0123456789abcdef")
    await updates_seen(sidecar, seen + 1)
    assert sdk.count("/shutdown") == 1
    assert sidecar.running()


HOSTILE_LABELS = {
    "parent folder": "../x",
    "dot-dot": "..",
    "a path": "x/../../etc",
    "too long": "a" * 64,
    "uppercase": "Alice",
    "newline": "alice\n",
}


@pytest.mark.parametrize("label", HOSTILE_LABELS.values(), ids=HOSTILE_LABELS.keys())
async def test_a_hostile_label_never_moves_the_outputs_but_still_claims_the_pod(
    label: str, webui: DemoWebUI, sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    before = await options_of(webui)
    sidecar = start_sidecar(sdk, webui.url, share)
    await sdk.wait_for("/ready")
    await sdk.allocate({USER_LABEL: label})
    await sidecar.wait_for_log("refusing to point the outputs")

    assert await options_of(webui) == before
    assert contents(share) == [], "nothing may be created for a hostile label"
    assert sdk.count("/shutdown") == 0 and sidecar.running()

    await sdk.set_label(USER_LABEL, ALICE)  # a valid label later is a second owner
    await sdk.wait_for("/shutdown")
    assert await options_of(webui) == before


@pytest.mark.parametrize("target", ["outside", "another person's folder"])
async def test_a_symlink_planted_under_users_is_not_followed(
    target: str, webui: DemoWebUI, sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    elsewhere = share.parent / f"{share.name}-elsewhere"  # the WebUI would accept it
    if target != "outside":
        elsewhere = share / "users" / BOB
    elsewhere.mkdir(parents=True)
    (share / "users").mkdir(exist_ok=True)
    (share / "users" / ALICE).symlink_to(elsewhere)
    before = await options_of(webui)

    sidecar = start_sidecar(sdk, webui.url, share)
    await sdk.wait_for("/ready")
    await sdk.allocate({USER_LABEL: ALICE})
    await sidecar.wait_for_log("refusing to point the outputs")

    assert await options_of(webui) == before
    assert contents(elsewhere) == []


# --- settings and signals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("AGONES_SDK_HTTP_PORT", "8o80"), ("SHARE_DIR", "share"), ("HEALTH_PERIOD_SECONDS", "-5")],
)
def test_a_bad_setting_stops_it_at_start_with_one_line_and_exit_2(name: str, value: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sidecar"],
        env=sidecar_environment(**{name: value}),
        capture_output=True,
        timeout=30,
    )
    assert run.returncode == 2
    [line] = run.stderr.decode().splitlines()
    assert line.startswith(f"sidecar: bad setting {name}={value!r}: ")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_a_signal_stops_it_within_a_second_while_it_serves(
    signum: signal.Signals,
    webui: DemoWebUI,
    sdk: FakeAgonesSDK,
    share: Path,
    start_sidecar: StartSidecar,
) -> None:
    sidecar = start_sidecar(sdk, webui.url, share)
    await sdk.wait_for("/ready")
    await sdk.allocate({USER_LABEL: ALICE})
    await sidecar.wait_for_log("now saves")

    code, took = await asyncio.to_thread(sidecar.signal_and_wait, signum)
    assert (code, took < 1.0) == (0, True), took


async def test_sigterm_stops_it_within_a_second_while_nothing_answers(
    share: Path, start_sidecar: StartSidecar
) -> None:
    absent_sdk = FakeAgonesSDK()  # never listens
    sidecar = start_sidecar(absent_sdk, DemoWebUI(share).url, share)
    await sidecar.wait_for_log("watching the GameServer failed")
    await sidecar.wait_for_log("waiting for the WebUI")

    code, took = await asyncio.to_thread(sidecar.signal_and_wait, signal.SIGTERM)
    assert (code, took < 1.0) == (0, True), took
