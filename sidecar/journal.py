"""What this pod's sidecar has delivered, and to whom: a small journal on pod-local storage that
only the sidecar mounts, so that a restarted sidecar neither copies a file twice nor forgets the
pod's owner.

``delivered.jsonl``: one JSON line per delivered file version, appended and ``fsync``-ed after
the file is in the person's folder (a crash in between only costs a comparison: the copy finds
the same bytes under the name and does not copy again). A torn last line is ignored. ``owner``:
the slug the pod was given to, written atomically.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from sidecar.finished import Version

log = logging.getLogger(__name__)

Key = tuple[str, int, int]
"""(path, size, mtime_ns): one version of one file."""


def key_of(version: Version) -> Key:
    return (version.path, version.size, version.mtime_ns)


class Journal:
    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._delivered_path = folder / "delivered.jsonl"
        self._owner_path = folder / "owner"
        self.delivered: dict[Key, str] = {}
        self.delivered_bytes = 0

    def load(self) -> Journal:
        """Create the folder if needed and read what earlier runs wrote; raises `OSError`."""
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            lines = self._delivered_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                entry = json.loads(line)
                key = (entry["path"], entry["size"], entry["mtime_ns"])
                self.delivered_bytes += 0 if key in self.delivered else int(key[1])
                self.delivered[key] = entry["to"]
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring a torn line in %s", self._delivered_path)
        return self

    def record(self, version: Version, delivered_as: str) -> None:
        """Remembered in memory at once, on disk unless that raises `OSError`."""
        key = key_of(version)
        self.delivered_bytes += 0 if key in self.delivered else version.size
        self.delivered[key] = delivered_as
        line = {"path": key[0], "size": key[1], "mtime_ns": key[2], "to": delivered_as}
        with self._delivered_path.open("a", encoding="utf-8") as journal:
            journal.write(json.dumps(line) + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    @property
    def owner(self) -> str | None:
        try:
            return self._owner_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def set_owner(self, slug: str) -> None:
        new = self._owner_path.with_name(".owner.new")
        new.write_text(slug + "\n")
        os.replace(new, self._owner_path)
