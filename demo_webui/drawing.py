"""The picture a demo generation makes: a function of prompt, seed and size only.

Colours and shapes come from a SHA-256 of the prompt and seed, so the same inputs always give the
same pixels, and different prompts or seeds visibly differ. The prompt is written on the picture so
a person can tell whose picture they are looking at.
"""

from __future__ import annotations

import hashlib
import random
import textwrap

from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]

_SHAPES = 6
_MAX_PROMPT_CHARS = 300


def draw_picture(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    digest = hashlib.sha256(f"{seed}\n{prompt}".encode()).digest()
    rng = random.Random(digest)
    picture = _gradient(_colour(rng), _colour(rng), width, height)
    draw = ImageDraw.Draw(picture, "RGBA")
    for _ in range(_SHAPES):
        _draw_shape(draw, rng, width, height)
    _draw_caption(draw, prompt, seed, width, height)
    return picture


def _colour(rng: random.Random) -> Colour:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _gradient(top: Colour, bottom: Colour, width: int, height: int) -> Image.Image:
    mask = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    return Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), mask
    )


def _draw_shape(draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int) -> None:
    x0, x1 = sorted((rng.randrange(width), rng.randrange(width)))
    y0, y1 = sorted((rng.randrange(height), rng.randrange(height)))
    fill = (*_colour(rng), 160)
    if rng.random() < 0.5:
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    else:
        draw.rectangle((x0, y0, x1, y1), fill=fill)


def _draw_caption(
    draw: ImageDraw.ImageDraw, prompt: str, seed: int, width: int, height: int
) -> None:
    size = max(10, min(width, height) // 20)
    font = ImageFont.load_default(size=size)
    columns = max(8, int(width / (size * 0.6)))
    text = prompt[:_MAX_PROMPT_CHARS] or "(empty prompt)"
    lines = [*textwrap.wrap(text, columns)[: max(1, height // (size * 2))], f"seed {seed}"]
    margin = max(4, size // 2)
    draw.multiline_text(
        (margin, margin),
        "\n".join(lines),
        font=font,
        fill=(255, 255, 255, 255),
        stroke_width=max(1, size // 12),
        stroke_fill=(0, 0, 0, 255),
    )
