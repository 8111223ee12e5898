"""Making pictures, one generation at a time, for both the Gradio UI and the HTTP API."""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL.PngImagePlugin import PngInfo

from demo_webui.drawing import draw_picture
from demo_webui.models import MAX_SEED, Txt2ImgRequest
from demo_webui.outputs import OutputFolder
from demo_webui.progress import GenerationTracker

StepCallback = Callable[[int, int], None]
"""Called with (sampling step done, total steps) after every step."""

CurrentFolder = Callable[[], OutputFolder]
"""Where pictures go now; asked once per generation, since the options API, or a symlink switched
on the way to the folder, can change it."""


@dataclass(frozen=True)
class Picture:
    path: Path
    seed: int
    png: bytes


@dataclass(frozen=True)
class Generation:
    pictures: list[Picture]
    info: dict[str, Any]


class Generator:
    """Stands in for the GPU: takes ``delay`` seconds per generation, in ``steps`` steps.

    One generation runs at a time across UI and API (A1111's ``queue_lock``). `txt2img` blocks,
    so async callers run it in a worker thread.
    """

    def __init__(self, outputs: CurrentFolder, tracker: GenerationTracker, delay: float) -> None:
        self.outputs = outputs
        self.tracker = tracker
        self.delay = delay
        self._lock = threading.Lock()

    def txt2img(
        self, request: Txt2ImgRequest, job: str, on_step: StepCallback | None = None
    ) -> Generation:
        seed = request.seed if request.seed != -1 else random.randint(0, MAX_SEED)
        seeds = [(seed + i) % (MAX_SEED + 1) for i in range(request.batch_size)]
        with self._lock:
            self.tracker.begin(job, request.steps)
            try:
                folder = self.outputs()
                self._sample(request.steps, on_step)
                pictures = [self._picture(request, s, folder) for s in seeds]
            finally:
                self.tracker.end()
        return Generation(pictures, _info(request, seeds))

    def _sample(self, steps: int, on_step: StepCallback | None) -> None:
        for step in range(1, steps + 1):
            time.sleep(self.delay / steps)
            self.tracker.step(step)
            if on_step is not None:
                on_step(step, steps)

    def _picture(self, request: Txt2ImgRequest, seed: int, folder: OutputFolder) -> Picture:
        image = draw_picture(request.prompt, seed, request.width, request.height)
        metadata = PngInfo()
        metadata.add_text("parameters", _infotext(request, seed))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=metadata)
        png = buffer.getvalue()
        return Picture(folder.save(png, seed), seed, png)


def _infotext(request: Txt2ImgRequest, seed: int) -> str:
    """A1111's generation parameters text, as stored in its PNGs."""
    lines = [request.prompt]
    if request.negative_prompt:
        lines.append(f"Negative prompt: {request.negative_prompt}")
    lines.append(
        f"Steps: {request.steps}, Seed: {seed}, Size: {request.width}x{request.height}, "
        "Model: demo_webui"
    )
    return "\n".join(lines)


def _info(request: Txt2ImgRequest, seeds: list[int]) -> dict[str, Any]:
    return {
        "prompt": request.prompt,
        "all_prompts": [request.prompt] * len(seeds),
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [request.negative_prompt] * len(seeds),
        "seed": seeds[0],
        "all_seeds": seeds,
        "steps": request.steps,
        "width": request.width,
        "height": request.height,
        "batch_size": request.batch_size,
        "infotexts": [_infotext(request, s) for s in seeds],
    }
