"""A stand-in for AUTOMATIC1111 v1.10 on exactly its web stack (Gradio 3.41.2, fastapi 0.94,
pydantic 1), for the compatibility tier of the tests. Runs from .venv-a1111:

    .venv-a1111/bin/python a1111_webui/webui.py --port 7860 --outputs-dir DIR

What matters to a proxy is done the way A1111 does it (modules/ui_tempdir.py, progress.py,
ui_gradio_extensions.py, api/api.py, webui.py):
- launched with `demo.queue(64)` and `demo.launch(prevent_thread_lock=True)`, then its API
  routes added to Gradio's FastAPI app: `/internal/ping`, `/internal/progress`,
  `/internal/pending-tasks`, `/sdapi/v1/txt2img`, `/sdapi/v1/progress`;
- Generate runs over Gradio 3's WebSocket queue (`/queue/join`), after a `submit` script that
  names the task and polls `POST /internal/progress` until it completes;
- pictures are saved in the outputs folder first, and the gallery shows that very file through
  Gradio's `/file=` route (which refuses paths with a folder starting with ".").
The model is a drawing: a few colours from the prompt and seed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr
import gradio.routes
from fastapi import FastAPI
from PIL import Image, ImageDraw, PngImagePlugin
from pydantic import BaseModel

SUBMIT_SCRIPT = """
<script>
function submit() {
    const args = Array.from(arguments);
    const id = "task(" + Math.random().toString(36).slice(2, 17) + ")";
    args[0] = id;
    pollProgress(id);
    return args;
}
function pollProgress(id) {
    const show = (text) => {
        const box = document.querySelector("#txt2img_progress");
        if (box) box.textContent = text;
    };
    const tick = () => fetch("./internal/progress", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({id_task: id, id_live_preview: -1, live_preview: false}),
    }).then((answer) => answer.json()).then((progress) => {
        if (progress.completed) { show("Done"); return; }
        show(progress.active ? Math.round(100 * (progress.progress || 0)) + "%" : "Waiting...");
        setTimeout(tick, 500);
    }).catch(() => setTimeout(tick, 1000));
    tick();
}
</script>
"""


class Tasks:
    """A1111's progress.py: the task running now, the ones waiting, the ones finished."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: str | None = None
        self.pending: dict[str, float] = {}
        self.finished: list[str] = []
        self.progress = 0.0
        self.released = threading.Event()  # with --hold: a job waits here at its first step

    def queued(self, task: str) -> None:
        with self._lock:
            self.pending[task] = time.time()

    def start(self, task: str) -> None:
        with self._lock:
            self.pending.pop(task, None)
            self.current, self.progress = task, 0.0

    def step(self, progress: float) -> None:
        with self._lock:
            self.progress = progress

    def finish(self, task: str) -> None:
        with self._lock:
            self.finished = [*self.finished[-15:], task]
            if self.current == task:
                self.current = None

    def waiting(self) -> list[str]:
        with self._lock:
            return list(self.pending)

    def running(self) -> str | None:
        with self._lock:
            return self.current

    def answer(self, task: str) -> dict[str, Any]:
        with self._lock:
            active = task == self.current
            return {
                "active": active,
                "queued": task in self.pending,
                "completed": task in self.finished,
                "progress": self.progress if active else None,
                "eta": None,
                "live_preview": None,
                "id_live_preview": -1,
                "textinfo": None if active else "Waiting...",
            }


