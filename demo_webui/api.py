"""The A1111-compatible HTTP routes: readiness probe, txt2img, progress and options."""

from __future__ import annotations

import asyncio
import base64
import json

from fastapi import APIRouter, HTTPException

from demo_webui.generation import Generator
from demo_webui.models import ProgressResponse, Txt2ImgRequest, Txt2ImgResponse
from demo_webui.options import Options, OptionsUpdate, OptionValue, OutsideRoot, Restricted
from demo_webui.progress import GenerationTracker


def build_api(generator: Generator, tracker: GenerationTracker, options: Options) -> APIRouter:
    router = APIRouter()

    @router.get("/internal/ping")
    async def ping() -> dict[str, str]:
        """Readiness probe: answers as soon as the server serves, also during a generation."""
        return {}

    @router.post("/sdapi/v1/txt2img")
    async def txt2img(request: Txt2ImgRequest) -> Txt2ImgResponse:
        generation = await asyncio.to_thread(generator.txt2img, request, "scripts_txt2img")
        return Txt2ImgResponse(
            images=[base64.b64encode(p.png).decode("ascii") for p in generation.pictures],
            parameters=request.model_dump(),
            info=json.dumps(generation.info),
        )

    @router.get("/sdapi/v1/progress")
    async def progress(skip_current_image: bool = False) -> ProgressResponse:
        """The generation in flight, from the UI or the API. There is never a current image."""
        return tracker.snapshot()

    @router.get("/sdapi/v1/options")
    async def get_options() -> dict[str, OptionValue]:
        return options.snapshot()

    @router.post("/sdapi/v1/options")
    async def set_options(update: OptionsUpdate) -> None:
        """Like A1111, answers ``null``; unlike it, refuses unknown keys (A1111: a 500) and, with
        ``--hide-ui-dir-config``, a folder change with a 403 (A1111: a silent no-op)."""
        try:
            options.update(update.model_dump(exclude_none=True))
        except OutsideRoot as error:
            raise HTTPException(422, str(error)) from error
        except Restricted as error:
            raise HTTPException(403, str(error)) from error

    return router
