"""Keep Gradio's caches inside the person's own folder.

Gradio caches every file it serves (uploads, generated images) under ``GRADIO_TEMP_DIR``, by
default ``/tmp/gradio``, and serves anything in that folder to whoever asks for its path. Two demo
WebUIs on one machine sharing that folder would hand one person's pictures to another. Some Gradio
modules read these variables when they are imported, so `isolate_gradio` must run before the first
``import gradio``; `check_isolated` confirms that it did.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def isolate_gradio(gradio_dir: Path) -> None:
    """Point Gradio's temporary and example caches at ``gradio_dir`` and switch off telemetry."""
    if "gradio" in sys.modules:
        raise RuntimeError("isolate_gradio() must run before gradio is imported")
    gradio_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_dir)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(gradio_dir / "cached_examples")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def check_isolated(gradio_dir: Path) -> None:
    """Raise if Gradio would cache files anywhere but ``gradio_dir``."""
    from gradio import route_utils, utils  # imported here: this module must not load gradio

    expected = str(gradio_dir)
    found = {
        "upload folder": utils.get_upload_folder(),
        "temp dir": route_utils.DEFAULT_TEMP_DIR,
        "examples cache": str(utils.get_cache_folder().parent),
    }
    wrong = {name: path for name, path in found.items() if path != expected}
    if wrong:
        raise RuntimeError(
            f"Gradio caches outside {expected}: {wrong}; call isolate_gradio() first"
        )