class Painter:
    """The GPU: draws, saves to the outputs folder the way A1111 names files, and waits.
    Without an outputs folder (A1111's "Always save all generated images" off) the gallery
    shows a copy Gradio keeps in its cache (GRADIO_TEMP_DIR) instead."""

    def __init__(self, outputs: Path | None, tasks: Tasks, hold: bool, steps_delay: float) -> None:
        self.outputs = outputs
        self.tasks = tasks
        self.hold = hold
        self.steps_delay = steps_delay
        self._lock = threading.Lock()  # A1111's queue_lock: one generation at a time

    def generate(self, task: str, prompt: str, seed: int, size: int) -> Image.Image:
        with self._lock:
            self.tasks.start(task)
            try:
                self._work()
                return self._save(_draw(prompt, seed, size), prompt, seed)
            finally:
                self.tasks.finish(task)

    def _work(self) -> None:
        self.tasks.step(0.5)
        if self.hold:
            self.tasks.released.wait()
            self.tasks.released.clear()
        time.sleep(self.steps_delay)  # the GPU's pace, not a wait for anything
        self.tasks.step(1.0)

    def _save(self, image: Image.Image, prompt: str, seed: int) -> Image.Image:
        if self.outputs is None:
            return image
        folder = self.outputs / "txt2img-images" / datetime.now().strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        number = len(list(folder.glob("*.png")))
        path = folder / f"{number:05d}-{seed}.png"
        info = PngImagePlugin.PngInfo()
        info.add_text(
            "parameters", f"{prompt}\nSteps: 2, Seed: {seed}, Size: {image.width}x{image.height}"
        )
        image.save(path, pnginfo=info)
        image.already_saved_as = str(path)
        return image


