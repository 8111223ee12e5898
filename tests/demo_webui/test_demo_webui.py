"""The demo WebUI keeps the promises the allocator and its tests rely on.

The tests talk to one real ``python -m demo_webui`` process, Alice's, started once for the file
(importing Gradio takes seconds); Bob's folder next to hers holds what she must never see.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from demo_webui.options import Options, Restricted, default_options
from demo_webui.outputs import OutputFolder, OutputFolders

DELAY = 0.5
"""Seconds one generation takes here: short, but long enough to watch its progress."""

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
TRIES = 20
"""Generations a test may run to watch one in progress: a generation lasts `DELAY`, and a
machine too slow to look in time gets another, so the verdict is the same on every machine."""


# --- the process ----------------------------------------------------------------------------


@dataclass
class WebUI:
    url: str
    user_dir: Path
    outputs_dir: Path
    log: Path
    process: subprocess.Popen[bytes]
    started_in: float = 0.0

    @property
    def gradio_dir(self) -> Path:
        return self.user_dir / ".gradio"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def launch(base: Path, name: str, outputs_dir: Path | None = None, *flags: str) -> WebUI:
    user_dir = base / name
    outputs_dir = outputs_dir or user_dir / "outputs"
    log = base / f"{name}.log"
    port = free_port()
    command = [
        sys.executable, "-m", "demo_webui", "--port", str(port),
        "--user-dir", str(user_dir), "--outputs-dir", str(outputs_dir), "--delay", str(DELAY),
        *flags,
    ]  # fmt: skip
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=base)
    return WebUI(f"http://127.0.0.1:{port}", user_dir, outputs_dir, log, process)


def wait_until_ready(webui: WebUI) -> None:
    launched_at = time.monotonic()
    while time.monotonic() < launched_at + START_TIMEOUT:
        if webui.process.poll() is not None:
            pytest.fail(
                f"demo_webui exited with {webui.process.returncode}: {webui.log.read_text()}"
            )
        try:
            if httpx.get(f"{webui.url}/internal/ping", timeout=1).status_code == 200:
                webui.started_in = time.monotonic() - launched_at
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"demo_webui did not answer /internal/ping within {START_TIMEOUT} s")


def stop_with_a_tab_open(webui: WebUI) -> None:
    """SIGTERM ends the process promptly even while a browser tab keeps its heartbeat open."""
    with (
        httpx.Client(base_url=webui.url) as tab,
        tab.stream("GET", "/gradio_api/heartbeat/open-tab", timeout=STOP_TIMEOUT) as heartbeat,
    ):
        next(heartbeat.iter_lines())
        webui.process.terminate()
        try:
            webui.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            webui.process.kill()
            webui.process.wait()
            pytest.fail(f"demo_webui ignored SIGTERM for {STOP_TIMEOUT} s with a tab open")


@pytest.fixture(scope="module")
def webui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebUI]:
    """Alice's WebUI; stopping it at the end checks that SIGTERM works with a tab open."""
    alice = launch(tmp_path_factory.mktemp("people"), "alice")
    try:
        wait_until_ready(alice)
        yield alice
    finally:
        if alice.process.poll() is None:
            stop_with_a_tab_open(alice)


