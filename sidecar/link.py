"""The outputs link: the one path the WebUI saves under, and where it points.

The WebUI is started with every outputs folder under ``OUTPUTS_LINK`` (``<link>/txt2img-images``
and so on) and with ``--hide-ui-dir-config``, so nobody can move them through its settings. The
link lives on pod-local storage shared by the WebUI and sidecar containers; the sidecar points it
at ``UNASSIGNED_DIR`` (pod-local) until the pod is given to a person, then at that person's
``<share>/users/<slug>/outputs``. The WebUI follows the link each time it opens a folder, so new
pictures land in the new place at once.

A switch is atomic: a new symlink is made beside the link and renamed over it, so the WebUI finds
the old target or the new one, never nothing (a missing link would make it create a real,
pod-local folder there). Nothing here ever deletes a folder or a file: a real folder or file where
the link belongs is refused, and only symlinks are replaced.

Blocking file system calls, but on pod-local storage and quick: the sidecar makes them on its
event loop, so that no two changes of the link ever interleave.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from sidecar.outputs import SUBFOLDERS, UnsafeFolder, is_valid_slug, make_folder

log = logging.getLogger(__name__)

TEMPORARY_PREFIX = ".sidecar-new-link-"
"""A link being made beside ``OUTPUTS_LINK``; one left over by a crash is removed at start."""


class LinkError(Exception):
    """``OUTPUTS_LINK`` is not a symlink the sidecar may replace; the message is one line."""


class OutputsLink:
    def __init__(self, path: Path, unassigned: Path, share_dir: Path) -> None:
        self.path = path
        self.unassigned = unassigned
        self._share_dir = share_dir

    def adopt(self) -> str | None:
        """Take the link over at start: the slug whose folder it points at, else None.

        A link left by an earlier run of the sidecar in this pod (its container restarted) that
        points at a person's folder on this share is kept: the pod is that person's. Anything
        else, or no link at all, becomes a link to the unassigned folder. Raises `LinkError` for a
        real folder or file, and `OSError` when the file system fails; logs nothing before that.
        """
        target = self._target()
        owner = self.owner_of(target) if target is not None else None
        self._remove_leftovers()
        if owner is not None:
            log.info("the outputs link %s points at %s's folder; keeping it", self.path, owner)
            return owner
        if target is not None and Path(target) != self.unassigned:
            log.warning("the outputs link %s pointed at %s; re-pointing it", self.path, target)
        self.detach()
        return None

    def point_at(self, folder: Path) -> None:
        """Switch the link to ``folder`` in one step, if it points elsewhere; raises `LinkError`
        if it is no symlink."""
        if self._target() == str(folder):  # also refuses a real folder or file
            return
        new = self.path.with_name(TEMPORARY_PREFIX + secrets.token_hex(8))
        os.symlink(folder, new)
        try:
            os.replace(new, self.path)  # rename(2) replaces the symlink itself, never its target
        except BaseException:
            new.unlink(missing_ok=True)
            raise

    def detach(self) -> None:
        """Point the link at the unassigned folder (made as needed), unless it already does."""
        try:
            for name in ("", *SUBFOLDERS.values()):
                make_folder(self.unassigned / name)
        except UnsafeFolder as error:
            raise LinkError(f"UNASSIGNED_DIR: {error}") from None
        target = self._target()
        if target is None or Path(target) != self.unassigned:
            self.point_at(self.unassigned)
            log.info("the outputs link %s points at %s", self.path, self.unassigned)

    def owner_of(self, target: str) -> str | None:
        """The slug if ``target`` is exactly ``<share>/users/<slug>/outputs`` as the sidecar
        writes it (the share's ``users`` folder resolved), else None."""
        path = Path(target)
        slug = path.parent.name
        users = (self._share_dir / "users").resolve()
        if path.name == "outputs" and path.parent.parent == users and is_valid_slug(slug):
            return slug
        return None

    def _target(self) -> str | None:
        """What the link points at; None if there is none. Raises `LinkError` if it is no link."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return None
        if not stat.S_ISLNK(mode):
            kind = "a real folder" if stat.S_ISDIR(mode) else "a file"
            raise LinkError(
                f"OUTPUTS_LINK {self.path} is {kind}, not a symlink; the sidecar never replaces "
                "one (nothing there is deleted): move it away or fix the pod's volume mounts"
            )
        return os.readlink(self.path)

    def _remove_leftovers(self) -> None:
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        for entry in parent.glob(TEMPORARY_PREFIX + "*"):
            if entry.is_symlink():
                entry.unlink(missing_ok=True)
