"""The sidecar keeps its promises to Agones and to the person the pod is given to.

Real processes: ``python -m sidecar`` against a fake Agones SDK server (`tests.sidecar.fake_sdk`,
in the test's event loop) and a real ``python -m demo_webui``, one for the file (it takes seconds
to start) plus one that the first test starts late and kills. The WebUI is set up as in a pod: it
saves under the outputs link in a pod-local ``workspace`` folder and is started with
``--hide-ui-dir-config``; every test starts without the link and with its own shared volume.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sidecar.outputs import SUBFOLDERS
from sidecar.ownership import OUTPUTS_ANNOTATION, OUTPUTS_ANNOTATION_SEEN_AS, USER_LABEL
from tests.sidecar.fake_sdk import FakeAgonesSDK
from tests.sidecar.fake_webui import FakeWebUI
from tests.sidecar.processes import DemoWebUI, SidecarProcess, sidecar_environment
from tests.support.processes import free_port

PERIOD = 0.2
"""HEALTH_PERIOD_SECONDS here: short, so that missing pings show quickly."""
PERIODS = 5
"""Checks of the WebUI that must pass without a health ping to show that pings stopped."""
STOP_WAIT = 30.0
"""Seconds a signalled sidecar may take to exit here: far more than any machine needs, far less
than the timers and requests it is given to wait for (`LONG`)."""
LONG = "300"
"""HEALTH_PERIOD_SECONDS and WEBUI_PING_TIMEOUT_SECONDS in the signal tests."""
ALICE = "alice-example-com-0123456789abcdef"
BOB = "bob-example-com-fedcba9876543210"
CONFIRM = "/metadata/annotation"

StartSidecar = Callable[..., SidecarProcess]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder standing in for the pod's file systems: WebUI folders and shared volumes."""
    return tmp_path_factory.mktemp("pod").resolve()


@pytest.fixture(scope="module")
def workspace(pod: Path) -> Path:
    """The pod-local volume that the WebUI and the sidecar both mount."""
    folder = pod / "workspace"
    folder.mkdir()
    return folder


@pytest.fixture
def link(workspace: Path) -> Path:
    """OUTPUTS_LINK, which the file's WebUI saves under; each test starts without it."""
    path = workspace / "outputs"
    if path.is_symlink():
        path.unlink()
    return path


@pytest.fixture
def unassigned(workspace: Path) -> Path:
    return workspace / "unassigned-outputs"


@pytest.fixture(scope="module")
def webui(pod: Path, workspace: Path) -> Iterator[DemoWebUI]:
    started = DemoWebUI(pod, workspace / "outputs").start()
    try:
        yield started.wait_until_it_answers()
    finally:
        started.kill()


@pytest.fixture
def share(pod: Path, request: pytest.FixtureRequest) -> Path:
    """This test's shared volume."""
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
def start_sidecar(tmp_path: Path, link: Path, unassigned: Path) -> Iterator[StartSidecar]:
    started: list[SidecarProcess] = []

    def start(sdk: FakeAgonesSDK, webui_url: str, share: Path, **settings: str) -> SidecarProcess:
        defaults = {
            "AGONES_SDK_HTTP_PORT": str(sdk.port),
            "WEBUI_URL": webui_url,
            "SHARE_DIR": str(share),
            "OUTPUTS_LINK": str(link),
            "UNASSIGNED_DIR": str(unassigned),
            "HEALTH_PERIOD_SECONDS": str(PERIOD),
            "LOG_LEVEL": "DEBUG",
        }
        sidecar = SidecarProcess(
            tmp_path / f"sidecar-{len(started)}.log", **{**defaults, **settings}
        )
        started.append(sidecar.start())
        return sidecar

    yield start
    for sidecar in started:
        sidecar.stop()


def nowhere() -> str:
    """The URL of a WebUI that never starts."""
    return f"http://127.0.0.1:{free_port()}"


def target_of(link: Path) -> Path:
    return Path(os.readlink(link))


