"""``python -m fake_agones``: serve a fake Agones cluster until SIGTERM or SIGINT.

Prints one line, ``fake_agones serving on URL``, once it answers; with ``--kubeconfig`` the
file appears (atomically) at the same moment.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from fake_agones.backing import Backing, NoBacking, ProcessBacking
from fake_agones.server import FakeAgones
from fake_agones.sidecar_backing import SidecarBacking


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fake_agones", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--webui-port", type=int, default=None, help="every Pod's WebUI port")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--fleet", default="sd-webui")
    parser.add_argument(
        "--backing",
        choices=("none", "demo_webui", "sidecar"),
        default="none",
        help="sidecar: the demo WebUI and the real sidecar per Pod (needs --share)",
    )
    parser.add_argument("--share", type=Path, default=None, help="the sidecars' SHARE_DIR")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--token", default=None, help="bearer token (default: a random one)")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="write a kubeconfig here")
    parser.add_argument("--data-dir", type=Path, default=None, help="the Pods' folders")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    fake = FakeAgones(
        namespace=args.namespace,
        fleet=args.fleet,
        replicas=args.replicas,
        webui_port=args.webui_port,
        backing=backing_for(args),
        host=args.host,
        port=args.port,
        token=args.token,
        latency_ms=args.latency_ms,
        data_dir=args.data_dir,
    )
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    fake.start()
    try:
        if args.kubeconfig is not None:
            fake.write_kubeconfig(args.kubeconfig)
        print(f"fake_agones serving on {fake.url}", flush=True)
        done.wait()
    finally:
        fake.stop()


def backing_for(args: argparse.Namespace) -> Backing:
    if args.backing == "sidecar":
        if args.share is None:
            raise SystemExit("python -m fake_agones: --backing sidecar needs --share DIR")
        return SidecarBacking(args.share)
    return ProcessBacking.demo_webui() if args.backing == "demo_webui" else NoBacking()


if __name__ == "__main__":
    main()
