"""Issue 14 behind Agones, end to end: pictures, kept settings and deletions through the real
allocator (in this process, real Redis, the unmodified kubernetes client) and the fake Agones
API, whose pods each run the demo WebUI and the real sidecar (`python -m sidecar`) beside their
own Agones SDK server (`fake_agones.sdk_server`). Nothing here plays the sidecar: Ready, the
outputs confirmation the allocator waits for, delivery, kept settings and deletions all come
from the sidecar processes, through the same share the allocator reads.

One fake cluster and one allocator serve the whole file (pods take seconds to start); each test
uses a person of its own, so the tests do not depend on each other or on their order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest
from watchfiles import awatch

from allocator.slugs import slug_for
from fake_agones import FakeAgones, GameServerView, Pod, SidecarBacking, Timings
from sidecar.sdk import AgonesSDK, GameServer
from tests.support.inprocess import InProcessAllocator, on_fake_agones
from tests.support.processes import RedisServer, header_for, wait_until

ANN, BOB, CAROL = "ann@example.com", "bob@example.com", "carol@example.com"
REPLICAS = 4
"""Ann's, Carol's and Bob's first and second WebUIs, all warm before the first test."""
START_SECONDS = 120.0
"""Four WebUIs starting at once on a small machine: slow, not wrong."""
WAIT = 30.0
"""Seconds for what takes well under one: a deadline no machine comes near."""
PICTURES = "/_allocator/api/pictures"
FILES = "/_allocator/pictures/file/"
EMAIL = "sd-allocator/email"


@dataclass
class Site:
    fake: FakeAgones
    backing: SidecarBacking
    allocator: InProcessAllocator
    pods_dir: Path

    def client(self, email: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.allocator.url, headers=header_for(email), timeout=START_SECONDS
        )

    def outputs_of(self, email: str) -> Path:
        return self.backing.users_dir / slug_for(email) / "outputs"

    def gameservers_of(self, email: str) -> list[str]:
        return [
            view.name
            for view in self.fake.snapshot()
            if view.annotations.get(EMAIL) == email and not view.deleting
        ]

    def sidecar_logs(self) -> str:
        """Every pod's sidecar log, for a failure's message."""
        return "\n".join(
            f"--- {log.parent.name}\n{log.read_text(errors='replace')}"
            for log in sorted(self.pods_dir.glob("*/sidecar.log"))
        )


