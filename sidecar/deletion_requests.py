"""Requests to delete a person's picture, for where the allocator may not delete it itself.

Behind Agones the allocator reads the share's ``users/`` read-only: only the pods' sidecars write
people's folders. So "delete" in "My pictures" writes a request instead, in a folder of its own
that the allocator and the sidecars mount and no WebUI does: ``<deletions>/<slug>/<key>.json``
holding the picture's name, size and modification time. The allocator hides a picture with a
pending request at once; every pod's sidecar looks at the requests every few seconds and removes
the file if it is still that same file (same size and time: a later picture that got the same
name is not touched), then the request.

The key is a hash of the name, so asking twice makes one request. Both sides read requests as
hostile: bounded size, a JSON object of exactly these fields, a name every part of which is a
plain name (`sidecar.names`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from sidecar.names import UnsafeName, check_parts

SUFFIX = ".json"
MAX_REQUEST_BYTES = 8192
MAX_PENDING = 10_000
"""Requests of one person read at a time; more wait for the next look."""
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Deletion:
    name: str  # relative to the person's outputs folder, '/'-separated
    size: int
    modified_ns: int

    @property
    def key(self) -> str:
        return key_of(self.name)


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40]


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


def encode(deletion: Deletion) -> bytes:
    fields = {"name": deletion.name, "size": deletion.size, "modified_ns": deletion.modified_ns}
    return json.dumps(fields).encode()


def write(deletions_dir: Path, slug: str, deletion: Deletion) -> None:
    """Ask for ``deletion``: written beside, then renamed into place. Raises OSError."""
    data = encode(deletion)
    top = os.open(deletions_dir, _DIRECTORY & ~os.O_NOFOLLOW)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(slug, 0o770, dir_fd=top)
        folder = os.open(slug, _DIRECTORY, dir_fd=top)
    finally:
        os.close(top)
    draft = f".{uuid.uuid4().hex}"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(draft, flags, 0o660, dir_fd=folder), "wb") as target:
            target.write(data)
        os.replace(draft, deletion.key + SUFFIX, src_dir_fd=folder, dst_dir_fd=folder)
    finally:
        os.close(folder)


def pending(deletions_dir: Path, slug: str) -> dict[str, Deletion]:
    """The person's requests by key (at most `MAX_PENDING`); empty when there are none."""
    try:
        folder = open_person(deletions_dir, slug)
    except OSError:
        return {}
    found: dict[str, Deletion] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if len(found) >= MAX_PENDING:
                    break
                if entry.name.endswith(SUFFIX) and entry.is_file(follow_symlinks=False):
                    deletion = read(folder, entry.name)
                    if deletion is not None and deletion.key + SUFFIX == entry.name:
                        found[deletion.key] = deletion
    finally:
        os.close(folder)
    return found


def open_person(deletions_dir: Path, slug: str) -> int:
    """A descriptor of ``<deletions>/<slug>``, never through a link. Raises OSError."""
    top = os.open(deletions_dir, _DIRECTORY & ~os.O_NOFOLLOW)
    try:
        return os.open(slug, _DIRECTORY, dir_fd=top)
    finally:
        os.close(top)


def read(folder: int, file_name: str) -> Deletion | None:
    """The request in ``file_name`` of the open ``folder``; None if gone, a link or bad."""
    try:
        descriptor = os.open(file_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as source:
        try:
            return decode(source.read(MAX_REQUEST_BYTES + 1))
        except OSError:  # a FIFO or a folder
            return None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
