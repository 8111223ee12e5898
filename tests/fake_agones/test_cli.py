"""``python -m fake_agones`` serves until SIGTERM, for benchmarks that run it on its own."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from fake_agones import free_port
from tests.fake_agones.conftest import WAIT, allocate, allocation, client_for_kubeconfig
from tests.support.processes import REPO


def test_the_module_serves_a_fleet_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    webui_port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "fake_agones",
            "--webui-port", str(webui_port),
            "--replicas", "2",
            "--latency-ms", "5",
            "--token", "bench-token",
            "--kubeconfig", str(kubeconfig),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("fake_agones serving on http://127.0.0.1:")
        url = line.split()[-1]
        assert kubeconfig.exists()

        headers = {"Authorization": "Bearer bench-token"}
        ready = httpx.get(
            f"{url}/_fake/ready", params={"count": 2}, headers=headers, timeout=2 * WAIT
        )
        assert {gs["state"] for gs in ready.json()} == {"Ready"}

        answer = allocate(client_for_kubeconfig(kubeconfig), allocation())
        assert answer["status"]["ports"] == [{"name": "sd", "port": webui_port}]
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_module_explains_its_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fake_agones", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0
    for option in (
        "--port",
        "--webui-port",
        "--replicas",
        "--backing",
        "--latency-ms",
        "--kubeconfig",
    ):
        assert option in result.stdout
