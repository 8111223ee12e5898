"""A person's outputs folder on the shared volume, and the checks that keep it theirs.

This is the only thing between one person's pictures and another's, so a slug is used only if it
is a plain label value that cannot name another folder, and a folder only if, with every symlink
resolved, it is exactly ``<share>/users/<slug>/outputs/<kind>``: a symlink planted anywhere on the
way (even one pointing at another person's folder, which is still "inside users/") is refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SLUG = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
"""A Kubernetes label value, lowercase: starts and ends alphanumeric, so never ``.`` or ``..``."""

FOLDER_MODE = 0o770

SUBFOLDERS = {
    "outdir_txt2img_samples": "txt2img-images",
    "outdir_img2img_samples": "img2img-images",
    "outdir_extras_samples": "extras-images",
    "outdir_txt2img_grids": "txt2img-grids",
    "outdir_img2img_grids": "img2img-grids",
    "outdir_save": "saved",
    "outdir_init_images": "init-images",
}
"""A1111's option for each kind of picture, and its folder in A1111's default layout: the WebUI
is started with each option set to ``<OUTPUTS_DIR>/<folder>`` (and ``outdir_samples`` and
``outdir_grids``, which override them when set, empty)."""


class UnsafeFolder(ValueError):
    """The slug or the folder could hand one person's pictures to someone else."""


def is_valid_slug(slug: str) -> bool:
    return SLUG.fullmatch(slug) is not None and slug not in (".", "..")


@dataclass(frozen=True)
class OutputFolders:
    """``root`` = ``<share>/users/<slug>/outputs``; ``kinds``: A1111 option → its folder."""

    root: Path
    kinds: dict[str, Path]

    @classmethod
    def under(cls, root: Path) -> OutputFolders:
        return cls(root, {key: root / name for key, name in SUBFOLDERS.items()})

    def all(self) -> list[Path]:
        return [self.root, *self.kinds.values()]


def prepare_folders(share_dir: Path, slug: str) -> OutputFolders:
    """Create ``slug``'s folders as needed, check them, and return them resolved.

    Blocking file system calls. Raises `UnsafeFolder` for a bad slug or a folder that resolves
    elsewhere, and `OSError` when the file system fails (worth retrying: it may come back).
    """
    if not is_valid_slug(slug):
        raise UnsafeFolder(f"{slug!r} is not a valid slug")
    wanted = OutputFolders.under(share_dir / "users" / slug / "outputs")
    for folder in (wanted.root.parent, *wanted.all()):
        make_folder(folder)
    safe = OutputFolders.under((share_dir / "users").resolve() / slug / "outputs")
    for folder, expected in zip(wanted.all(), safe.all(), strict=True):
        resolved = folder.resolve(strict=True)
        if resolved != expected:
            raise UnsafeFolder(f"{folder} leads to {resolved}, not {expected}")
    return safe


def make_folder(folder: Path) -> None:
    """Create ``folder`` (parents too) if missing; never follow a symlink where it should be."""
    if folder.is_symlink():
        raise UnsafeFolder(f"{folder} is a symlink")
    try:
        folder.mkdir(mode=FOLDER_MODE, parents=True)
    except FileExistsError:
        if not folder.is_dir():
            raise UnsafeFolder(f"{folder} exists and is not a folder") from None
        return
    os.chmod(folder, FOLDER_MODE)  # mkdir's mode is cut by the umask
