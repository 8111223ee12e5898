"""nginx configurations: the fixed-body origin (on one port, or on every fake Pod IP) and the
plain `proxy_pass` reference proxy.

Both run one worker, no access log, and keep client connections alive without a request cap
(nginx closes a keep-alive connection after 1 000 requests by default; node and uvicorn do not,
so the cap would only add reconnects to some of the contestants).
"""

from __future__ import annotations

import os
from pathlib import Path

BODY_SIZE = 1024
ORIGIN_BODY = ("sd-allocator bench origin " * 64)[:BODY_SIZE]


def _config(workdir: Path, server: str) -> str:
    temp = {kind: workdir / kind for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    # As root nginx would hand its workers to `nobody`, who cannot enter our private temp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;

events {{
    worker_connections 16384;
}}

http {{
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};

{server}
}}
"""


def origin_config(workdir: Path, port: int) -> str:
    """A server that answers every GET/POST with 200 and the same 1 KiB body."""
    return _config(
        workdir,
        f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 '{ORIGIN_BODY}';
        }}
    }}""",
    )


def pods_config(workdir: Path, hosts: list[str], port: int) -> str:
    """The same fixed-body origin on `port` of each of `hosts` (the fake cluster's Pod IPs),
    never on 0.0.0.0, so that nothing else on the machine is answered by it."""
    listens = "\n".join(f"        listen {host}:{port} backlog=4096;" for host in hosts)
    return _config(
        workdir,
        f"""
    server {{
{listens}
        location / {{
            default_type text/plain;
            return 200 '{ORIGIN_BODY}';
        }}
    }}""",
    )


def proxy_config(workdir: Path, port: int, origin_port: int) -> str:
    """Plain `proxy_pass` with pooled keep-alive connections to the origin."""
    return _config(
        workdir,
        f"""
    upstream origin {{
        server 127.0.0.1:{origin_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}""",
    )


def write(workdir: Path, config: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "nginx.conf"
    path.write_text(config)
    return path
