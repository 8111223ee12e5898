"""``python -m demo_webui``: one person's demo WebUI.

Gradio is imported only after the arguments are checked and its caches are pointed at the
person's folder (see `demo_webui.isolation`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from demo_webui.isolation import isolate_gradio
from demo_webui.settings import Settings


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1-65535)")
    return port


def _seconds(text: str) -> float:
    seconds = float(text)
    if not 0 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{seconds} is not between 0 and 3600 seconds")
    return seconds


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m demo_webui",
        description="A Gradio stand-in for Stable Diffusion WebUI (AUTOMATIC1111), for tests.",
    )
    parser.add_argument("--port", type=_port, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user-dir", type=Path, required=True, help="this person's folder")
    parser.add_argument(
        "--outputs-dir",
        type=Path,
        required=True,
        help="where pictures go; a symlink on the way is followed anew for every generation",
    )
    parser.add_argument(
        "--delay", type=_seconds, default=2.0, help="seconds one generation takes (default 2.0)"
    )
    parser.add_argument(
        "--outdir-root",
        type=Path,
        help="the folder /sdapi/v1/options may point picture folders into (default: --user-dir)",
    )
    parser.add_argument(
        "--hide-ui-dir-config",
        action="store_true",
        help="like A1111's flag: the picture folders cannot be changed through /sdapi/v1/options",
    )
    args = parser.parse_args(argv)
    return Settings(
        host=args.host,
        port=args.port,
        user_dir=args.user_dir.resolve(),
        outputs_dir=Path(os.path.abspath(args.outputs_dir)),  # not resolved: see settings.py
        delay=args.delay,
        outdir_root=(args.outdir_root or args.user_dir).resolve(),
        hide_ui_dir_config=args.hide_ui_dir_config,
    )


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    isolate_gradio(settings.gradio_dir)

    from demo_webui.app import create_app, end_streams  # loads gradio: after isolate_gradio
    from demo_webui.server import serve

    app = create_app(settings)
    serve(app, settings.host, settings.port, before_shutdown=lambda: end_streams(app))


if __name__ == "__main__":
    main()
