"""A1111's settings through ``/sdapi/v1/options``: the "Paths for saving" that place pictures,
and a few everyday ones (picture format, CLIP skip, quick settings) that are only kept.

As in A1111, ``outdir_samples`` (empty by default) overrides every per-kind folder when set, and
a relative folder is taken relative to the WebUI's own folder (A1111: its install folder). The demo
makes only txt2img pictures, so only ``outdir_samples`` and ``outdir_txt2img_samples`` change
where it writes; the other keys are stored and reported, as A1111 would.

Unlike A1111, a folder must lie inside ``root`` (the person's folder unless told otherwise): the
allocator forwards every path to a person's WebUI, and Gradio serves whatever is in the picture
folder, so a folder outside would let one person read another's pictures.

Started with ``--hide-ui-dir-config``, as a pod's WebUI is, no folder can be changed at all; posting
a folder's current value is still fine (settings pages post every value). A1111 refuses these
changes too, but silently: it answers 200 and keeps the old value (``Options.set`` swallows the
``RuntimeError`` of ``Options.__setattr__``). The demo answers 403, so a client learns it.

The folders are kept as given, absolute but with their symlinks: a link on the way is followed
anew for every generation (`demo_webui.outputs.OutputFolders.at`) and by Gradio on every request.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

OUTDIR_KEYS = (
    "outdir_samples",
    "outdir_txt2img_samples",
    "outdir_img2img_samples",
    "outdir_extras_samples",
    "outdir_grids",
    "outdir_txt2img_grids",
    "outdir_img2img_grids",
    "outdir_save",
    "outdir_init_images",
)


OptionValue = str | int | float | bool | list[str]


class OptionsUpdate(BaseModel):
    """A POST body: any of the known keys; an unknown key is a 422. Besides the folders, a
    few of A1111's everyday settings (what a person expects to find again next time)."""

    model_config = ConfigDict(extra="forbid")

    outdir_samples: str | None = None
    outdir_txt2img_samples: str | None = None
    outdir_img2img_samples: str | None = None
    outdir_extras_samples: str | None = None
    outdir_grids: str | None = None
    outdir_txt2img_grids: str | None = None
    outdir_img2img_grids: str | None = None
    outdir_save: str | None = None
    outdir_init_images: str | None = None
    samples_format: str | None = None
    CLIP_stop_at_last_layers: int | None = None
    quicksettings_list: list[str] | None = None


class OutsideRoot(ValueError):
    """A folder that is not inside the folder this WebUI may write to."""


class Restricted(ValueError):
    """A folder change while the folders are fixed (``--hide-ui-dir-config``)."""


def default_options(outputs_dir: Path) -> dict[str, OptionValue]:
    """A1111's defaults, except that txt2img pictures go straight into ``outputs_dir``."""
    return {
        "samples_format": "png",
        "CLIP_stop_at_last_layers": 1,
        "quicksettings_list": ["sd_model_checkpoint"],
        "outdir_samples": "",
        "outdir_txt2img_samples": str(outputs_dir),
        "outdir_img2img_samples": str(outputs_dir / "img2img-images"),
        "outdir_extras_samples": str(outputs_dir / "extras-images"),
        "outdir_grids": "",
        "outdir_txt2img_grids": str(outputs_dir / "txt2img-grids"),
        "outdir_img2img_grids": str(outputs_dir / "img2img-grids"),
        "outdir_save": str(outputs_dir / "saved"),
        "outdir_init_images": str(outputs_dir / "init-images"),
    }


class Options:
    """The current values, changed as a whole by `update`; ``on_change`` runs after each change."""

    def __init__(
        self, values: Mapping[str, OptionValue], base: Path, root: Path, fixed: bool = False
    ) -> None:
        self._values = dict(values)
        self._base = base
        self._root = root.resolve()
        self._fixed = fixed
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def snapshot(self) -> dict[str, OptionValue]:
        with self._lock:
            return dict(self._values)

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def update(self, changes: Mapping[str, OptionValue]) -> None:
        """Apply all of ``changes`` or, if one is refused, none of them; a value that stays the
        same is no change. Only the folders are checked."""
        with self._lock:
            changed = {k: v for k, v in changes.items() if v != self._values[k]}
            for key, value in changed.items():
                if key not in OUTDIR_KEYS:
                    continue
                if self._fixed:
                    raise Restricted(
                        f"not possible to set '{key}' because it is restricted with "
                        "--hide-ui-dir-config"
                    )
                if value and not self._resolve(str(value)).is_relative_to(self._root):
                    raise OutsideRoot(f"{key}: {value} is not inside {self._root}")
            self._values.update(changed)
        for listener in self._listeners:
            listener()

    def txt2img_folder(self) -> Path:
        """Absolute, ``..`` removed, symlinks kept."""
        with self._lock:
            chosen = self._values["outdir_samples"] or self._values["outdir_txt2img_samples"]
        return self._absolute(str(chosen))

    def _absolute(self, folder: str) -> Path:
        return Path(os.path.abspath(self._base / folder))

    def _resolve(self, folder: str) -> Path:
        """Where pictures would go now: `_absolute`, then symlinks resolved, as Gradio compares
        paths (``gradio.utils.is_in_or_equal``) and `OutputFolders.at` saves."""
        return self._absolute(folder).resolve()
