"""Scenario: "My pictures" with 10 000 pictures in one person's folder (issue 14: a page
lists in < 100 ms; the zip streams with bounded memory).

A real `sd-allocator serve` process (static backend pointing nowhere: pictures need no WebUI,
header identity, memory store) reads a users folder laid out as AUTOMATIC1111 writes it
(`outputs/txt2img-images/<date>/<number>-<seed>.png`). One keep-alive connection asks:
As behind Agones, deleting asks the pods' sidecars (`SDA_DELETIONS_DIR`), and the lister has
`pending_deletions` requests waiting, which every walk reads to hide what was asked to go.
- cold: the first page when the person's listing is not kept (the whole folder walked), once
  per `LISTING_TTL` so each sample walks again;
- warm: every page of `page_size` through all 10 000, in `rounds` rounds (the listing is kept
  for `LISTING_TTL` seconds, so paging walks the folder once);
- zip: another person's folder of large files downloaded as one zip, with the server's RSS
  sampled while it streams.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psutil

from allocator.pictures import LISTING_TTL
from allocator.slugs import slug_for
from bench import services
from bench.procs import Processes, Service, free_port, wait_for_http
from bench.tools import ROOT
from sidecar import deletion_requests
from sidecar.deletion_requests import Deletion

LISTER = "lister@example.com"
ZIPPER = "zipper@example.com"
FOLDERS = 20  # date folders, as A1111 makes one per day


@dataclass(frozen=True)
class PicturesLoad:
    pictures: int = 10_000
    page_size: int = 100
    rounds: int = 5
    cold_samples: int = 8
    zip_files: int = 16
    zip_file_mib: int = 16
    pending_deletions: int = 100


@dataclass
class PicturesResult:
    load: PicturesLoad
    listed: int = 0  # pictures seen by paging once
    cold_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)
    zip_bytes: int = 0
    zip_seconds: float = 0.0
    zip_rss_before: int = 0
    zip_rss_peak: int = 0
    setup_seconds: float = 0.0

    @property
    def zip_growth(self) -> int:
        return self.zip_rss_peak - self.zip_rss_before


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
    return ordered[index]


def run(processes: Processes, load: PicturesLoad, allocator_command: list[str]) -> PicturesResult:
    began = time.monotonic()
    users = processes.workdir / "pictures-users"
    _fill_listing(users / slug_for(LISTER) / "outputs", load.pictures)
    _fill_zip(users / slug_for(ZIPPER) / "outputs", load.zip_files, load.zip_file_mib)
    deletions = processes.workdir / "pictures-deletions"
    _fill_deletions(deletions, load.pending_deletions)
    server = _start(processes, allocator_command, users, deletions)
    result = PicturesResult(load, setup_seconds=time.monotonic() - began)
    print(f"  {load.pictures} pictures set up in {result.setup_seconds:.1f} s", flush=True)
    port = server.port
    assert port is not None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for sample in range(load.cold_samples):
            if sample:
                time.sleep(LISTING_TTL + 0.1)  # the kept listing has expired: walk again
            result.cold_ms.append(_timed_page(connection, load.page_size, None)[0])
        for _ in range(load.rounds):
            result.listed = _page_through(connection, load.page_size, result.warm_ms)
    finally:
        connection.close()
    _zip(port, server, result)
    _check(result)
    return result


def _fill_listing(outputs: Path, count: int) -> None:
    base = time.time() - count
    body = b"\x89PNG\r\n\x1a\n" + bytes(1016)
    for number in range(count):
        folder = outputs / "txt2img-images" / f"2026-01-{number % FOLDERS + 1:02}"
        if number < FOLDERS:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{number:05}-{1000 + number}.png"
        path.write_bytes(body)
        os.utime(path, (base + number, base + number))


def _fill_deletions(deletions: Path, count: int) -> None:
    """Deletion requests of the lister's waiting for a sidecar, as behind Agones; for files
    already gone, so the listing stays `pictures` long and comparable."""
    deletions.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        deletion = Deletion(f"txt2img-images/gone-{number:04}.png", 1024, 1_700_000_000 + number)
        deletion_requests.write(deletions, slug_for(LISTER), deletion)


def _fill_zip(outputs: Path, files: int, mib: int) -> None:
    outputs.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    for number in range(files):
        with (outputs / f"large-{number:02}.png").open("wb") as out:
            for _ in range(mib):
                out.write(block)


def _start(processes: Processes, command: list[str], users: Path, deletions: Path) -> Service:
    port = free_port()
    service = processes.start(
        "allocator-pictures",
        command,
        env={
            "SDA_IDENTITY": "header",
            "SDA_BACKEND": "static",
            "SDA_STATIC_TARGET": "127.0.0.1:1",
            "SDA_REDIS_URL": "memory",
            "SDA_DATA_DIR": str(processes.workdir / "pictures-data"),
            "SDA_USERS_DIR": str(users),
            "SDA_DELETIONS_DIR": str(deletions),
            "SDA_PORT": str(port),
            "SDA_METRICS_PORT": "0",
            "SDA_LOG_LEVEL": "warning",
        },
        cwd=ROOT,
        port=port,
        drop_env_prefix="SDA_",
    )
    wait_for_http(service, services.base_url(service) + "/_allocator/healthz", timeout=60)
    return service


def _headers(email: str) -> dict[str, str]:
    return {services.IDENTITY_HEADER: f"accounts.google.com:{email}"}


def _timed_page(
    connection: http.client.HTTPConnection, limit: int, cursor: str | None
) -> tuple[float, dict[str, object]]:
    target = f"/_allocator/api/pictures?limit={limit}"
    if cursor:
        target += f"&cursor={quote(cursor)}"
    began = time.perf_counter()
    connection.request("GET", target, headers=_headers(LISTER))
    response = connection.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - began) * 1000
    if response.status != 200:
        raise RuntimeError(f"pictures API answered {response.status}: {body[:200]!r}")
    page: dict[str, object] = json.loads(body)
    return elapsed, page


def _page_through(
    connection: http.client.HTTPConnection, limit: int, latencies: list[float]
) -> int:
    cursor: str | None = None
    seen = 0
    while True:
        elapsed, page = _timed_page(connection, limit, cursor)
        latencies.append(elapsed)
        pictures = page["pictures"]
        assert isinstance(pictures, list)
        seen += len(pictures)
        following = page["next"]
        if following is None:
            return seen
        assert isinstance(following, str)
        cursor = following


def _zip(port: int, server: Service, result: PicturesResult) -> None:
    process = psutil.Process(server.pid)
    result.zip_rss_before = result.zip_rss_peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            result.zip_rss_peak = max(result.zip_rss_peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    began = time.perf_counter()
    try:
        connection.request("GET", "/_allocator/pictures/download", headers=_headers(ZIPPER))
        response = connection.getresponse()
        while chunk := response.read(1 << 20):
            result.zip_bytes += len(chunk)
    finally:
        result.zip_seconds = time.perf_counter() - began
        done.set()
        sampler.join()
        connection.close()


def _check(result: PicturesResult) -> None:
    load = result.load
    problems = []
    if result.listed != load.pictures:
        problems.append(f"paging saw {result.listed} of {load.pictures} pictures")
    if result.zip_bytes < load.zip_files * load.zip_file_mib << 20:
        problems.append(f"the zip had {result.zip_bytes} bytes")
    if problems:
        raise RuntimeError("pictures benchmark is wrong: " + "; ".join(problems))


def to_json(result: PicturesResult) -> dict[str, object]:
    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50": round(statistics.median(values), 2),
            "p99": round(percentile(values, 99), 2),
            "max": round(max(values), 2),
            "samples": len(values),
        }

    load = result.load
    return {
        "load": {
            "pictures": load.pictures,
            "page_size": load.page_size,
            "rounds": load.rounds,
            "cold_samples": load.cold_samples,
            "zip_bytes_on_disk": load.zip_files * load.zip_file_mib << 20,
        },
        "listed": result.listed,
        "cold_ms": summary(result.cold_ms),
        "warm_ms": summary(result.warm_ms),
        "zip": {
            "bytes": result.zip_bytes,
            "seconds": round(result.zip_seconds, 3),
            "rss_before": result.zip_rss_before,
            "rss_growth": result.zip_growth,
        },
        "setup_seconds": round(result.setup_seconds, 1),
    }
