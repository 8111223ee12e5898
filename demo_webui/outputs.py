"""The person's outputs folders: numbered PNG files, like A1111's ``00001-<seed>.png``."""

from __future__ import annotations

import re
import threading
from pathlib import Path

_NUMBERED = re.compile(r"^(\d+)-")


class OutputFolder:
    """Saves pictures under increasing numbers and never overwrites a file.

    The next number continues after the highest one already in the folder; a name that is taken
    anyway (another process writing there) is skipped, because files are created exclusively.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.mkdir(parents=True, exist_ok=True)
        self._next = 1 + max((_number(p.name) for p in path.iterdir()), default=0)

    def save(self, png: bytes, seed: int) -> Path:
        with self._lock:
            while True:
                target = self.path / f"{self._next:05d}-{seed}.png"
                self._next += 1
                try:
                    with target.open("xb") as file:
                        file.write(png)
                except FileExistsError:
                    continue
                return target


def _number(name: str) -> int:
    match = _NUMBERED.match(name)
    return int(match.group(1)) if match else 0


class OutputFolders:
    """One `OutputFolder` per real folder, so numbering stays right when the folder setting, or a
    symlink on the way to it, changes."""

    def __init__(self) -> None:
        self._folders: dict[Path, OutputFolder] = {}
        self._lock = threading.Lock()

    def at(self, path: Path) -> OutputFolder:
        """The folder ``path`` leads to now: its symlinks are resolved on every call, so a link
        switched meanwhile (a pod's outputs link) sends the next pictures to its new target."""
        real = path.resolve()
        with self._lock:
            if real not in self._folders:
                self._folders[real] = OutputFolder(real)
            return self._folders[real]
