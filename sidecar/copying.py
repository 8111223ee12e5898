"""Copying one file from the WebUI's folder into a person's folder, safely and atomically.

The source is opened relative to its folder with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO swapped in
must not block the sidecar) and must be a regular file by ``fstat`` of that very fd. The copy goes
to a dot-named part file beside its destination (``O_EXCL``, never a picture to any reader), is
``fsync``-ed, and then hard-linked to its final name: ``link(2)`` fails if the name is taken, so a
different file of that name is never replaced (the copy takes ``name (2).png`` instead), and the
name appears complete or not at all, on NFS too. A file identical to one already delivered under
one of those names is not copied again. Destination folders are made and opened one component at
a time relative to the person's folder, never through a symlink.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
from collections.abc import Callable
from pathlib import Path

from sidecar.finished import Version, open_folder
from sidecar.names import UnsafeName, check_name, check_parts, numbered

PART_PREFIX = ".sda-part-"
"""Part files start with this: dot-named, so pictures pages and Gradio never show them."""
FILE_MODE = 0o660
FOLDER_MODE = 0o770
CHUNK_BYTES = 1 << 20
MAX_NUMBER = 1000
"""``name (2).png`` … ``name (1000).png``; beyond that the file is refused."""
SOURCE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
PART_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

after_first_chunk: Callable[[str], None] | None = None
"""Called with the part file's name once its first chunk is written; tests use it to stop the
sidecar in the middle of a copy."""


class Refused(Exception):
    """This version of the file is never delivered; the message says why, on one line."""


class Changed(Exception):
    """The file changed while it was copied; it is tried again once it is finished."""


def part_name() -> str:
    return f"{PART_PREFIX}{socket.gethostname()[:63]}-{secrets.token_hex(6)}"


def deliver(source_root: str, version: Version, target_root: Path, max_bytes: int) -> str:
    """Copy ``version`` (relative to ``source_root``) under ``target_root``; its path there."""
    parts = check_parts(version.parts)
    source = _open_source(source_root, parts)
    try:
        _check_same(source, version, max_bytes)
        folder = _make_folders(target_root, parts[:-1])
        try:
            name = _place(source, folder, parts, version, max_bytes)
            os.fsync(folder)
        finally:
            os.close(folder)
    finally:
        os.close(source)
    return "/".join((*parts[:-1], name))


def _open_source(root: str, parts: tuple[str, ...]) -> int:
    folder = open_folder(root)
    try:
        for part in parts[:-1]:
            inner = open_folder(part, folder)
            os.close(folder)
            folder = inner
        return os.open(parts[-1], SOURCE_FLAGS, dir_fd=folder)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Refused("a symlink, not a file") from None
        if error.errno == errno.ENXIO:  # a socket
            raise Refused("not a regular file") from None
        raise
    finally:
        os.close(folder)


def _check_same(source: int, version: Version, max_bytes: int) -> None:
    info = os.fstat(source)
    if not stat.S_ISREG(info.st_mode):
        raise Refused("not a regular file")
    if info.st_size > max_bytes:
        raise Refused(f"{info.st_size} bytes, over MAX_FILE_BYTES={max_bytes}")
    if (info.st_size, info.st_mtime_ns, info.st_ino) != (
        version.size,
        version.mtime_ns,
        version.inode,
    ):
        raise Changed()


def _make_folders(root: Path, parts: tuple[str, ...]) -> int:
    folder = open_folder(str(root))
    try:
        for part in parts:
            try:
                os.mkdir(check_name(part), FOLDER_MODE, dir_fd=folder)
                made = True
            except FileExistsError:
                made = False
            inner = open_folder(part, folder)
            if made:
                os.fchmod(inner, FOLDER_MODE)  # mkdir's mode is cut by the umask
            os.close(folder)
            folder = inner
    except OSError as error:
        os.close(folder)
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Refused("a symlink or file stands where its folder belongs") from None
        raise
    return folder


def _place(
    source: int, folder: int, parts: tuple[str, ...], version: Version, max_bytes: int
) -> str:
    """The name the file ends up under in ``folder`` (where ``parts`` go): a free one, or
    one holding the same. A numbered name must pass the same checks as the path itself, so
    that "My pictures" can show, and behind Agones ask to delete, whatever was delivered."""
    *folders, name = parts
    part: str | None = None
    try:
        for number in range(1, MAX_NUMBER + 1):
            candidate = numbered(name, number)
            try:
                check_parts((*folders, candidate))
            except UnsafeName as error:
                raise Refused(str(error)) from None
            if _holds_same(folder, candidate, source, version.size):
                return candidate
            if _exists(folder, candidate):
                continue
            if part is None:
                part = _copy_to_part(source, folder, version, max_bytes)
            try:
                os.link(
                    part, candidate, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False
                )
            except FileExistsError:  # taken meanwhile
                if _holds_same(folder, candidate, source, version.size):
                    return candidate
                continue
            return candidate
        raise Refused(f"{MAX_NUMBER} different files are named {name!r} already")
    finally:
        if part is not None:
            os.unlink(part, dir_fd=folder)


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _holds_same(folder: int, name: str, source: int, size: int) -> bool:
    try:
        other = os.open(name, SOURCE_FLAGS, dir_fd=folder)
    except OSError:
        return False
    try:
        info = os.fstat(other)
        return stat.S_ISREG(info.st_mode) and info.st_size == size and _same_bytes(source, other)
    finally:
        os.close(other)


def _same_bytes(first: int, second: int) -> bool:
    offset = 0
    while True:
        a, b = os.pread(first, CHUNK_BYTES, offset), os.pread(second, CHUNK_BYTES, offset)
        if a != b:
            return False
        if not a:
            return True
        offset += len(a)


def _copy_to_part(source: int, folder: int, version: Version, max_bytes: int) -> str:
    name = part_name()
    out = os.open(name, PART_FLAGS, FILE_MODE, dir_fd=folder)
    try:
        _copy(source, out, name, max_bytes)
        os.fchmod(out, FILE_MODE)
        os.fsync(out)
        _check_same(source, version, max_bytes)
    except BaseException:
        os.unlink(name, dir_fd=folder)
        raise
    finally:
        os.close(out)
    return name


def _copy(source: int, out: int, name: str, max_bytes: int) -> None:
    offset = 0
    while chunk := os.pread(source, CHUNK_BYTES, offset):
        offset += len(chunk)
        if offset > max_bytes:
            raise Refused(f"grew past MAX_FILE_BYTES={max_bytes} while copied")
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view) :]
        if offset == len(chunk) and after_first_chunk is not None:
            after_first_chunk(name)


def remove_parts(root: Path, own_only_younger_than: float, now: float) -> int:
    """Remove part files left under ``root`` by a killed copy: any of this pod's, and others'
    older than ``own_only_younger_than`` seconds (another pod of the same person may be copying
    right now). Never follows a symlink. The number removed."""
    own = f"{PART_PREFIX}{socket.gethostname()[:63]}-"
    removed = 0
    try:
        top = open_folder(str(root))
    except OSError:
        return 0
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                found = list(entries)
            for entry in found:
                try:
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode) and not entry.name.startswith("."):
                        stack.append(open_folder(entry.name, folder))
                    elif stat.S_ISREG(info.st_mode) and entry.name.startswith(PART_PREFIX):
                        stale = now - info.st_mtime > own_only_younger_than
                        if entry.name.startswith(own) or stale:
                            os.unlink(entry.name, dir_fd=folder)
                            removed += 1
                except OSError:
                    continue  # gone, or replaced by a link, since it was listed
        finally:
            os.close(folder)
    return removed
