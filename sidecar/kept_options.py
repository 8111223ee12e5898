"""A person's WebUI settings, kept across WebUIs in ``users/<slug>/webui/options.json``.

Every allocation gives a fresh WebUI, so AUTOMATIC1111's settings (sampler defaults, picture
format, quick settings, ...) would be lost at every give-back. Whoever may write the person's
folder keeps them here (on GKE this sidecar, in local mode the allocator), and the allocator
gives them to the person's next WebUI before routing them there.

What a WebUI answers is hostile: only a JSON object of bounded size is kept, and never a setting
that names a folder or a file (``outdir_*``, ``*_dir``, ``*_path``, ...): restoring those could
point a new WebUI at someone else's folder. The file is written beside and renamed, inside the
person's folder opened step by step without following links, so a link planted where the file
goes is replaced, never written through.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from sidecar.finished import open_below

log = logging.getLogger(__name__)

OPTIONS_PATH = "/sdapi/v1/options"
FOLDER, FILE = "webui", "options.json"
MAX_BYTES = 1 << 20
_LOCATIONS = re.compile(r"^outdir|_dir$|_dirs$|_path$|_paths$|_file$|^directories")

Options = dict[str, Any]


def portable(options: Any) -> Options | None:
    """The settings worth keeping from what a WebUI answered; None if it is not an object."""
    if not isinstance(options, dict):
        return None
    return {
        key: value
        for key, value in options.items()
        if isinstance(key, str) and not _LOCATIONS.search(key)
    }


def parse(raw: bytes) -> Options | None:
    """A WebUI's answer (or a kept file) as settings; None when too large or no JSON object."""
    if len(raw) > MAX_BYTES:
        return None
    try:
        return portable(json.loads(raw))
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can follow
        return None


async def read_answer(body: aiohttp.StreamReader) -> Options | None:
    """A WebUI's answer read to its end, but never more than `MAX_BYTES` of it, as settings."""
    raw = bytearray()
    async for chunk in body.iter_chunked(1 << 16):
        raw += chunk
        if len(raw) > MAX_BYTES:
            return None
    return parse(bytes(raw))


def load(users_dir: Path, slug: str) -> Options | None:
    """The person's kept settings, None when there are none (or none readable)."""
    try:
        folder = _open_folder(users_dir, slug, create=False)
    except OSError:
        return None
    try:  # NONBLOCK: a FIFO planted there must not hang the reader
        descriptor = os.open(FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:
        return None
    finally:
        os.close(folder)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        return parse(_read_at_most(descriptor, MAX_BYTES + 1))
    except OSError:  # an I/O error of the share: as good as no file
        return None
    finally:
        os.close(descriptor)


def save(users_dir: Path, slug: str, options: Options) -> None:
    """Write beside, then rename over: a reader never sees half a file. Raises OSError."""
    data = json.dumps(options, sort_keys=True).encode()
    if len(data) > MAX_BYTES:
        log.warning("WebUI settings of %s not kept: %d bytes", slug, len(data))
        return
    folder = _open_folder(users_dir, slug, create=True)
    draft = f".{FILE}.{uuid.uuid4().hex}"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(draft, flags, 0o600, dir_fd=folder)
        with os.fdopen(descriptor, "wb") as target:
            target.write(data)
            target.flush()
            os.fsync(target.fileno())
        os.replace(draft, FILE, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(draft, dir_fd=folder)
        raise
    finally:
        os.close(folder)


def _open_folder(users_dir: Path, slug: str, create: bool) -> int:
    """`users/<slug>/webui`, each step opened without following a link."""
    return open_below(users_dir, (slug, FOLDER), 0o700 if create else None)


def _read_at_most(descriptor: int, limit: int) -> bytes:
    """The file from where it stands to its end or to ``limit`` bytes (reads may come short)."""
    data = bytearray()
    while len(data) < limit:
        chunk = os.read(descriptor, limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)
