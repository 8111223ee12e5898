"""The fake Agones cluster (`python -m fake_agones`) as a benchmark helper: starting it, and its
controls under `/_fake/`, which need the same bearer token as the Kubernetes API.

Its GameServers' Pods get the lowest free loopback address 127.0.0.N (N >= 2) and all share one
WebUI port; with `--backing none` nothing listens there, so the harness puts an origin on it.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Processes, Service, StartupError, free_port, wait_for_http
from bench.tools import ROOT

NAMESPACE = "default"
FLEET = "sd-webui"
POD_IP_NUMBERS = range(2, 255)  # 127.0.0.2 ... 127.0.0.254, as the fake hands them out
ALLOCATIONS = f"/apis/allocation.agones.dev/v1/namespaces/{NAMESPACE}/gameserverallocations"

Json = dict[str, Any]


def pod_ips() -> list[str]:
    """Every address the fake may give a Pod."""
    return [f"127.0.0.{n}" for n in POD_IP_NUMBERS]


@dataclass(frozen=True)
class FakeCluster:
    service: Service
    url: str
    token: str
    kubeconfig: Path
    replicas: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def allocation_url(self) -> str:
        return self.url + ALLOCATIONS

    def ready(self, count: int, timeout: float = 60.0) -> None:
        """Wait until at least `count` GameServers are Ready (and not being deleted)."""
        try:
            self._call("GET", f"/_fake/ready?count={count}&timeout={timeout:g}", timeout + 10)
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n{self.service.log_tail()}") from e

    def settled(self, timeout: float = 60.0, allocated: int = 0) -> None:
        """Wait until the Fleet is exactly back to `replicas` GameServers, `allocated` of them
        Allocated and the rest Ready: every deleted one gone, every replacement Ready."""
        expected = {"Ready": self.replicas - allocated, "Allocated": allocated}
        expected = {state: count for state, count in expected.items() if count}
        deadline = time.monotonic() + timeout
        states: dict[str, int] = {}
        while time.monotonic() < deadline:
            servers = self.game_servers()
            states = {}
            for server in servers:
                state = "deleting" if server["deleting"] else str(server["state"])
                states[state] = states.get(state, 0) + 1
            if states == expected:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the fake's Fleet did not settle within {timeout:g} s: {states}")

    def game_servers(self) -> list[Json]:
        servers: list[Json] = self._call("GET", "/_fake/gameservers")
        return servers

    def allocations(self) -> list[Json]:
        """Every allocation request the fake answered so far, oldest first."""
        records: list[Json] = self._call("GET", "/_fake/allocations")
        return records

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/_fake/gameservers/{name}")

    def deletes(self) -> dict[str, int]:
        """API DELETEs answered 200, per GameServer."""
        counts: dict[str, int] = self._call("GET", "/_fake/deletes")
        return counts

    def scale(self, replicas: int) -> None:
        """Set the Fleet's replicas (Allocated GameServers are never scaled away)."""
        self._call("POST", "/_fake/fleet", body={"replicas": replicas})

    def _call(self, method: str, path: str, timeout: float = 30.0, body: Json | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, "Content-Type": "application/json"} if data else self.headers
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:300]
            raise RuntimeError(f"fake_agones: {method} {path} answered {e.code}: {detail}") from e
        except (OSError, urllib.error.URLError) as e:
            raise RuntimeError(f"fake_agones: {method} {path} failed: {e}") from e


def start(processes: Processes, webui_port: int, replicas: int, latency_ms: float) -> FakeCluster:
    """The fake with `replicas` GameServers (nothing behind them) and every API request
    delayed by `latency_ms`; returns once all of them are Ready and its kubeconfig exists."""
    port, token = free_port(), secrets.token_urlsafe(24)
    kubeconfig = processes.workdir / "fake_agones" / "kubeconfig"
    argv: list[str | Path] = [
        sys.executable, "-m", "fake_agones",
        "--port", str(port),
        "--webui-port", str(webui_port),
        "--replicas", str(replicas),
        "--namespace", NAMESPACE,
        "--fleet", FLEET,
        "--backing", "none",
        "--latency-ms", f"{latency_ms:g}",
        "--kubeconfig", kubeconfig,
        "--token", token,
    ]  # fmt: skip
    service = processes.start("fake_agones", argv, cwd=ROOT, port=port)
    url = f"http://127.0.0.1:{port}"
    cluster = FakeCluster(service, url, token, kubeconfig, replicas)
    wait_for_http(service, url + "/_fake/gameservers", headers=cluster.headers)
    _wait_for_file(service, kubeconfig)
    cluster.ready(replicas)
    return cluster


def _wait_for_file(service: Service, path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or not service.alive():
            raise StartupError(f"{service.name} wrote no {path.name}:\n{service.log_tail()}")
        time.sleep(0.02)