def _draw(prompt: str, seed: int, size: int) -> Image.Image:
    digest = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
    image = Image.new("RGB", (size, size), tuple(digest[0:3]))
    pen = ImageDraw.Draw(image)
    for index in range(4):
        x, y = digest[3 + index] % size, digest[7 + index] % size
        pen.ellipse(
            (x - size // 6, y - size // 6, x + size // 6, y + size // 6),
            fill=tuple(digest[11 + 3 * index : 14 + 3 * index]),
        )
    return image


def serve_saved_files(demo: gr.Blocks) -> None:
    """A1111's ui_tempdir: a picture already saved in the outputs folder is shown from there
    (registered with Gradio as a file the app made) instead of a copy in Gradio's cache."""
    original = gr.components.IOComponent.pil_to_temp_file

    def pil_to_temp_file(self: Any, image: Image.Image, dir: str, format: str = "png") -> str:
        saved = getattr(image, "already_saved_as", None)
        if not saved or not os.path.isfile(saved):
            copy: str = original(self, image, dir, format)
            return copy
        demo.temp_file_sets[0] = demo.temp_file_sets[0] | {os.path.abspath(saved)}
        return f"{saved}?{os.path.getmtime(saved)}"

    gr.components.IOComponent.pil_to_temp_file = pil_to_temp_file


def add_scripts_to_pages() -> None:
    """A1111's ui_gradio_extensions: its scripts go into every page Gradio renders."""
    original = gradio.routes.templates.TemplateResponse

    def template_response(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        response.body = response.body.replace(b"</head>", f"{SUBMIT_SCRIPT}</head>".encode())
        response.init_headers()
        return response

    gradio.routes.templates.TemplateResponse = template_response


def create_ui(painter: Painter, tasks: Tasks) -> gr.Blocks:
    def txt2img(task: str, prompt: str, seed: float) -> tuple[list[Image.Image], str, str]:
        tasks.queued(task)
        image = painter.generate(task, prompt, int(seed), 128)
        info = {"prompt": prompt, "seed": int(seed), "task": task}
        return [image], json.dumps(info), f"<p>{prompt}</p>"

    with gr.Blocks(analytics_enabled=False, title="Stable Diffusion") as demo:
        with gr.Tab("txt2img", elem_id="tab_txt2img"):
            task = gr.Textbox(visible=False, elem_id="txt2img_id_task")
            prompt = gr.Textbox(label="Prompt", elem_id="txt2img_prompt", lines=3)
            seed = gr.Number(label="Seed", value=-1, elem_id="txt2img_seed", precision=0)
            generate = gr.Button("Generate", elem_id="txt2img_generate", variant="primary")
            gr.HTML('<div id="txt2img_progress"></div>')
            gallery = gr.Gallery(label="Output", elem_id="txt2img_gallery", show_label=False)
            info = gr.Textbox(visible=False, elem_id="generation_info_txt2img")
            html = gr.HTML(elem_id="html_info_txt2img")
        generate.click(
            txt2img,
            _js="submit",
            inputs=[task, prompt, seed],
            outputs=[gallery, info, html],
            api_name="txt2img",
            show_progress=False,
        )
    return demo


class ProgressRequest(BaseModel):
    id_task: str | None = None
    id_live_preview: int = -1
    live_preview: bool = True


class Txt2ImgRequest(BaseModel):
    prompt: str = ""
    seed: int = -1
    width: int = 64
    height: int = 64
    steps: int = 2


def add_api(app: FastAPI, painter: Painter, tasks: Tasks) -> None:
    """What webui.py adds to Gradio's app after launch (ui.setup_ui_api, progress, --api)."""

    @app.get("/internal/ping")
    def ping() -> dict[str, Any]:
        return {}

    @app.post("/internal/progress")
    def progress_of(request: ProgressRequest) -> dict[str, Any]:
        return tasks.answer(request.id_task or "")

    @app.get("/internal/pending-tasks")
    def pending() -> dict[str, Any]:
        waiting = tasks.waiting()
        return {"size": len(waiting), "tasks": waiting}

    @app.post("/sdapi/v1/txt2img")
    def txt2img(request: Txt2ImgRequest) -> dict[str, Any]:
        task = f"task({uuid.uuid4().hex[:15]})"
        tasks.queued(task)
        image = painter.generate(task, request.prompt, request.seed, request.width)
        data = io.BytesIO()
        image.save(data, format="PNG")
        info = {"prompt": request.prompt, "seed": request.seed}
        return {
            "images": [base64.b64encode(data.getvalue()).decode()],
            "parameters": request.dict(),
            "info": json.dumps(info),
        }

    @app.get("/sdapi/v1/progress")
    def progress() -> dict[str, Any]:
        running = tasks.running()
        answer = tasks.answer(running or "")
        return {
            "progress": answer["progress"] or 0.0,
            "eta_relative": 0.0,
            "state": {"job_count": 1 if running else 0},
            "current_image": None,
            "textinfo": None,
        }


def add_release(app: FastAPI, tasks: Tasks) -> None:
    """Tests only (--hold): let the job that waits go on."""

    @app.post("/_test/release")
    def release() -> dict[str, Any]:
        tasks.released.set()
        return {}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="A1111's --listen is 0.0.0.0")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--outputs-dir", type=Path, required=True)
    parser.add_argument("--hold", action="store_true", help="tests: jobs wait for /_test/release")
    parser.add_argument(
        "--no-save-samples", action="store_true", help="pictures only in Gradio's cache"
    )
    parser.add_argument("--steps-delay", type=float, default=0.2, help="seconds a job takes")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    tasks = Tasks()
    outputs = None if args.no_save_samples else args.outputs_dir.resolve()
    painter = Painter(outputs, tasks, args.hold, args.steps_delay)
    add_scripts_to_pages()
    demo = create_ui(painter, tasks)
    serve_saved_files(demo)
    demo.queue(64)
    app, _, _ = demo.launch(
        server_name=args.host,
        server_port=args.port,
        prevent_thread_lock=True,
        app_kwargs={"docs_url": "/docs", "redoc_url": "/redoc"},
        root_path="",
        show_api=False,
    )
    add_api(app, painter, tasks)
    if args.hold:
        add_release(app, tasks)
    print(f"A1111 stand-in ready at {datetime.now(UTC).isoformat()}", flush=True)
    while True:  # webui.py's wait_on_server: the server runs in Gradio's thread
        time.sleep(1)


if __name__ == "__main__":
    main()
