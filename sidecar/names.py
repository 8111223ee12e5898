"""Which relative paths from the WebUI's outputs folder may become paths in a person's folder.

The WebUI's folder is written by code we do not trust, so every component of a path is checked
on its own before it is used: a plain, non-empty name, no ``.``/``..``, no separator (``/`` or
``\\``), NUL or other control character, valid UTF-8, and no leading dot (the sidecar's own part
files start with one, and readers skip dot-names): the same rule "My pictures" applies
(`allocator.pictures.plain_component`), so nothing is delivered that it would never show. A1111's
own half-written ``*.tmp`` files are not delivered either, and a whole path is bounded, so a
hostile name cannot bloat the journal.
"""

from __future__ import annotations

import re

MAX_DEPTH = 16
"""Folders below the outputs folder that are still looked into; A1111 uses one or two."""
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\/]")


class UnsafeName(ValueError):
    """A path that could lead outside the person's folder, or clash with the sidecar's files."""


def check_parts(parts: tuple[str, ...]) -> tuple[str, ...]:
    """``parts`` unchanged if every component is a safe name; raises `UnsafeName` otherwise."""
    if not parts or len(parts) > MAX_DEPTH + 1:
        raise UnsafeName(f"{len(parts)} path components")
    for part in parts:
        check_name(part)
    if sum(len(part.encode()) + 1 for part in parts) > MAX_PATH_BYTES:
        raise UnsafeName(f"a path of {len(parts)} components is too long")
    if parts[-1].endswith(".tmp"):  # A1111 writes <name>.tmp, then renames it
        raise UnsafeName(f"{parts[-1]!r} is a file still being saved")
    return parts


def check_name(name: str) -> str:
    if not name or name in (".", "..") or _UNSAFE.search(name):
        raise UnsafeName(f"{name!r} is not a plain name")
    if name.startswith("."):
        raise UnsafeName(f"{name!r} starts with a dot")
    try:
        encoded = name.encode()
    except UnicodeEncodeError:
        raise UnsafeName(f"{name!r} is not UTF-8") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise UnsafeName(f"{name[:40]!r}... is too long")
    return name


def numbered(name: str, number: int) -> str:
    """``picture.png`` → ``picture (2).png``: the name for the ``number``-th different file."""
    if number == 1:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not stem:
        return f"{name} ({number})"
    return f"{stem} ({number}){dot}{suffix}"
