"""Carrying out people's requests to delete a picture (`sidecar.deletion_requests`).

Every pod's sidecar, whoever its pod belongs to, looks at all requests every period: each
sidecar mounts ``users/`` writable, and a pod with no owner yet still serves the people who have
no WebUI. For each request the named file is removed if it is still the same regular file (size
and modification time as asked), reached without following any link, inside the person's
outputs folder; then the request is removed. Several sidecars may do the same request at once:
whoever comes second finds nothing left to do. A bad request is removed with one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from pathlib import Path

from sidecar import deletion_requests
from sidecar.deletion_requests import SUFFIX, Deletion
from sidecar.errors import describe
from sidecar.names import UnsafeName, check_name
from sidecar.pacing import Every

log = logging.getLogger(__name__)

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Deletions:
    def __init__(self, users_dir: Path, deletions_dir: Path) -> None:
        self._users = users_dir
        self._requests = deletions_dir
        self._reminder = Every()

    async def run(self, period: float) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except OSError as error:
                if self._reminder.due():
                    log.warning("deletion requests could not be read: %s", describe(error))
            await asyncio.sleep(period)

    def sweep(self) -> int:
        """Carry out every pending request; the number of pictures removed."""
        if not self._requests.is_dir():
            return 0
        removed = 0
        with os.scandir(self._requests) as people:
            slugs = [entry.name for entry in people if entry.is_dir(follow_symlinks=False)]
        for slug in slugs:
            with contextlib.suppress(UnsafeName):
                removed += self._sweep_person(check_name(slug))
        return removed

    def _sweep_person(self, slug: str) -> int:
        try:
            folder = deletion_requests.open_person(self._requests, slug)
        except OSError:
            return 0
        removed = 0
        try:
            for deletion, file_name in _requests_in(folder):
                if deletion is not None:
                    removed += self._remove(slug, deletion)
                try:
                    os.unlink(file_name, dir_fd=folder)
                except FileNotFoundError:
                    continue  # another pod's sidecar did it
                if deletion is None:
                    log.warning("removed a bad deletion request of %s: %.80r", slug, file_name)
        finally:
            os.close(folder)
        return removed

    def _remove(self, slug: str, deletion: Deletion) -> int:
        """Remove the picture if it is still the one asked for; 1 if it was removed."""
        *folders, last = ["outputs", *deletion.name.split("/")]
        try:
            parent = _walk(self._users, [slug, *folders])
        except OSError:
            return 0  # no such folder (or a link): nothing of this person's to remove
        try:
            info = os.stat(last, dir_fd=parent, follow_symlinks=False)
            if not _same(info, deletion):
                log.info("%s's %.80r changed since it was asked to go; kept", slug, deletion.name)
                return 0
            os.unlink(last, dir_fd=parent)
        except FileNotFoundError:
            return 0
        except OSError as error:
            log.warning("could not delete %s's %.80r: %s", slug, deletion.name, describe(error))
            return 0
        finally:
            os.close(parent)
        log.info("deleted %s's %.80r as they asked", slug, deletion.name)
        return 1


def _requests_in(folder: int) -> list[tuple[Deletion | None, str]]:
    """Each request file of an open person's folder (drafts and other names left alone)."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.name.endswith(SUFFIX) and not e.name.startswith(".")]
    found: list[tuple[Deletion | None, str]] = []
    for file_name in names[: deletion_requests.MAX_PENDING]:
        deletion = deletion_requests.read(folder, file_name)
        if deletion is not None and deletion.key + SUFFIX != file_name:
            deletion = None
        found.append((deletion, file_name))
    return found


def _same(info: os.stat_result, deletion: Deletion) -> bool:
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_size == deletion.size
        and info.st_mtime_ns == deletion.modified_ns
    )


def _walk(top: Path, parts: list[str]) -> int:
    current = os.open(top, _DIRECTORY & ~os.O_NOFOLLOW)
    for part in parts:
        try:
            following = os.open(part, _DIRECTORY, dir_fd=current)
        finally:
            os.close(current)
        current = following
    return current
