"""A short hash of what makes a release or a function, to tell whether it changed since the
last deploy. It is stored where the deploy can read it back (a Helm revision's description, a
function label), so it must never cover a secret."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from deploy.types import StepFailed


def fingerprint(
    strings: Sequence[str] = (), files: Sequence[Path] = (), trees: Sequence[Path] = ()
) -> str:
    """16 hex digits over the strings, the files' contents and every file below the trees."""
    digest = hashlib.sha256()
    for part in _parts(strings, files, trees):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _parts(strings: Sequence[str], files: Sequence[Path], trees: Sequence[Path]) -> Iterator[bytes]:
    for path in [*files, *trees]:
        if not path.exists():
            raise StepFailed(f"{path} not found")
    yield from (text.encode() for text in strings)
    yield from (path.read_bytes() for path in files)
    for tree in trees:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            if "__pycache__" not in path.parts:
                yield str(path.relative_to(tree)).encode()
                yield path.read_bytes()
