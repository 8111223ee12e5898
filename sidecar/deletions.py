"""Carrying out people's requests to delete a picture (`sidecar.deletion_requests`).

Every pod's sidecar, whoever its pod belongs to, looks at the requests every period (with
jitter, so pods do not look at once): each sidecar mounts ``users/`` writable, and a pod with no
owner yet still serves the people who have no WebUI. For a request the named file is deleted if
it is still the same regular file (size and modification time as asked), reached without
following any link, inside the person's ``outputs/``. Several sidecars may do the same request:
whoever comes second finds nothing left to do.

What becomes of a request:
- done, or nothing to do (the file is gone, or is another file now): it stays `KEEP_DONE`
  seconds, so the allocator goes on hiding the picture while its view of the share catches up,
  then goes. This sidecar does not look at it again meanwhile;
- a bad request (not one the allocator writes): removed at once, one log line;
- the share failing (EIO, EACCES, ...): tried again at the next look, for up to `KEEP_FAILING`
  seconds; one log line per failure and file.
A request file is removed only if it is still the one that was read (same inode): one the
allocator wrote again meanwhile is kept.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
import os
import random
import stat
import time
from pathlib import Path

from sidecar import deletion_requests
from sidecar.deletion_requests import Deletion
from sidecar.errors import describe
from sidecar.finished import open_below
from sidecar.pacing import Every

log = logging.getLogger(__name__)

KEEP_DONE = 300.0
KEEP_FAILING = 86_400.0
_NOT_THERE = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP}  # gone, or a link where a folder was


class Outcome(enum.Enum):
    DELETED = "deleted"
    SETTLED = "nothing to do"
    FAILED = "failed"


class Deletions:
    def __init__(self, users_dir: Path, deletions_dir: Path) -> None:
        self._users = users_dir
        self._requests = deletions_dir
        self._settled: dict[tuple[str, int], float] = {}  # (file, inode) -> its mtime
        self._reported: set[tuple[str, int]] = set()
        self._reminder = Every()

    async def run(self, period: float) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except OSError as error:
                if self._reminder.due():
                    log.warning("deletion requests could not be read: %s", describe(error))
            await asyncio.sleep(period * random.uniform(0.5, 1.5))

    def sweep(self, now: float | None = None) -> int:
        """Carry out every request; the number of pictures deleted. Raises OSError only when
        the folder of requests cannot be read at all."""
        now = time.time() if now is None else now
        try:
            folder = open_below(self._requests, ())
        except FileNotFoundError:
            return 0
        try:
            with os.scandir(folder) as entries:
                found = [(entry.name, info) for entry in entries if (info := _lstat(entry))]
        finally:
            os.close(folder)
        seen = {(name, info.st_ino) for name, info in found}
        self._settled = {key: value for key, value in self._settled.items() if key in seen}
        self._reported &= seen
        deleted = 0
        for name, info in found:
            try:
                deleted += self._one(name, info, now)
            except OSError as error:  # the folder of requests itself failing: the next look
                if self._reminder.due():
                    log.warning("deletion request %.120r: %s", name, describe(error))
        return deleted

    def _one(self, request_file: str, info: os.stat_result, now: float) -> int:
        """Deal with one request; 1 if a picture was deleted."""
        owner = deletion_requests.owner_of(request_file)
        if owner is None:
            return 0  # a draft being written, or not ours
        key = (request_file, info.st_ino)
        age = now - info.st_mtime
        if key in self._settled:
            if age > KEEP_DONE:
                self._remove_request(request_file, info.st_ino)
            return 0
        folder = open_below(self._requests, ())
        try:  # Unreadable (the share failing) goes up: the request stays for the next look
            deletion = deletion_requests.read_or_raise(folder, request_file)
        finally:
            os.close(folder)
        if deletion is None or not stat.S_ISREG(info.st_mode):
            if self._remove_request(request_file, info.st_ino):  # not: gone meanwhile
                log.warning("removed a bad deletion request: %.120r", request_file)
            self._settled[key] = info.st_mtime  # one that cannot be removed is not read again
            return 0
        outcome = self._delete(owner[0], deletion, key)
        if outcome is Outcome.FAILED:
            if age > KEEP_FAILING:
                log.error("giving up on deleting %s's %.80r", owner[0], deletion.name)
                self._remove_request(request_file, info.st_ino)
            return 0
        self._settled[key] = info.st_mtime
        return 1 if outcome is Outcome.DELETED else 0

    def _delete(self, slug: str, deletion: Deletion, key: tuple[str, int]) -> Outcome:
        *folders, last = ["outputs", *deletion.name.split("/")]
        try:
            parent = open_below(self._users, [slug, *folders])
        except OSError as error:
            return self._failed(slug, deletion, error, key)
        try:
            info = os.stat(last, dir_fd=parent, follow_symlinks=False)
            if not _same(info, deletion):
                return Outcome.SETTLED  # another file has the name now: not the one asked for
            os.unlink(last, dir_fd=parent)
        except OSError as error:
            return self._failed(slug, deletion, error, key)
        finally:
            os.close(parent)
        log.info("deleted %s's %.80r as they asked", slug, deletion.name)
        return Outcome.DELETED

    def _failed(
        self, slug: str, deletion: Deletion, error: OSError, key: tuple[str, int]
    ) -> Outcome:
        if error.errno in _NOT_THERE:
            return Outcome.SETTLED
        if key not in self._reported:
            self._reported.add(key)
            log.warning(
                "could not delete %s's %.80r, trying again: %s",
                slug,
                deletion.name,
                describe(error),
            )
        return Outcome.FAILED

    def _remove_request(self, request_file: str, inode: int) -> bool:
        """Remove the request file if it is still the one seen (not one written since);
        True if this removed it."""
        try:
            folder = open_below(self._requests, ())
        except OSError:
            return False
        try:
            if os.stat(request_file, dir_fd=folder, follow_symlinks=False).st_ino != inode:
                return False
            os.unlink(request_file, dir_fd=folder)
        except OSError:
            return False  # another pod's sidecar removed it, or the share fails: next look
        finally:
            os.close(folder)
        return True


def _lstat(entry: os.DirEntry[str]) -> os.stat_result | None:
    try:
        return entry.stat(follow_symlinks=False)
    except OSError:
        return None  # gone since the folder was read


def _same(info: os.stat_result, deletion: Deletion) -> bool:
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_size == deletion.size
        and info.st_mtime_ns == deletion.modified_ns
    )