@pytest.fixture(scope="module")
def site(module_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("agones-pods")
    backing = SidecarBacking(base / "share")
    with FakeAgones(replicas=REPLICAS, backing=backing, data_dir=base / "pods") as fake:
        allocator = on_fake_agones(
            fake,
            module_redis.url,
            base / "allocator",
            users_dir=backing.users_dir,
            deletions_dir=backing.deletions_dir,
        )
        try:
            fake.wait_ready(REPLICAS, timeout=START_SECONDS)
            yield Site(fake, backing, allocator, base / "pods")
        finally:
            allocator.stop()


async def generate(http: httpx.AsyncClient, prompt: str) -> bytes:
    """One picture through the proxy (the person's first request allocates their WebUI)."""
    answer = await http.post("/sdapi/v1/txt2img", json={"prompt": prompt, "steps": 2})
    assert answer.status_code == 200, answer.text
    images: list[str] = answer.json()["images"]
    return base64.b64decode(images[0])


def holding(folder: Path, data: bytes) -> str | None:
    """The name (relative, '/'-separated) of a finished file in `folder` with these bytes."""
    for path in folder.rglob("*"):
        if not path.name.startswith(".") and path.is_file() and path.read_bytes() == data:
            return path.relative_to(folder).as_posix()
    return None


async def until(paths: list[Path], check: Callable[[], bool], site: Site) -> None:
    """Until `check()` holds, asked now and after each file-system event under `paths`. The
    watch starts after the first look; a change in between is seen at its 1 s heartbeat."""
    try:
        async with asyncio.timeout(WAIT):
            if check():
                return
            async for _ in awatch(*paths, yield_on_timeout=True, rust_timeout=1000):
                if check():
                    return
    except TimeoutError:
        logs = site.sidecar_logs()
        raise AssertionError(f"not within {WAIT} s; the sidecars said:\n{logs}") from None


async def delivered(site: Site, email: str, data: bytes) -> str:
    """The name under which the sidecar delivered `data` to the person's outputs folder."""
    folder = site.outputs_of(email)
    found: list[str] = []

    def arrived() -> bool:
        name = holding(folder, data)
        found.extend([name] if name else [])
        return bool(found)

    await until([folder], arrived, site)
    return found[0]


def gone(name: str, views: list[GameServerView]) -> bool:
    """The GameServer, and so its pod (whose sidecar has exited), is no more."""
    return name not in {view.name for view in views}


async def test_a_picture_made_through_the_proxy_is_in_my_pictures(site: Site) -> None:
    async with site.client(ANN) as http:
        png = await generate(http, "a red fox in the snow")
        name = await delivered(site, ANN, png)
        assert name.startswith("txt2img-images/")
        listing = (await http.get(PICTURES)).json()["pictures"]
        assert name in [picture["name"] for picture in listing]
        served = await http.get(FILES + name)
        assert served.status_code == 200
        assert served.content == png
    (pod,) = site.gameservers_of(ANN)
    confirmed = f"agones.dev/sdk-sd-allocator-outputs={slug_for(ANN)}"
    assert confirmed in (site.pods_dir / pod / "sidecar.log").read_text(), "the real sidecar's"
    pings = site.fake.health_pings(pod)

    def pinged_again() -> bool:  # the sidecar still tells Agones the WebUI is healthy
        return site.fake.health_pings(pod) > pings

    await asyncio.to_thread(wait_until, pinged_again, WAIT, "a health ping")


async def test_settings_follow_the_person_to_their_next_webui(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """The old pod's sidecar keeps the settings on SIGTERM; a person who comes back at once gets
    a new WebUI only once the old pod has handed over (allocator.backends.agones.handover), so
    with the setting just made."""
    caplog.set_level(logging.INFO, logger="allocator.backends.agones.backend")
    async with site.client(BOB) as http:
        changed = await http.post("/sdapi/v1/options", json={"samples_format": "jpg"})
        assert changed.status_code == 200, changed.text
        (first,) = site.gameservers_of(BOB)
        released = await http.post("/_allocator/release", headers={"Origin": site.allocator.url})
        assert released.json()["released"]
        options = await http.get("/sdapi/v1/options")  # at once: a new WebUI
        assert options.status_code == 200, options.text
        assert options.json()["samples_format"] == "jpg", site.sidecar_logs()
        (second,) = site.gameservers_of(BOB)
        assert second != first
    assert gone(first, site.fake.snapshot())
    assert f"{BOB}'s last WebUI handed over in" in caplog.text, "the new one waited for it"
    kept = site.backing.users_dir / slug_for(BOB) / "webui" / "options.json"
    assert json.loads(kept.read_text())["samples_format"] == "jpg"  # kept on SIGTERM


async def test_a_deleted_picture_is_gone_at_once_and_then_from_the_share(site: Site) -> None:
    origin = {"Origin": site.allocator.url}
    async with site.client(CAROL) as http:
        png = await generate(http, "a lighthouse at dusk")
        name = await delivered(site, CAROL, png)
        picture = site.outputs_of(CAROL) / name
        answer = await http.delete(f"{PICTURES}/{name}", headers=origin)
        assert answer.status_code == 204
        listing = (await http.get(PICTURES)).json()["pictures"]
        assert name not in [entry["name"] for entry in listing]
        assert (await http.get(FILES + name)).status_code == 404
    await until([picture.parent], lambda: not picture.exists(), site)


# --- the pod's SDK server, as the sidecar's own client reads it --------------------------


class SDKOnly:
    """Pods that run nothing but their SDK server: the test plays the sidecar."""

    async def start(self, pod: Pod) -> None:
        assert pod.sdk is not None
        await pod.sdk.listen()

    async def stop(self, pod: Pod) -> None:
        return None


@pytest.fixture
def bare() -> Iterator[FakeAgones]:
    timings = Timings(step=0.01, delete_delay=0.01)
    with FakeAgones(replicas=1, backing=SDKOnly(), timings=timings) as fake:
        fake.wait_until(lambda views: [v.state for v in views] == ["Scheduled"], WAIT)
        (view,) = fake.snapshot()  # Scheduled comes before the SDK server listens
        wait_until(lambda: fake.sdk_port(view.name) is not None, WAIT, "the SDK server")
        yield fake


@pytest.fixture
async def sdk(bare: FakeAgones) -> AsyncIterator[AgonesSDK]:
    (view,) = bare.snapshot()
    port = bare.sdk_port(view.name)
    async with aiohttp.ClientSession() as session:
        yield AgonesSDK(session, f"http://localhost:{port}")


async def test_a_pod_with_a_sidecar_is_ready_only_when_the_sidecar_says_so(
    bare: FakeAgones, sdk: AgonesSDK
) -> None:
    now = await sdk.gameserver()
    assert (now.state, now.health_period) == ("Scheduled", 5)
    assert now.labels["agones.dev/fleet"] == bare.fleet
    states: list[str] = []
    async with asyncio.timeout(WAIT):
        async for update in sdk.watch():
            states.append(update.state)
            if update.state == "Scheduled":
                await sdk.ready()
            if update.state == "Ready":
                break
    assert states == ["Scheduled", "RequestReady", "Ready"]
    assert [view.state for view in bare.snapshot()] == ["Ready"]


async def test_annotations_and_shutdown_reach_the_stored_gameserver(
    bare: FakeAgones, sdk: AgonesSDK
) -> None:
    (view,) = bare.snapshot()
    await sdk.set_annotation("sd-allocator-outputs", "ann")
    stored = bare.game_server(view.name)
    assert stored is not None
    assert stored["metadata"]["annotations"]["agones.dev/sdk-sd-allocator-outputs"] == "ann"
    seen: list[GameServer] = []
    async with asyncio.timeout(WAIT):
        async for update in sdk.watch():  # ends when the GameServer is gone
            seen.append(update)
            if update.state == "Scheduled":
                await sdk.shutdown()
    assert seen[-1].state == "Shutdown"
    bare.wait_until(lambda views: gone(view.name, views), WAIT)  # and the Fleet replaces it