def contents(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def outputs_of(share: Path, slug: str) -> Path:
    return share / "users" / slug / "outputs"


async def generate(webui: DemoWebUI, seed: int) -> bytes:
    """One picture through A1111's API; its PNG."""
    async with httpx.AsyncClient(base_url=webui.url, timeout=30) as client:
        body = {"prompt": f"picture {seed}", "seed": seed, "steps": 1, "width": 64, "height": 64}
        response = await client.post("/sdapi/v1/txt2img", json=body)
    response.raise_for_status()
    return base64.b64decode(response.json()["images"][0])


async def served(webui: DemoWebUI, path: Path) -> int:
    """The status with which the WebUI's Gradio answers a request for the file at ``path``."""
    async with httpx.AsyncClient(base_url=webui.url, timeout=30) as client:
        return (await client.get(f"/gradio_api/file={path}")).status_code


async def given_to(sdk: FakeAgonesSDK, slug: str) -> None:
    """Allocate the pod to ``slug``; return once the sidecar has confirmed the switch."""
    await sdk.wait_for("/ready")
    await sdk.allocate({USER_LABEL: slug})
    await sdk.wait_for(CONFIRM)


# --- Ready and healthy ----------------------------------------------------------------------


async def test_ready_only_once_the_webui_answers_and_no_health_pings_once_it_stops(
    pod: Path, workspace: Path, sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    late_webui = DemoWebUI(pod, workspace / "outputs")
    sidecar = start_sidecar(sdk, late_webui.url, share)

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

    # On its port now, a stand-in that counts the sidecar's checks and fails them: each check is
    # a period in which a ping would have come right after it.
    async with FakeWebUI(port=late_webui.port) as stopped:
        await sidecar.wait_for_log("has not answered /internal/ping")  # what the operator reads
        await stopped.wait_for_pings(1)
        pings = sdk.count("/health")  # every ping before that check has arrived
        await stopped.wait_for_pings(1 + PERIODS)
        assert sdk.count("/health") == pings
    assert sdk.count("/ready") == 1
    assert sidecar.running(), "the sidecar must keep watching, not exit"


async def test_a_webui_that_never_starts_gets_no_health_pings_after_the_start_timeout(
    sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    async with FakeWebUI() as never_ready:
        sidecar = start_sidecar(sdk, never_ready.url, share, WEBUI_START_TIMEOUT_SECONDS="0.5")

        await sidecar.wait_for_log("has not answered in 0.5 s; no more health pings")
        pings = sdk.count("/health")
        assert pings >= 1
        # It goes on asking the WebUI every period, on the same event loop as its pings: that
        # many asks are that many periods without a ping.
        await never_ready.wait_for_pings(never_ready.pings + PERIODS)
        assert sdk.count("/health") == pings
    assert sdk.count("/ready") == 0 and sidecar.running()


async def test_the_sdk_server_may_start_late(
    webui: DemoWebUI, share: Path, start_sidecar: StartSidecar
) -> None:
    sdk = FakeAgonesSDK()  # not listening yet: connections are refused
    sidecar = start_sidecar(sdk, webui.url, share)
    # What it says while the SDK server is away: each of its calls failed and is retried.
    for failure in (
        "GET /gameserver failed",
        "health ping failed",
        "watching the GameServer failed",
    ):
        await sidecar.wait_for_log(failure)

    await sdk.start()
    try:
        await sdk.wait_for("/health")
        await given_to(sdk, ALICE)
    finally:
        await sdk.stop()


# --- the person's folder --------------------------------------------------------------------


async def test_the_label_sends_the_persons_pictures_to_their_folder_and_is_confirmed(
    webui: DemoWebUI,
    sdk: FakeAgonesSDK,
    share: Path,
    link: Path,
    unassigned: Path,
    start_sidecar: StartSidecar,
) -> None:
    start_sidecar(sdk, webui.url, share)
    await sdk.wait_for("/ready")
    assert target_of(link) == unassigned
    await generate(webui, seed=10)  # before the pod is anyone's
    [early] = (unassigned / "txt2img-images").glob("*-10.png")

    await given_to(sdk, ALICE)

    outputs = outputs_of(share, ALICE)
    assert target_of(link) == outputs
    for folder in [outputs, *(outputs / name for name in SUBFOLDERS.values())]:
        assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o770, folder
    assert sdk.bodies(CONFIRM) == [{"key": OUTPUTS_ANNOTATION, "value": ALICE}]
    assert sdk.annotations == {OUTPUTS_ANNOTATION_SEEN_AS: ALICE}

    png = await generate(webui, seed=11)
    [picture] = (outputs / "txt2img-images").glob("*-11.png")
    assert picture.read_bytes() == png
    assert await served(webui, picture) == 200
    assert await served(webui, link / "txt2img-images" / picture.name) == 200
    assert await served(webui, early) == 403, "Gradio follows the link: the old target is out"


async def test_the_person_cannot_move_the_outputs_through_the_webui(
    webui: DemoWebUI, sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    start_sidecar(sdk, webui.url, share)
    await given_to(sdk, ALICE)
    bobs = outputs_of(share, BOB) / "txt2img-images"
    bobs.mkdir(parents=True)

    async with httpx.AsyncClient(base_url=webui.url, timeout=30) as client:
        before = (await client.get("/sdapi/v1/options")).json()
        for change in (
            {"outdir_txt2img_samples": str(bobs)},
            {"outdir_samples": str(bobs)},
            {"outdir_samples": "../../shares"},
        ):
            response = await client.post("/sdapi/v1/options", json=change)
            assert 400 <= response.status_code < 500, (change, response.text)
        assert (await client.get("/sdapi/v1/options")).json() == before
        assert (await client.post("/sdapi/v1/options", json=before)).status_code == 200

    await generate(webui, seed=12)
    assert list((outputs_of(share, ALICE) / "txt2img-images").glob("*-12.png"))
    assert contents(bobs) == []


async def test_the_same_person_again_changes_nothing(
    webui: DemoWebUI, sdk: FakeAgonesSDK, share: Path, link: Path, start_sidecar: StartSidecar
) -> None:
    start_sidecar(sdk, webui.url, share)
    await given_to(sdk, ALICE)
    made = os.lstat(link)

    await sdk.set_label(USER_LABEL, ALICE)
    await sdk.updates_read()
    await sdk.updates_read()  # the reconnected stream, which starts with the same GameServer

    assert os.lstat(link).st_ino == made.st_ino
    assert sdk.count(CONFIRM) == 1 and sdk.count("/shutdown") == 0


async def test_a_label_set_while_the_watch_was_down_is_seen_after_reconnecting(
    webui: DemoWebUI, sdk: FakeAgonesSDK, share: Path, start_sidecar: StartSidecar
) -> None:
    start_sidecar(sdk, webui.url, share)
    await sdk.wait_for("/ready")
    await sdk.wait_until(lambda: sdk.watch_connections == 1)  # watching starts apart from /ready
    await sdk.end_streams()
    await sdk.allocate({USER_LABEL: ALICE})  # before the sidecar is back
    await sdk.wait_for(CONFIRM)
    assert sdk.watch_connections == 2


async def test_a_second_person_never_gets_the_pod(
    webui: DemoWebUI,
    sdk: FakeAgonesSDK,
    share: Path,
    link: Path,
    unassigned: Path,
    start_sidecar: StartSidecar,
) -> None:
    sidecar = start_sidecar(sdk, webui.url, share)
    await given_to(sdk, ALICE)

    await sdk.set_label(USER_LABEL, BOB)
    await sdk.wait_for("/shutdown")

    assert target_of(link) == unassigned, "Bob must not even see Alice's folder meanwhile"
    assert not (share / "users" / BOB).exists()
    assert sdk.bodies(CONFIRM) == [{"key": OUTPUTS_ANNOTATION, "value": ALICE}]
    assert "asking Agones to shut the pod down" in sidecar.log()  # the error it promises
    await sdk.set_label(USER_LABEL, "carol-0123456789abcdef")
    await sdk.updates_read()
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
    label: str,
    sdk: FakeAgonesSDK,
    share: Path,
    link: Path,
    unassigned: Path,
    start_sidecar: StartSidecar,
) -> None:
    sidecar = start_sidecar(sdk, nowhere(), share, WEBUI_START_TIMEOUT_SECONDS="0")
    await sdk.wait_until(lambda: sdk.watch_connections == 1)
    await sdk.allocate({USER_LABEL: label})
    await sidecar.wait_for_log("refusing to point the outputs")

    assert target_of(link) == unassigned
    assert contents(share) == [], "nothing may be created for a hostile label"
    assert sdk.count("/shutdown") == 0 and sidecar.running()

    await sdk.set_label(USER_LABEL, ALICE)  # a valid label later is a second owner
    await sdk.wait_for("/shutdown")
    assert target_of(link) == unassigned
    assert sdk.count(CONFIRM) == 0


@pytest.mark.parametrize("target", ["outside", "another person's folder"])
async def test_a_symlink_planted_under_users_is_not_followed(
    target: str,
    sdk: FakeAgonesSDK,
    share: Path,
    link: Path,
    unassigned: Path,
    start_sidecar: StartSidecar,
) -> None:
    elsewhere = share.parent / f"{share.name}-elsewhere"
    if target != "outside":
        elsewhere = share / "users" / BOB
    elsewhere.mkdir(parents=True)
    (share / "users").mkdir(exist_ok=True)
    (share / "users" / ALICE).symlink_to(elsewhere)

    sidecar = start_sidecar(sdk, nowhere(), share, WEBUI_START_TIMEOUT_SECONDS="0")
    await sdk.wait_until(lambda: sdk.watch_connections == 1)
    await sdk.allocate({USER_LABEL: ALICE})
    await sidecar.wait_for_log("refusing to point the outputs")

    assert target_of(link) == unassigned
    assert contents(elsewhere) == []
    assert sdk.count(CONFIRM) == 0


# --- a restarted sidecar --------------------------------------------------------------------


async def test_a_restarted_sidecar_keeps_the_persons_link(
    webui: DemoWebUI, sdk: FakeAgonesSDK, share: Path, link: Path, start_sidecar: StartSidecar
) -> None:
    first = start_sidecar(sdk, webui.url, share)
    await given_to(sdk, ALICE)
    made = os.lstat(link)
    first.stop()  # its container crashed; the pod, its volumes and the WebUI live on

    second = start_sidecar(sdk, webui.url, share)
    await sdk.wait_for(CONFIRM, count=2)  # confirmed again, in case the first one never did
    # Its only trace of deciding against Ready; no /ready can come after it.
    await second.wait_for_log("not asking for Ready again")

    assert os.lstat(link).st_ino == made.st_ino and target_of(link) == outputs_of(share, ALICE)
    await generate(webui, seed=13)
    assert list((outputs_of(share, ALICE) / "txt2img-images").glob("*-13.png"))
    assert sdk.count("/ready") == 1, "Ready would return the Allocated pod to the pool"
    assert sdk.count("/shutdown") == 0 and second.running()


async def test_a_restarted_sidecar_whose_link_and_label_disagree_shuts_the_pod_down(
    webui: DemoWebUI,
    sdk: FakeAgonesSDK,
    share: Path,
    link: Path,
    unassigned: Path,
    start_sidecar: StartSidecar,
) -> None:
    first = start_sidecar(sdk, webui.url, share)
    await given_to(sdk, ALICE)
    first.stop()
    await sdk.set_label(USER_LABEL, BOB)  # while no sidecar watched

    start_sidecar(sdk, webui.url, share)
    await sdk.wait_for("/shutdown")
    assert target_of(link) == unassigned
    assert not (share / "users" / BOB).exists()


def test_a_real_folder_where_the_link_belongs_stops_it_at_start_and_is_kept(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "workspace" / "outputs"
    (folder / "txt2img-images").mkdir(parents=True)
    (folder / "txt2img-images" / "00001-1.png").write_bytes(b"a picture")
    run = subprocess.run(
        [sys.executable, "-m", "sidecar"],
        env=sidecar_environment(
            AGONES_SDK_HTTP_PORT=str(free_port()),
            SHARE_DIR=str(tmp_path / "share"),
            OUTPUTS_LINK=str(folder),
            UNASSIGNED_DIR=str(tmp_path / "workspace" / "unassigned-outputs"),
        ),
        capture_output=True,
        timeout=30,
    )
    assert run.returncode == 2
    [line] = run.stderr.decode().splitlines()
    assert line.startswith(f"sidecar: cannot start: OUTPUTS_LINK {folder} is a real folder")
    assert (folder / "txt2img-images" / "00001-1.png").read_bytes() == b"a picture"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["outputs"]


# --- settings and signals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGONES_SDK_HTTP_PORT", "8o80"),
        ("SHARE_DIR", "share"),
        ("OUTPUTS_LINK", "/share/users/x/outputs"),
        ("HEALTH_PERIOD_SECONDS", "-5"),
    ],
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


# "Within a second" is what it takes on an idle machine; what holds on any machine is the reason:
# it waits for none of its timers or requests. So they are made longer than `STOP_WAIT` here.


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_a_signal_stops_it_within_a_second_while_it_serves(
    signum: signal.Signals,
    webui: DemoWebUI,
    sdk: FakeAgonesSDK,
    share: Path,
    start_sidecar: StartSidecar,
) -> None:
    sidecar = start_sidecar(sdk, webui.url, share, HEALTH_PERIOD_SECONDS=LONG)
    await given_to(sdk, ALICE)  # then it sleeps until its next health ping, minutes away

    assert await asyncio.to_thread(sidecar.signal_and_wait, signum, STOP_WAIT) == 0


async def test_sigterm_stops_it_within_a_second_while_nothing_answers(
    share: Path, start_sidecar: StartSidecar
) -> None:
    absent_sdk = FakeAgonesSDK()  # never listens
    async with FakeWebUI(status=None) as silent:  # takes the ping, never answers it
        sidecar = start_sidecar(
            absent_sdk,
            silent.url,
            share,
            HEALTH_PERIOD_SECONDS=LONG,
            WEBUI_PING_TIMEOUT_SECONDS=LONG,
        )
        await silent.wait_for_pings(1)  # it waits for an answer, for minutes
        await sidecar.wait_for_log("watching the GameServer failed")  # and retries its watch

        code = await asyncio.to_thread(sidecar.signal_and_wait, signal.SIGTERM, STOP_WAIT)
    assert code == 0
