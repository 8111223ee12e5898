"""Requests to delete a person's picture, for where the allocator may not delete it itself.

Behind Agones the allocator reads the share's ``users/`` read-only: only the pods' sidecars write
people's folders. So "delete" in "My pictures" writes a request instead, into a folder of its own
that the allocator and the sidecars mount and no WebUI does: ``<deletions>/<slug>.<key>.json``
holding the picture's name, size and modification time, where the key is a hash of the name (so
asking twice makes one request). One flat folder: an idle sidecar's look is one directory read.

The allocator hides a picture with a request at once; the pods' sidecars delete the file if it is
still that same file (same size and time: a later picture that got the same name is not
touched). A request stays a few minutes after it is done, so that the allocator, whose view of
the share may lag (NFS caches), and its other replicas go on hiding the picture meanwhile.

Both sides read requests as hostile: bounded size, a JSON object of exactly these fields, a name
every part of which is a plain name (`sidecar.names`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import uuid
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from sidecar.names import UnsafeName, check_name, check_parts

SUFFIX = ".json"
KEY_LENGTH = 40
MAX_REQUEST_BYTES = 8192
MAX_PENDING = 10_000
"""Requests read in one look; more wait for the next."""
DRAFT_PREFIX = ".draft-"
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Deletion:
    name: str  # relative to the person's outputs folder, '/'-separated
    size: int
    modified_ns: int

    @property
    def key(self) -> str:
        return key_of(self.name)


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:KEY_LENGTH]


def file_name(slug: str, name: str) -> str:
    return f"{slug}.{key_of(name)}{SUFFIX}"


def owner_of(request_file: str) -> tuple[str, str] | None:
    """(slug, key) of a request's file name; None for any other name (drafts, strays)."""
    if request_file.startswith(".") or not request_file.endswith(SUFFIX):
        return None
    slug, _, key = request_file[: -len(SUFFIX)].rpartition(".")
    if len(key) != KEY_LENGTH or not slug:
        return None
    try:
        check_name(slug)
    except UnsafeName:
        return None
    return slug, key


def encode(deletion: Deletion) -> bytes:
    fields = {"name": deletion.name, "size": deletion.size, "modified_ns": deletion.modified_ns}
    return json.dumps(fields).encode()


def decode(raw: bytes) -> Deletion | None:
    """A request as written by `write`; None for anything else."""
    if len(raw) > MAX_REQUEST_BYTES:
        return None
    try:
        fields = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict) or set(fields) != {"name", "size", "modified_ns"}:
        return None
    name, size, modified_ns = fields["name"], fields["size"], fields["modified_ns"]
    if not (isinstance(name, str) and _is_count(size) and _is_count(modified_ns)):
        return None
    try:
        check_parts(tuple(name.split("/")))
    except UnsafeName:
        return None
    return Deletion(name, size, modified_ns)


def write(deletions_dir: Path, slug: str, deletion: Deletion) -> None:
    """Ask for ``deletion``: written beside, then renamed into place. Raises OSError."""
    folder = os.open(deletions_dir, _DIRECTORY)
    draft = f"{DRAFT_PREFIX}{uuid.uuid4().hex}"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(draft, flags, 0o660, dir_fd=folder), "wb") as target:
            target.write(encode(deletion))
        os.replace(draft, file_name(slug, deletion.name), src_dir_fd=folder, dst_dir_fd=folder)
    except OSError:
        _remove_quietly(draft, folder)
        raise
    finally:
        os.close(folder)


def asked(deletions_dir: Path, slug: str, name: str) -> Deletion | None:
    """The request for the person's picture ``name``, if there is one (one file read)."""
    try:
        folder = os.open(deletions_dir, _DIRECTORY)
    except OSError:
        return None
    try:
        return read(folder, file_name(slug, name))
    finally:
        os.close(folder)


def pending(deletions_dir: Path, slug: str) -> list[Deletion]:
    """The person's requests (from at most `MAX_PENDING` in all); none when unreadable."""
    try:
        folder = os.open(deletions_dir, _DIRECTORY)
    except OSError:
        return []
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in islice(entries, MAX_PENDING)]
        mine = [request_file for request_file in names if _of(request_file, slug)]
        found = (read(folder, request_file) for request_file in mine)
        return [deletion for deletion in found if deletion is not None]
    except OSError:
        return []
    finally:
        os.close(folder)


def read(folder: int, request_file: str) -> Deletion | None:
    """The request in ``request_file`` of the open ``folder``; None if gone, a link or bad,
    or if it cannot be read now."""
    try:
        return read_or_raise(folder, request_file)
    except OSError:
        return None


class Unreadable(OSError):
    """The request could not be read now (the share failing); it may be fine later."""


def read_or_raise(folder: int, request_file: str) -> Deletion | None:
    """The request, None if it is not one the allocator writes (a link, a folder, a FIFO,
    bad contents, gone); raises `Unreadable` when the share fails."""
    try:
        descriptor = os.open(request_file, _FILE, dir_fd=folder)
    except OSError as error:
        _raise_if_unreadable(error)
        return None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        deletion = decode(os.read(descriptor, MAX_REQUEST_BYTES + 1))
    except OSError as error:
        _raise_if_unreadable(error)
        return None
    finally:
        os.close(descriptor)
    owner = owner_of(request_file)
    if deletion is None or owner is None or owner[1] != deletion.key:
        return None
    return deletion


def _raise_if_unreadable(error: OSError) -> None:
    """`Unreadable`, unless the error says it is no request (gone, a link, a folder, a FIFO)."""
    if error.errno not in (errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENOTDIR):
        raise Unreadable(error.errno, error.strerror)


def _of(request_file: str, slug: str) -> bool:
    owner = owner_of(request_file)
    return owner is not None and owner[0] == slug


def _remove_quietly(name: str, folder: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=folder)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