@pytest.fixture
def client(webui: WebUI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=webui.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def gradio(webui: WebUI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A Gradio client, the way the end-to-end tests drive the WebUI through the allocator."""
    downloads = tmp_path_factory.mktemp("downloads")
    client = Client(
        f"{webui.url}/", verbose=False, download_files=str(downloads), analytics_enabled=False
    )
    yield client
    client.close()


def txt2img(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def first_png(result: dict[str, Any]) -> bytes:
    return base64.b64decode(result["images"][0])


def watch_progress(client: httpx.Client, done: threading.Event) -> list[dict[str, Any]]:
    """Poll ``/sdapi/v1/progress`` until ``done``; return the answers that showed progress."""
    seen: list[dict[str, Any]] = []
    while not done.is_set():
        progress = client.get("/sdapi/v1/progress").json()
        if progress["progress"] > 0:
            seen.append(progress)
        time.sleep(0.02)
    return seen


def in_flight(client: httpx.Client) -> int:
    """The step count of the generation in flight; 0 when there is none."""
    state = client.get("/sdapi/v1/progress").json()["state"]
    return int(state["sampling_steps"]) if state["job_count"] else 0


@dataclass
class Watched:
    """What was seen during one API generation: progress, and each ping with the generation in
    flight just before it was sent and just after it was answered."""

    progress: list[dict[str, Any]]
    pings: list[tuple[int, int, int]]


def watch_an_api_generation(client: httpx.Client, webui: WebUI, steps: int) -> Watched:
    done = threading.Event()
    pings: list[tuple[int, int, int]] = []

    def generate() -> None:
        try:
            with httpx.Client(base_url=webui.url, timeout=30) as other:
                txt2img(other, prompt="slow", seed=1, steps=steps, width=64, height=64)
        finally:
            done.set()

    def ping() -> None:
        with httpx.Client(base_url=webui.url, timeout=30) as pinger:
            while not done.is_set():
                before = in_flight(pinger)
                status = pinger.get("/internal/ping").status_code
                pings.append((before, status, in_flight(pinger)))

    with ThreadPoolExecutor(2) as workers:
        generating, pinging = workers.submit(generate), workers.submit(ping)
        seen = watch_progress(client, done)
        generating.result()  # what failed in a worker fails the test
        pinging.result()
    return Watched(seen, pings)


# --- starting -------------------------------------------------------------------------------


def test_starts_and_says_so_once_on_stderr(webui: WebUI) -> None:
    ready_lines = [line for line in webui.log.read_text().splitlines() if "ready" in line]
    assert ready_lines == [f"demo_webui ready on {webui.url}/"]
    print(f"started in {webui.started_in:.2f} s")


def test_bad_arguments_exit_with_2(tmp_path: Path) -> None:
    for arguments in (
        [],
        ["--port", "http", "--user-dir", str(tmp_path), "--outputs-dir", str(tmp_path)],
        ["--port", "70000", "--user-dir", str(tmp_path), "--outputs-dir", str(tmp_path)],
        ["--port", "1", "--user-dir", str(tmp_path), "--outputs-dir", ".", "--delay", "-1"],
    ):
        run = subprocess.run(
            [sys.executable, "-m", "demo_webui", *arguments], capture_output=True, timeout=30
        )
        assert run.returncode == 2, arguments
        assert b"usage:" in run.stderr


def test_ping_answers_empty_json(client: httpx.Client) -> None:
    response = client.get("/internal/ping")
    assert (response.status_code, response.json()) == (200, {})


# --- the A1111 API --------------------------------------------------------------------------


def test_txt2img_returns_pngs_of_the_requested_size_and_saves_them(
    client: httpx.Client, webui: WebUI
) -> None:
    before = set(webui.outputs_dir.glob("*.png"))
    body = {"prompt": "a lighthouse", "seed": 1234, "steps": 5, "width": 192, "height": 128}
    result = txt2img(client, **body, batch_size=2)

    pngs = [base64.b64decode(image) for image in result["images"]]
    assert len(pngs) == 2
    for png in pngs:
        picture = Image.open(io.BytesIO(png))
        assert (picture.format, picture.size) == ("PNG", (192, 128))
    info = json.loads(result["info"])
    assert (info["seed"], info["all_seeds"]) == (1234, [1234, 1235])
    assert result["parameters"]["prompt"] == "a lighthouse"

    saved = sorted(set(webui.outputs_dir.glob("*.png")) - before)
    assert [path.name.split("-", 1)[1] for path in saved] == ["1234.png", "1235.png"]
    assert sorted(path.read_bytes() for path in saved) == sorted(pngs)


def test_the_same_seed_gives_the_same_bytes(client: httpx.Client) -> None:
    body = {"prompt": "a red fox", "seed": 42, "steps": 3, "width": 96, "height": 64}
    first = first_png(txt2img(client, **body))
    assert first_png(txt2img(client, **body)) == first
    assert first_png(txt2img(client, **{**body, "seed": 43})) != first


def test_seed_minus_one_picks_one_and_reports_it(client: httpx.Client) -> None:
    result = txt2img(client, prompt="anything", seed=-1, steps=1, width=64, height=64)
    assert 0 <= json.loads(result["info"])["seed"] < 2**32


@pytest.mark.parametrize(
    "body",
    [
        {"width": 32},
        {"height": 4096},
        {"batch_size": 0},
        {"batch_size": 9},
        {"steps": 0},
        {"steps": 151},
        {"seed": -2},
        {"width": "wide"},
    ],
)
def test_bad_input_is_rejected_with_422(client: httpx.Client, body: dict[str, Any]) -> None:
    assert client.post("/sdapi/v1/txt2img", json={"prompt": "x", **body}).status_code == 422


def test_progress_is_idle_between_generations(client: httpx.Client) -> None:
    progress = client.get("/sdapi/v1/progress").json()
    assert (progress["progress"], progress["eta_relative"]) == (0, 0)
    assert progress["state"]["job_count"] == 0
    assert (progress["current_image"], progress["textinfo"]) == (None, None)


def test_progress_and_ping_answer_during_an_api_generation(
    client: httpx.Client, webui: WebUI
) -> None:
    """A ping sent and answered while the same generation was in flight did not wait for it:
    the sidecar's health pings go on while the WebUI works."""
    for steps in range(10, 10 + TRIES):  # each generation its own step count, to tell them apart
        watched = watch_an_api_generation(client, webui, steps)
        assert {status for _, status, _ in watched.pings} <= {200}
        if watched.progress and (steps, 200, steps) in watched.pings:
            break
    else:
        raise AssertionError(f"in {TRIES} generations, no ping was answered during one")

    state = watched.progress[-1]["state"]
    assert (state["job"], state["job_count"]) == ("scripts_txt2img", 1)
    assert state["sampling_steps"] == steps and 0 < state["sampling_step"] <= steps
    assert all(0 < answer["progress"] <= 1 for answer in watched.progress)


# --- the Gradio UI --------------------------------------------------------------------------


def test_gradio_client_generates_the_same_picture_as_the_api(
    client: httpx.Client, gradio: Client, webui: WebUI
) -> None:
    before = set(webui.outputs_dir.glob("*.png"))
    path = gradio.predict("a cat", "blurry", 7, 10, 128, 96, api_name="/txt2img")

    png = Path(path).read_bytes()
    assert Image.open(io.BytesIO(png)).size == (128, 96)
    [saved] = set(webui.outputs_dir.glob("*.png")) - before
    assert saved.read_bytes() == png
    same = {"prompt": "a cat", "negative_prompt": "blurry", "seed": 7, "steps": 10}
    assert first_png(txt2img(client, **same, width=128, height=96)) == png


def test_the_ui_explains_bad_settings(gradio: Client) -> None:
    with pytest.raises(AppError, match=r"Please check the settings \(seed: "):
        gradio.predict("x", "", -5, 10, 64, 64, api_name="/txt2img")


def watch_a_ui_generation(client: httpx.Client, gradio: Client, seed: int) -> list[dict[str, Any]]:
    done = threading.Event()
    job = gradio.submit("ui", "", seed, 10, 64, 64, api_name="/txt2img")
    job.add_done_callback(lambda _: done.set())
    seen = watch_progress(client, done)
    assert Path(job.result()).is_file()
    return seen


def test_progress_shows_a_generation_started_in_the_ui(
    client: httpx.Client, gradio: Client
) -> None:
    for seed in range(3, 3 + TRIES):
        seen = watch_a_ui_generation(client, gradio, seed)
        if seen:
            break
    else:
        raise AssertionError(f"in {TRIES} generations, never saw one in progress")
    assert seen[-1]["state"]["job"] == "txt2img"


def test_the_page_keeps_a_heartbeat_stream_open(client: httpx.Client) -> None:
    """The kind of request the allocator must not count as activity: one endless SSE stream."""
    config = client.get("/config").json()
    assert (config["protocol"], config["connect_heartbeat"]) == ("sse_v3", True)
    with client.stream("GET", "/gradio_api/heartbeat/test-session", timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert next(stream.iter_lines()) == "data: ALIVE"


# --- one person's files stay theirs ---------------------------------------------------------


def test_gradio_caches_pictures_in_the_persons_own_folder(
    client: httpx.Client, gradio: Client, webui: WebUI
) -> None:
    """Not in the shared /tmp/gradio, where every WebUI on the machine would serve them."""
    gradio.predict("alice's cat", "", 99, 2, 64, 64, api_name="/txt2img")

    cached = list(webui.gradio_dir.rglob("*-99.png"))
    assert cached, "Gradio cached Alice's picture outside her folder"
    for path in (cached[0], next(webui.outputs_dir.glob("*-99.png"))):
        assert client.get(f"/gradio_api/file={path}").status_code == 200


def test_another_persons_files_are_not_served(client: httpx.Client, webui: WebUI) -> None:
    bob = webui.user_dir.parent / "bob"
    bobs_files = [bob / ".gradio" / "0f3a" / "00001-7.png", bob / "outputs" / "00001-7.png"]
    for path in bobs_files:
        path.parent.mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(path)

    sneaky = f"{webui.outputs_dir}/%2E%2E/%2E%2E/bob/outputs/00001-7.png"
    for target in [*map(str, bobs_files), sneaky, str(webui.log), "/etc/passwd"]:
        assert client.get(f"/gradio_api/file={target}").status_code in (403, 404), target


# --- the outputs folder ---------------------------------------------------------------------


def test_outputs_continue_numbering_and_never_overwrite(tmp_path: Path) -> None:
    (tmp_path / "00007-1.png").write_bytes(b"old")
    (tmp_path / "00009-5.png").write_bytes(b"taken")
    folder = OutputFolder(tmp_path)
    assert folder.save(b"new", seed=5).name == "00010-5.png"

    other_process = OutputFolder(tmp_path)
    (tmp_path / "00011-5.png").write_bytes(b"written meanwhile")
    assert folder.save(b"newer", seed=5).name == "00012-5.png"
    assert other_process.save(b"newest", seed=5).name == "00013-5.png"
    assert (tmp_path / "00007-1.png").read_bytes() == b"old"
    assert (tmp_path / "00011-5.png").read_bytes() == b"written meanwhile"


# --- the options API: where pictures go -----------------------------------------------------


@pytest.fixture
def restore_options(client: httpx.Client) -> Iterator[dict[str, str]]:
    """The options as they were; set back afterwards, since the WebUI is shared by the file."""
    before: dict[str, str] = client.get("/sdapi/v1/options").json()
    yield before
    assert client.post("/sdapi/v1/options", json=before).status_code == 200


def test_options_report_the_saving_folders(client: httpx.Client, webui: WebUI) -> None:
    options = client.get("/sdapi/v1/options").json()
    assert options["outdir_samples"] == ""
    assert options["outdir_txt2img_samples"] == str(webui.outputs_dir)
    assert options["outdir_save"] == str(webui.outputs_dir / "saved")


def test_a_new_folder_gets_the_pictures_of_api_and_ui_and_gradio_serves_them(
    client: httpx.Client, gradio: Client, webui: WebUI, restore_options: dict[str, str]
) -> None:
    old = next(webui.outputs_dir.glob("*.png"))
    new = webui.user_dir / "elsewhere" / "txt2img-images"
    response = client.post("/sdapi/v1/options", json={"outdir_txt2img_samples": str(new)})
    assert (response.status_code, response.json()) == (200, None)
    assert client.get("/sdapi/v1/options").json()["outdir_txt2img_samples"] == str(new)

    first_png(txt2img(client, prompt="api", seed=501, steps=1, width=64, height=64))
    downloaded = Path(gradio.predict("ui", "", 502, 1, 64, 64, api_name="/txt2img"))

    assert [p.name.split("-", 1)[1] for p in sorted(new.glob("*.png"))] == ["501.png", "502.png"]
    assert downloaded.read_bytes() == next(new.glob("*-502.png")).read_bytes()
    assert client.get(f"/gradio_api/file={next(new.glob('*-501.png'))}").status_code == 200
    assert client.get(f"/gradio_api/file={old}").status_code == 403


def test_outdir_samples_overrides_the_per_kind_folder(
    client: httpx.Client, webui: WebUI, restore_options: dict[str, str]
) -> None:
    everything = webui.user_dir / "everything"
    client.post("/sdapi/v1/options", json={"outdir_samples": "everything"}).raise_for_status()
    txt2img(client, prompt="x", seed=503, steps=1, width=64, height=64)
    assert list(everything.glob("*-503.png"))


@pytest.mark.parametrize(
    "body",
    [
        {"sd_model_checkpoint": "x"},
        {"outdir_txt2img_samples": 5},
        {"outdir_txt2img_samples": "/tmp"},
        {"outdir_save": "saved", "outdir_txt2img_samples": "../../.."},
    ],
)
def test_unknown_keys_wrong_types_and_folders_outside_are_refused_whole(
    client: httpx.Client, body: dict[str, Any], restore_options: dict[str, str]
) -> None:
    assert client.post("/sdapi/v1/options", json=body).status_code == 422
    assert client.get("/sdapi/v1/options").json() == restore_options


# --- in a pod: saving through a link that is switched, folders that cannot move ---------------


def switch(link: Path, target: Path) -> None:
    """As the sidecar does: a new symlink renamed over the old one."""
    new = link.with_name(".new-link")
    new.symlink_to(target)
    os.replace(new, link)


def test_in_a_pod_pictures_follow_the_switched_link_and_the_folders_cannot_move(
    tmp_path: Path,
) -> None:
    before, alices = tmp_path / "unassigned", tmp_path / "share" / "users" / "alice" / "outputs"
    link = tmp_path / "workspace" / "outputs"
    link.parent.mkdir()
    link.symlink_to(before)
    pod = launch(tmp_path, "pod", link / "txt2img-images", "--hide-ui-dir-config")
    downloads = tmp_path / "downloads"
    try:
        wait_until_ready(pod)
        with httpx.Client(base_url=pod.url, timeout=30) as client:
            txt2img(client, prompt="before", seed=601, steps=1, width=64, height=64)
            [early] = (before / "txt2img-images").glob("*-601.png")

            switch(link, alices)
            txt2img(client, prompt="alice's", seed=602, steps=1, width=64, height=64)
            gradio = Client(f"{pod.url}/", verbose=False, download_files=str(downloads))
            downloaded = Path(gradio.predict("ui", "", 603, 1, 64, 64, api_name="/txt2img"))
            gradio.close()

            saved = sorted((alices / "txt2img-images").glob("*.png"))
            assert [p.name.split("-", 1)[1] for p in saved] == ["602.png", "603.png"]
            assert downloaded.read_bytes() == saved[1].read_bytes()
            through_link = link / "txt2img-images" / saved[0].name
            for path in (saved[0], through_link):
                assert client.get(f"/gradio_api/file={path}").status_code == 200, path
            assert client.get(f"/gradio_api/file={early}").status_code == 403

            options = client.get("/sdapi/v1/options").json()
            assert options["outdir_txt2img_samples"] == str(link / "txt2img-images")
            moved = client.post("/sdapi/v1/options", json={"outdir_samples": str(tmp_path)})
            assert moved.status_code == 403 and "--hide-ui-dir-config" in moved.text
            assert client.get("/sdapi/v1/options").json() == options
            assert client.post("/sdapi/v1/options", json=options).status_code == 200
    finally:
        pod.process.terminate()
        pod.process.wait(timeout=STOP_TIMEOUT)


def test_fixed_folders_refuse_any_change_but_take_their_own_values(tmp_path: Path) -> None:
    options = Options(default_options(tmp_path / "out"), base=tmp_path, root=tmp_path, fixed=True)
    before = options.snapshot()
    with pytest.raises(Restricted):
        options.update({"outdir_save": str(tmp_path / "out" / "saved"), "outdir_samples": "x"})
    assert options.snapshot() == before
    options.update(before)  # a settings page posts every value back
    assert options.snapshot() == before


def test_the_next_picture_goes_where_a_switched_link_points(tmp_path: Path) -> None:
    first, second, link = tmp_path / "first", tmp_path / "second", tmp_path / "link"
    second.mkdir()
    (second / "00041-1.png").write_bytes(b"older")
    link.symlink_to(first)
    folders = OutputFolders()
    assert folders.at(link).save(b"one", seed=1) == first / "00001-1.png"

    switch(link, second)
    assert folders.at(link).save(b"two", seed=1) == second / "00042-1.png"
    assert (first / "00001-1.png").read_bytes() == b"one"
