"""A WebUI stand-in for the scarcity scenario; standard library only, started by path:

    python bench/scarcity_webui.py <port> <user_dir> <events.jsonl>

Every answer names the person whose WebUI this is (the last part of `user_dir`, their slug),
so a client can tell its own WebUI from anyone else's. `/work?seconds=N` answers after N
seconds: a generation, which keeps the WebUI busy. Anything else answers at once. It appends
one JSON line to the events file when it starts and when it is told to stop (SIGTERM), with
the number of generations it was in the middle of: how long each GPU was paid for, and proof
of any busy WebUI taken away.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs, urlsplit

MAX_WORK_SECONDS = 60.0


class Recorder:
    def __init__(self, path: str, slug: str) -> None:
        self.path, self.slug = path, slug
        self.working = 0
        self.lock = threading.Lock()

    def record(self, kind: str, **extra: object) -> None:
        line = {"kind": kind, "slug": self.slug, "pid": os.getpid(), "at": time.time(), **extra}
        data = (json.dumps(line) + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, data)  # one short append: whole lines, even from many WebUIs
        finally:
            os.close(descriptor)


def handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/work":
                seconds = float(parse_qs(url.query).get("seconds", ["0"])[0])
                with recorder.lock:
                    recorder.working += 1
                try:
                    time.sleep(min(max(seconds, 0.0), MAX_WORK_SECONDS))
                finally:
                    with recorder.lock:
                        recorder.working -= 1
            body = recorder.slug.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def main(argv: list[str]) -> None:
    port, user_dir, events = int(argv[0]), argv[1], argv[2]
    recorder = Recorder(events, os.path.basename(user_dir.rstrip("/")))
    recorder.record("start")

    def stop(signum: int, frame: FrameType | None) -> None:
        recorder.record("stop", working=recorder.working)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(recorder))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
