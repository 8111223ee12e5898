"""PictureShelf: each person's own pictures (`<users_dir>/<slug>/outputs/**`), read safely.

Every file there was written by a WebUI, so every file is hostile: a name is split into plain
components (no `..`, no dot-files, no backslash or NUL, nothing absolute) and opened one
component at a time relative to the folder above it with `O_NOFOLLOW`, so a symlink anywhere
(also `outputs` itself, or the person's folder) ends the walk; only regular files are served,
listed or zipped. Listings are newest first with an opaque cursor, built by one `scandir` walk
over directory descriptors and kept for a few seconds per person (paging through 10 000
pictures walks the folder once). The zip of everything streams with bounded memory.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import errno
import json
import os
import re
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from allocator.slugs import slug_for
from sidecar import deletion_requests
from sidecar.deletion_requests import Deletion

OUTPUTS = "outputs"
CHUNK = 64 * 1024
LISTING_TTL = 2.0  # seconds a person's listing is reused (paging; thumbnails of one page)
MAX_DEPTH = 16
MAX_NAME = 4096
ZIP_FIRST, ZIP_LAST = 315532800.0, 4354819199.0  # 1980-01-01, 2107-12-31 23:59:59 UTC
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO
_CACHED_PEOPLE = 256
_READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\/]")  # controls, NUL, either separator


class NoSuchPicture(Exception):
    """Not a picture of this person (missing, hidden, a link, a directory, outside)."""


class ReadOnly(Exception):
    """The pictures are readable here but cannot be changed (behind Agones the allocator
    mounts the share's users/ read-only: only the pods' sidecars write it)."""


class Undeletable(Exception):
    """A picture whose name the WebUI pods' sidecars would not delete (too long, or a name
    they never deliver), behind Agones."""


class Picture(NamedTuple):
    name: str  # relative to the person's outputs folder, '/'-separated
    size: int
    modified_ns: int

    @property
    def modified(self) -> float:
        return self.modified_ns / 1e9

    @property
    def order(self) -> tuple[int, str]:
        """Newest first, then by name."""
        return (-self.modified_ns, self.name)


@dataclass(frozen=True)
class Page:
    pictures: list[Picture]
    next: str | None  # the cursor of the page after, None on the last


def components(name: str) -> list[str] | None:
    """The plain components of a requested name, or None when it could mean anything else."""
    if not name or len(name) > MAX_NAME or name.startswith("/"):
        return None
    parts = name.split("/")
    return parts if all(map(plain_component, parts)) else None


def plain_component(part: str) -> bool:
    """A name that means one entry of one folder: not empty, not `.`/`..`/any dot-file, no
    separators of any system, no NUL or other control character."""
    if not part or part[0] == "." or _UNSAFE.search(part) is not None:
        return False
    try:  # a name that is not UTF-8 (a lone surrogate from scandir) cannot be shown or sent
        encoded = part.encode()
    except UnicodeEncodeError:
        return False
    return len(encoded) <= 255


def encode_cursor(picture: Picture) -> str:
    raw = json.dumps([picture.modified_ns, picture.name], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str] | None:
    """The (order) position a cursor stands for, None for anything not made by us."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        modified_ns, name = json.loads(raw)
    except (ValueError, TypeError, RecursionError, binascii.Error):
        return None
    if not isinstance(modified_ns, int) or not isinstance(name, str):
        return None
    return (-modified_ns, name)


