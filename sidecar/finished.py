"""Finding the WebUI's finished files: regular files whose size and mtime stayed the same
across two looks.

The walk never follows a symlink: folders are opened one at a time relative to their parent with
``O_NOFOLLOW``, and only entries that are themselves folders or regular files (not links to
them) are looked at. FIFOs, sockets, devices and links are passed over without being opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from sidecar.names import MAX_DEPTH, UnsafeName, check_parts

log = logging.getLogger(__name__)

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Version:
    """One file as it was seen: where, and what its metadata said."""

    parts: tuple[str, ...]
    size: int
    mtime_ns: int
    inode: int

    @property
    def path(self) -> str:
        return "/".join(self.parts)


def open_folder(name: str, parent: int | None = None) -> int:
    """An fd for the folder ``name`` (relative to ``parent``); raises `OSError` (``ELOOP``,
    ``ENOTDIR``) rather than follow a symlink."""
    return os.open(name, FOLDER_FLAGS, dir_fd=parent)


def open_below(top: Path, parts: Iterable[str], make_mode: int | None = None) -> int:
    """An fd for the folder ``top/<parts...>``, each part opened with `open_folder` (never
    through a link; ``top`` itself may be one, it is ours); with ``make_mode`` missing parts are
    made first. Raises `OSError`."""
    current = os.open(top, FOLDER_FLAGS & ~os.O_NOFOLLOW)
    for part in parts:
        try:
            if make_mode is not None:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, make_mode, dir_fd=current)
            following = open_folder(part, current)
        finally:
            os.close(current)
        current = following
    return current


def walk(root: str) -> Generator[Version]:
    """Every regular file under ``root``; nothing at all if ``root`` is not a real folder."""
    try:
        fd = open_folder(root)
    except OSError as error:
        if not isinstance(error, FileNotFoundError):
            log.error("the outputs folder %s cannot be read: %s", root, error)
        return
    yield from _walk(fd, ())


def _walk(fd: int, prefix: tuple[str, ...]) -> Iterator[Version]:
    try:
        with os.scandir(fd) as entries:
            found = list(entries)
        for entry in found:
            parts = (*prefix, entry.name)
            try:
                check_parts(parts)
                info = entry.stat(follow_symlinks=False)
            except (UnsafeName, OSError):
                continue
            if stat.S_ISREG(info.st_mode):
                yield Version(parts, info.st_size, info.st_mtime_ns, info.st_ino)
            elif stat.S_ISDIR(info.st_mode) and len(parts) <= MAX_DEPTH:
                yield from _walk_into(fd, parts)
    finally:
        os.close(fd)


def _walk_into(parent: int, parts: tuple[str, ...]) -> Iterator[Version]:
    try:
        fd = open_folder(parts[-1], parent)
    except OSError:
        return  # replaced by a link or removed since it was listed
    yield from _walk(fd, parts)


MAX_SEEN = 50_000
"""Files one look takes in; a WebUI that saves more (five times `MAX_FILES`' default) only
slows itself, never the sidecar's memory or its other work."""


class FinishedFiles:
    """Remembers the last look; `look` answers which files have not changed since."""

    def __init__(self, root: str, max_seen: int = MAX_SEEN) -> None:
        self._root = root
        self._max_seen = max_seen
        self._over_reported = False
        self._last: dict[tuple[str, ...], Version] = {}

    def look(self) -> tuple[list[Version], list[Version]]:
        """(finished, still changing): each file seen now, by whether it matches the last look."""
        with closing(walk(self._root)) as seen:  # closing: its open folders, when cut short
            now = {version.parts: version for version in islice(seen, self._max_seen)}
        if len(now) >= self._max_seen and not self._over_reported:
            self._over_reported = True
            log.error(
                "the outputs folder holds %d files or more: only those are looked at", len(now)
            )
        finished = [v for v in now.values() if self._last.get(v.parts) == v]
        changing = [v for v in now.values() if self._last.get(v.parts) != v]
        self._last = now
        return finished, changing
