"""The cruiser function's source, staged into a directory for `gcloud functions deploy`:
the `allocator` and `cruiser` packages, a `main.py` exporting the entry point, and a
requirements.txt made from pyproject.toml (the runtime dependencies and the `function` extra),
so the dependency list lives in one place."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

PACKAGES = ("allocator", "cruiser")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".*_cache")
MAIN = '''"""Cloud Function entry point, staged by `make deploy`."""

from cruiser.function import cruise  # noqa: F401
'''


def stage(root: Path, target: Path) -> None:
    """Fill `target` (emptied first) with the function's source from the repository `root`."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for package in PACKAGES:
        shutil.copytree(root / package, target / package, ignore=IGNORED)
    (target / "main.py").write_text(MAIN)
    (target / "requirements.txt").write_text("\n".join(requirements(root)) + "\n")


def requirements(root: Path) -> list[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extra: list[str] = project.get("optional-dependencies", {}).get("function", [])
    return [*project["dependencies"], *extra]
