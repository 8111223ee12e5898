"""One person's demo WebUI: the A1111 API routes and the Gradio UI on one FastAPI app."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from fastapi import FastAPI

from demo_webui.api import build_api
from demo_webui.generation import Generator
from demo_webui.isolation import check_isolated
from demo_webui.options import Options, default_options
from demo_webui.outputs import OutputFolders
from demo_webui.progress import GenerationTracker
from demo_webui.settings import Settings
from demo_webui.ui import build_ui

IDLE_POLL_SECONDS = 0.05
"""How often Gradio's queue looks for work while idle. Gradio polls every 1 ms by default, which
costs about 5 % of a CPU per idle WebUI; every 50 ms costs about 0.5 % and delays a job by at most
that."""


def create_app(settings: Settings) -> FastAPI:
    """The app for ``settings``; `demo_webui.isolation.isolate_gradio` must have run first."""
    check_isolated(settings.gradio_dir)
    tracker = GenerationTracker()
    options = Options(
        default_options(settings.outputs_dir),
        base=settings.user_dir,
        root=settings.outdir_root,
        fixed=settings.hide_ui_dir_config,
    )
    folders = OutputFolders()
    generator = Generator(lambda: folders.at(options.txt2img_folder()), tracker, settings.delay)

    app = FastAPI(title="demo_webui", docs_url=None, redoc_url=None)
    app.include_router(build_api(generator, tracker, options))
    blocks = build_ui(generator)
    _poll_queue_less_often(blocks)
    options.on_change(lambda: _serve_only(blocks, options.txt2img_folder()))
    return gr.mount_gradio_app(  # type: ignore[no-any-return]
        app,
        blocks,
        path="/",
        server_name=settings.host,
        server_port=settings.port,
        allowed_paths=[str(options.txt2img_folder())],
        footer_links=["api"],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
    )


def _serve_only(blocks: gr.Blocks, folder: Path) -> None:
    """Let Gradio serve pictures from ``folder`` and no longer from the previous one.

    Gradio serves files only from its own cache (settings.gradio_dir) and ``allowed_paths``, and
    moves a picture the UI returns into its cache only if ``allowed_paths`` holds its folder. It
    reads ``blocks.allowed_paths`` on every request (checked on Gradio 6.31); a new list replaces
    the old one in one step, so a request never sees it half-changed.

    ``folder`` keeps its symlinks. Gradio resolves both the allowed folder and the requested file
    on every request (``gradio.utils.is_in_or_equal``), so when a pod's outputs link is switched,
    Gradio serves the pictures of the link's new target and no longer those of the old one: no
    wider root (such as the whole share, which holds everyone's pictures) needs allowing.
    """
    blocks.allowed_paths = [str(folder)]


def _poll_queue_less_often(blocks: gr.Blocks) -> None:
    """Gradio has no setting for this; these attributes are private (checked on Gradio 6.31)."""
    queue = getattr(blocks, "_queue", None)
    for name in ("sleep_when_free", "progress_update_sleep_when_free"):
        if hasattr(queue, name):
            setattr(queue, name, IDLE_POLL_SECONDS)


def end_streams(app: FastAPI) -> None:
    """End Gradio's endless SSE streams (``/gradio_api/heartbeat/...``, one per open tab).

    uvicorn drains open connections before it runs the lifespan shutdown, and Gradio ends these
    streams only from ``Blocks.close()``, which a mounted app never calls: without this, SIGTERM
    would wait for every browser tab to close.
    """
    for route in app.routes:
        stop_event = getattr(getattr(route, "app", None), "stop_event", None)
        if stop_event is not None:
            stop_event.set()
