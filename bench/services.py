"""How to start each contestant and helper (origin, nginx, CHP, Redis, the allocator) and know
that it is ready."""

from __future__ import annotations

import json
import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import fake_iap
from bench import nginx
from bench.procs import Processes, Service, StartupError, free_port, wait_for_http
from bench.tools import ROOT

IDENTITY_HEADER = "X-Goog-Authenticated-User-Email"
BENCH_EMAIL = "bench@example.com"
IAP_KEY = fake_iap.new_key("bench")
DEFAULT_ALLOCATOR_COMMAND = [str(ROOT / ".venv" / "bin" / "sd-allocator"), "serve"]


def identity(email: str = BENCH_EMAIL) -> dict[str, str]:
    """What IAP sends: the unsigned email (`SDA_IDENTITY=header` trusts it) and the signed token
    (`SDA_IDENTITY=iap` verifies it and checks the email against it). Every contestant gets
    both, so the extra bytes cost them all alike. A fresh token each call: IAP's live 10 min."""
    return {
        IDENTITY_HEADER: f"accounts.google.com:{email}",
        fake_iap.ASSERTION_HEADER: fake_iap.token(IAP_KEY, email),
    }


def base_url(service: Service) -> str:
    return f"http://127.0.0.1:{service.port}"


def _start_nginx(processes: Processes, binary: Path, name: str, config: str) -> Service:
    workdir = processes.workdir / name
    conf = nginx.write(workdir, config)
    return processes.start(
        name, [binary, "-p", workdir, "-c", conf, "-e", workdir / "error.log"], cwd=workdir
    )


def start_origin(processes: Processes, binary: Path) -> Service:
    port = free_port()
    config = nginx.origin_config(processes.workdir / "origin", port)
    service = _start_nginx(processes, binary, "origin", config)
    service.port = port
    wait_for_http(service, base_url(service) + "/")
    return service


def start_pods_origin(processes: Processes, binary: Path, hosts: list[str], port: int) -> Service:
    """The fixed-body origin on `port` of every address in `hosts` (the fake's Pod IPs)."""
    config = nginx.pods_config(processes.workdir / "pods", hosts, port)
    service = _start_nginx(processes, binary, "pods", config)
    service.port = port
    wait_for_http(service, f"http://{hosts[0]}:{port}/")
    return service


def start_nginx_proxy(processes: Processes, binary: Path, origin_port: int) -> Service:
    port = free_port()
    config = nginx.proxy_config(processes.workdir / "nginx", port, origin_port)
    service = _start_nginx(processes, binary, "nginx", config)
    service.port = port
    wait_for_http(service, base_url(service) + "/")
    return service


def start_chp(processes: Processes, binary: Path, origin_port: int) -> Service:
    port, api_port = free_port(), free_port()
    argv: list[str | Path] = [
        binary,
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--api-ip", "127.0.0.1",
        "--api-port", str(api_port),
        "--default-target", f"http://127.0.0.1:{origin_port}",
        "--log-level", "warn",
    ]  # fmt: skip
    service = processes.start(
        "chp",
        argv,
        env={"CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16)},
        port=port,
    )
    wait_for_http(service, base_url(service) + "/")
    return service


def start_redis(processes: Processes, binary: Path) -> Service:
    port = free_port()
    workdir = processes.workdir / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    argv: list[str | Path] = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", workdir,
        "--daemonize", "no",
    ]  # fmt: skip
    service = processes.start("redis", argv, port=port)
    _wait_for_redis(service)
    return service


def _wait_for_redis(service: Service, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise StartupError(f"redis-server exited during start-up:\n{service.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", service.port or 0), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise StartupError(f"redis-server did not answer PING within {timeout:.0f} s")


def start_allocator(
    processes: Processes,
    command: list[str],
    target_port: int,
    redis_port: int,
    iap_keys_url: str | None = None,
) -> Service:
    """The allocator with the static backend and a real Redis, header identity (or `iap`,
    verifying tokens against the JWK set at `iap_keys_url`); waits for /_allocator/healthz."""
    backend = {"SDA_BACKEND": "static", "SDA_STATIC_TARGET": f"127.0.0.1:{target_port}"}
    if iap_keys_url:
        backend.update(
            SDA_IDENTITY="iap", SDA_IAP_AUDIENCE=fake_iap.AUDIENCE, SDA_IAP_JWKS_URL=iap_keys_url
        )
    return _start_allocator(processes, command, redis_port, backend)


def start_agones_allocator(
    processes: Processes,
    command: list[str],
    redis_port: int,
    kubeconfig: Path,
    namespace: str,
    fleet: str,
) -> Service:
    """The allocator with the Agones backend, allocating from `fleet` in the cluster that
    `kubeconfig` names; waits for /_allocator/healthz."""
    backend = {
        "SDA_BACKEND": "agones",
        "SDA_NAMESPACE": namespace,
        "SDA_FLEET": fleet,
        "KUBECONFIG": str(kubeconfig),
        # The sidecar's folder confirmation is the pod's time, not the allocator's overhead.
        "SDA_OUTPUTS_WAIT": "0",
    }
    return _start_allocator(processes, command, redis_port, backend)


def _start_allocator(
    processes: Processes, command: list[str], redis_port: int, backend: dict[str, str]
) -> Service:
    """Header identity, a real Redis, warnings only, no metrics port; `backend` adds the rest
    (and may choose another identity)."""
    port = free_port()
    service = processes.start(
        "allocator",
        command,
        env={
            "SDA_IDENTITY": "header",
            **backend,
            "SDA_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "SDA_PORT": str(port),
            "SDA_METRICS_PORT": "0",
            "SDA_LOG_LEVEL": "warning",
        },
        cwd=ROOT,
        port=port,
        drop_env_prefix="SDA_",
    )
    wait_for_http(service, base_url(service) + "/_allocator/healthz", timeout=60)
    return service


def start_ws_origin(processes: Processes) -> Service:
    """bench/origin_ws.py: GET / (1 KiB), WebSocket echo at /ws, POST /upload byte counter."""
    port = free_port()
    service = processes.start(
        "origin_ws",
        [sys.executable, "-m", "bench.origin_ws", "--port", str(port)],
        cwd=ROOT,
        port=port,
    )
    wait_for_http(service, base_url(service) + "/")
    return service


def status(base: str, email: str) -> str:
    """The `state` field of /_allocator/status for `email` (or `HTTP <code>`)."""
    request = urllib.request.Request(base + "/_allocator/status", headers=identity(email))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            state = json.loads(response.read()).get("state")
            return str(state)
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"


def wait_until_ready(service: Service, email: str = BENCH_EMAIL, timeout: float = 60.0) -> None:
    """Poll /_allocator/status until the person's session is `ready`, nudging allocation with
    a normal request while the state is still `none`."""
    base = base_url(service)
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        if not service.alive():
            raise StartupError(f"allocator exited:\n{service.log_tail()}")
        state = status(base, email)
        if state == "ready":
            return
        if state == "none":
            request = urllib.request.Request(base + "/", headers=identity(email))
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
            except urllib.error.HTTPError:
                pass  # 503 "allocating" is the expected answer here
        time.sleep(0.1)
    raise StartupError(
        f"session for {email} not ready within {timeout:.0f} s (last state: {state}):\n"
        f"{service.log_tail()}"
    )