class PersonFolder:
    """One person's outputs folder, opened and walked without following any link."""

    def __init__(self, users_dir: Path, slug: str) -> None:
        self.users_dir = users_dir
        self.slug = slug

    def _open_root(self) -> int:
        """A descriptor of `<users_dir>/<slug>/outputs`; the two last steps never a link."""
        top = os.open(self.users_dir, _DIRECTORY & ~os.O_NOFOLLOW)
        try:
            return _walk(top, [self.slug, OUTPUTS])
        finally:
            os.close(top)

    def _parent_of(self, name: str) -> tuple[int, str]:
        """A descriptor of the folder holding `name`, and its last component; NoSuchPicture
        for a name that is not plain or a folder that is not there (or is a link)."""
        parts = components(name)
        if parts is None:
            raise NoSuchPicture(name)
        try:
            root = self._open_root()
        except OSError:
            raise NoSuchPicture(name) from None
        try:
            return _walk(root, parts[:-1]), parts[-1]
        except OSError:
            raise NoSuchPicture(name) from None
        finally:
            os.close(root)

    def open(self, name: str) -> tuple[int, os.stat_result]:
        """A read descriptor of the regular file `name` and its stat; NoSuchPicture else."""
        parent, last = self._parent_of(name)
        try:
            return _open_regular(parent, last)
        finally:
            os.close(parent)

    def delete(self, name: str) -> None:
        """Remove the regular file `name`; NoSuchPicture when there is none."""
        parent, last = self._parent_of(name)
        try:
            info = os.stat(last, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                raise NoSuchPicture(name)
            os.unlink(last, dir_fd=parent)
        except OSError as exc:
            if exc.errno in _READ_ONLY:
                raise ReadOnly(name) from None
            raise NoSuchPicture(name) from None
        finally:
            os.close(parent)

    def scan(self) -> list[Picture]:
        """Every regular, visible file, newest first; an empty list when there is no folder."""
        try:
            root = self._open_root()
        except OSError:
            return []
        found: list[Picture] = []
        try:
            _scan(root, "", found, 0)
        finally:
            os.close(root)
        found.sort(key=lambda picture: picture.order)
        return found


def _walk(start: int, parts: list[str]) -> int:
    """A new descriptor of the directory `parts` below `start`, never through a link."""
    current = os.dup(start)
    for part in parts:
        try:
            following = os.open(part, _DIRECTORY, dir_fd=current)
        finally:
            os.close(current)
        current = following
    return current


def _open_regular(parent: int, part: str) -> tuple[int, os.stat_result]:
    try:
        descriptor = os.open(part, _FILE, dir_fd=parent)
    except OSError:
        raise NoSuchPicture(part) from None
    try:
        info = os.fstat(descriptor)
        # Not a regular file, or a hard link: a picture has exactly one name, in this folder.
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise NoSuchPicture(part)
        os.set_blocking(descriptor, True)
    except (OSError, NoSuchPicture):
        os.close(descriptor)
        raise NoSuchPicture(part) from None
    return descriptor, info


def _scan(directory: int, prefix: str, found: list[Picture], depth: int) -> None:
    with os.scandir(directory) as entries:
        subfolders: list[str] = []
        for entry in entries:
            name = entry.name
            if not plain_component(name):
                continue
            if entry.is_file(follow_symlinks=False):
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:  # gone since the directory was read
                    continue
                if info.st_nlink != 1:  # a hard link (to someone else's file?): never shown
                    continue
                found.append(Picture(prefix + name, info.st_size, info.st_mtime_ns))
            elif entry.is_dir(follow_symlinks=False):
                subfolders.append(name)
    if depth >= MAX_DEPTH:
        return
    for name in subfolders:
        try:
            below = os.open(name, _DIRECTORY, dir_fd=directory)
        except OSError:
            continue  # replaced by a link or removed since
        try:
            _scan(below, f"{prefix}{name}/", found, depth + 1)
        finally:
            os.close(below)


class PictureShelf:
    """Everyone's pictures under `users_dir`, each person's listing kept for a few seconds.
    With `deletions_dir`, deleting asks the pods' sidecars to (`sidecar.deletion_requests`),
    and a picture asked to go is hidden from then on."""

    def __init__(
        self, users_dir: Path, listing_ttl: float = LISTING_TTL, deletions_dir: Path | None = None
    ) -> None:
        self.users_dir = users_dir
        self.listing_ttl = listing_ttl
        self.deletions_dir = deletions_dir
        self._listings: dict[str, tuple[float, list[Picture]]] = {}
        self._lock = threading.Lock()

    def folder(self, email: str) -> PersonFolder:
        return PersonFolder(self.users_dir, slug_for(email))

    def writable(self) -> bool:
        """Whether pictures can be deleted (directly, or by asking the sidecars)."""
        if self.deletions_dir is not None:
            return os.access(self.deletions_dir, os.W_OK)
        try:
            return not os.statvfs(self.users_dir).f_flag & os.ST_RDONLY
        except OSError:
            return False

    def listing(self, email: str) -> list[Picture]:
        """All of the person's pictures, newest first (blocking: call from a thread)."""
        slug = slug_for(email)
        now = time.monotonic()
        with self._lock:
            kept = self._listings.get(slug)
        if kept is not None and now - kept[0] < self.listing_ttl:
            return kept[1]
        pictures = self._without_deleted(slug, PersonFolder(self.users_dir, slug).scan())
        scanned = time.monotonic()  # a slow scan (NFS) is still fresh when it ends
        with self._lock:
            self._listings = {
                kept_slug: entry
                for kept_slug, entry in self._listings.items()
                if scanned - entry[0] < self.listing_ttl
            }
            if len(self._listings) < _CACHED_PEOPLE:
                self._listings[slug] = (scanned, pictures)
        return pictures

    def forget(self, email: str) -> None:
        with self._lock:
            self._listings.pop(slug_for(email), None)

    def page(self, email: str, limit: int, cursor: str | None) -> Page:
        """Up to `limit` pictures after `cursor` (from the newest without one)."""
        pictures = self.listing(email)
        start = 0
        if cursor:
            position = decode_cursor(cursor)
            if position is None:
                raise ValueError("not a cursor of this listing")
            start = bisect.bisect_right(pictures, position, key=lambda picture: picture.order)
        chosen = pictures[start : start + limit]
        more = start + limit < len(pictures)
        return Page(chosen, encode_cursor(chosen[-1]) if more and chosen else None)

    def open(self, email: str, name: str) -> tuple[int, os.stat_result]:
        """`PersonFolder.open`, but a picture asked to go is no picture."""
        descriptor, info = self.folder(email).open(name)
        if self._asked_to_go(slug_for(email), name, info):
            os.close(descriptor)
            raise NoSuchPicture(name)
        return descriptor, info

    def delete(self, email: str, name: str) -> None:
        try:
            if self.deletions_dir is None:
                self.folder(email).delete(name)
            else:
                self._ask_to_delete(email, name)
        finally:
            self.forget(email)

    def _ask_to_delete(self, email: str, name: str) -> None:
        descriptor, info = self.open(email, name)
        os.close(descriptor)
        deletion = Deletion(name, info.st_size, info.st_mtime_ns)
        if deletion_requests.decode(deletion_requests.encode(deletion)) is None:
            raise Undeletable(name)
        assert self.deletions_dir is not None
        deletion_requests.write(self.deletions_dir, slug_for(email), deletion)

    def _asked_to_go(self, slug: str, name: str, info: os.stat_result) -> bool:
        if self.deletions_dir is None:
            return False
        asked = deletion_requests.asked(self.deletions_dir, slug, name)
        return asked == Deletion(name, info.st_size, info.st_mtime_ns)

    def _without_deleted(self, slug: str, pictures: list[Picture]) -> list[Picture]:
        if self.deletions_dir is None:
            return pictures
        asked = deletion_requests.pending(self.deletions_dir, slug)
        if not asked:
            return pictures
        gone = {(d.name, d.size, d.modified_ns) for d in asked}
        return [p for p in pictures if (p.name, p.size, p.modified_ns) not in gone]


class _Sink:
    """Where `zipfile` writes: bytes collect here until the stream takes them."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def zip_stream(folder: PersonFolder, pictures: list[Picture]) -> Iterator[bytes]:
    """A zip of `pictures` (stored, not compressed: pictures are), in chunks of about CHUNK
    bytes; memory stays at a chunk whatever the total. Files gone or turned hostile since the
    listing are left out."""
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for picture in pictures:
            try:
                descriptor, info = folder.open(picture.name)
            except NoSuchPicture:
                continue
            with os.fdopen(descriptor, "rb") as source:
                entry = zipfile.ZipInfo(picture.name, _zip_time(info.st_mtime))
                entry.compress_type = zipfile.ZIP_STORED
                entry.file_size = info.st_size
                with archive.open(entry, "w", force_zip64=True) as target:
                    for chunk in read_exactly(source, info.st_size):
                        target.write(chunk)
                        if len(sink.buffer) >= CHUNK:
                            yield sink.take()
            yield sink.take()
    yield sink.take()


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    # zip says 1980 to 2107; any other time (a hostile mtime) is said as the nearest end
    moment = time.gmtime(min(max(mtime, ZIP_FIRST), ZIP_LAST))
    return (moment.tm_year, moment.tm_mon, moment.tm_mday, moment.tm_hour, moment.tm_min,
            moment.tm_sec)  # fmt: skip


def read_chunks(source: BinaryIO, size: int) -> Iterator[bytes]:
    """The first `size` bytes of an opened picture (what Content-Length announced, even if
    the file grows meanwhile), a chunk at a time; closed at the end (or, should the reader
    go before the first chunk, when the file object is collected)."""
    with source:
        yield from read_exactly(source, size)


def read_exactly(source: BinaryIO, size: int) -> Iterator[bytes]:
    """At most `size` bytes; short if the file shrank (the receiver then sees it cut)."""
    left = size
    while left > 0 and (chunk := source.read(min(CHUNK, left))):
        left -= len(chunk)
        yield chunk
