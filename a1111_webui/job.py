"""Runs one txt2img job with gradio_client 0.5 (A1111's client generation) over Gradio 3's
WebSocket queue, and prints what came back as JSON. Runs from .venv-a1111:

    .venv-a1111/bin/python a1111_webui/job.py URL --prompt TEXT [--header 'Name: value']

`--header` is sent with every request and WebSocket (the identity a deployment adds). The
gallery's pictures are downloaded through the `/file=` route, as a browser would show them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gradio_client.client
import requests
from gradio_client import Client


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--downloads", type=Path, required=True)
    return parser.parse_args()


def send_headers_everywhere(extra: dict[str, str]) -> None:
    """gradio_client 0.5 takes no headers of its own (only a hub token, which it sends as
    `Authorization: Bearer`); ours go into the headers it builds for its WebSocket and into
    every HTTP request, the picture downloads included."""
    build = gradio_client.client.build_hf_headers
    send = requests.Session.request

    def with_extra(**kwargs: Any) -> dict[str, str]:
        return {**build(**kwargs), **extra}

    def request(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        kwargs["headers"] = {**(kwargs.get("headers") or {}), **extra}
        return send(self, method, url, **kwargs)

    gradio_client.client.build_hf_headers = with_extra
    requests.Session.request = request  # type: ignore[assignment]


def main() -> None:
    args = parse_args()
    headers = dict(part.split(":", 1) for part in args.header)
    send_headers_everywhere({name.strip(): value.strip() for name, value in headers.items()})
    client = Client(args.url, verbose=False, output_dir=str(args.downloads))
    job = client.submit("task(from-gradio-client)", args.prompt, args.seed, api_name="/txt2img")
    gallery, info, _ = job.result(timeout=300)
    # A1111 names a saved picture "<path>?<mtime>"; gradio_client keeps the suffix.
    pictures = sorted(str(p) for p in Path(gallery).rglob("*.png*") if p.is_file())
    print(
        json.dumps(
            {"pictures": pictures, "info": json.loads(info), "status": str(job.status().code)}
        )
    )


if __name__ == "__main__":
    main()
