"""The Gradio page: a txt2img tab like A1111's, on the same generator as the API.

The tab remembers the last seed it used (A1111's "reuse seed" button) in a ``gr.State``. Like most
Gradio 6 apps with per-tab state, the page therefore keeps an SSE stream open at
``/gradio_api/heartbeat/{session_hash}`` for as long as it is open: the allocator must not take that
stream for activity.
"""

from __future__ import annotations

import gradio as gr
from pydantic import ValidationError

from demo_webui.generation import Generator
from demo_webui.models import Txt2ImgRequest

API_NAME = "txt2img"
"""gradio_client calls ``predict(prompt, negative_prompt, seed, steps, width, height,
api_name="/txt2img")`` and gets the path of a PNG back (the seed State is hidden from clients)."""


def build_ui(generator: Generator) -> gr.Blocks:
    def txt2img(
        prompt: str,
        negative_prompt: str,
        seed: float | None,
        steps: float,
        width: float,
        height: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's way to ask for progress
    ) -> tuple[str, int]:
        try:
            request = Txt2ImgRequest(
                prompt=prompt,
                negative_prompt=negative_prompt,
                seed=-1 if seed is None else int(seed),
                steps=int(steps),
                width=int(width),
                height=int(height),
            )
        except ValidationError as error:
            problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors())
            raise gr.Error(f"Please check the settings ({problems}).") from error

        def report(step: int, total: int) -> None:
            progress((step, total), desc="Sampling", unit="steps")

        picture = generator.txt2img(request, job="txt2img", on_step=report).pictures[0]
        return str(picture.path), picture.seed

    def reuse_seed(last_seed: int) -> int:
        return last_seed

    with gr.Blocks(title="Stable Diffusion (demo)") as blocks, gr.Tab("txt2img"):
        last_seed = gr.State(-1)
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=3, elem_id="txt2img_prompt")
                negative = gr.Textbox(
                    label="Negative prompt", lines=2, elem_id="txt2img_neg_prompt"
                )
                with gr.Row():
                    seed = gr.Number(label="Seed", value=-1, precision=0, elem_id="txt2img_seed")
                    reuse = gr.Button("Reuse last seed", elem_id="txt2img_reuse_seed")
                steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps")
                width = gr.Slider(64, 1024, value=512, step=8, label="Width")
                height = gr.Slider(64, 1024, value=512, step=8, label="Height")
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                image = gr.Image(label="Output", type="filepath", format="png", elem_id="output")
        generate.click(
            txt2img,
            inputs=[prompt, negative, seed, steps, width, height],
            outputs=[image, last_seed],
            api_name=API_NAME,
        )
        reuse.click(
            reuse_seed, inputs=last_seed, outputs=seed, queue=False, api_visibility="private"
        )
    return blocks  # type: ignore[no-any-return]
