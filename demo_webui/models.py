"""The A1111-compatible API's request and response bodies (the shapes of ``modules/api/models.py``).

A1111 accepts many more txt2img fields (sampler, cfg_scale, ...); unknown fields are ignored here,
as pydantic does by default, so real clients can send their usual bodies.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

MAX_SEED = 2**32 - 1


class Txt2ImgRequest(BaseModel):
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED, description="-1 picks a random seed")
    steps: int = Field(default=20, ge=1, le=150)
    width: int = Field(default=512, ge=64, le=2048)
    height: int = Field(default=512, ge=64, le=2048)
    batch_size: int = Field(default=1, ge=1, le=8)


class Txt2ImgResponse(BaseModel):
    images: list[str] = Field(description="base64-encoded PNG files")
    parameters: dict[str, Any]
    info: str = Field(description="JSON text: seeds, prompts and infotexts of the generation")


class ProgressState(BaseModel):
    """A1111's ``shared.state.dict()``."""

    skipped: bool = False
    interrupted: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float = Field(ge=0, le=1)
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None
