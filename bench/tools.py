"""The external programs the benchmarks drive: where they are, how to get them, their versions."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
NODE_PREFIX = BENCH_DIR / ".node"
CHP_PACKAGE = "configurable-http-proxy@5"


class MissingTool(RuntimeError):
    """A program the benchmarks need is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Tools:
    nginx: Path
    wrk: Path
    redis_server: Path
    chp: Path


def _find(name: str, *extra: str, install: str) -> Path:
    found = shutil.which(name)
    if found:
        return Path(found)
    for candidate in extra:
        if Path(candidate).is_file():
            return Path(candidate)
    raise MissingTool(f"`{name}` not found. Install it with: {install}")


def nginx() -> Path:
    return _find("nginx", "/usr/sbin/nginx", install="apt-get install nginx-light")


def wrk() -> Path:
    return _find("wrk", "/usr/bin/wrk", install="apt-get install wrk")


def redis_server() -> Path:
    return _find("redis-server", "/usr/bin/redis-server", install="apt-get install redis-server")


def chp() -> Path:
    """configurable-http-proxy from npm, installed into bench/.node on first use."""
    binary = NODE_PREFIX / "node_modules" / ".bin" / "configurable-http-proxy"
    if binary.exists():
        return binary
    _find("node", install="apt-get install nodejs")
    npm = _find("npm", install="apt-get install npm")
    print(f"installing {CHP_PACKAGE} into {NODE_PREFIX} ...", flush=True)
    result = subprocess.run(
        [str(npm), "install", "--no-audit", "--no-fund", "--prefix", str(NODE_PREFIX), CHP_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not binary.exists():
        raise MissingTool(
            f"could not install {CHP_PACKAGE} (npm package) into {NODE_PREFIX}:\n"
            f"{result.stderr.strip()[-2000:]}\n"
            f"Try by hand: npm install --prefix {NODE_PREFIX} {CHP_PACKAGE}"
        )
    return binary


def require_all() -> Tools:
    """Find every required tool, naming all missing ones at once."""
    problems: list[str] = []
    found: dict[str, Path] = {}
    for key, finder in (
        ("nginx", nginx),
        ("wrk", wrk),
        ("redis_server", redis_server),
        ("chp", chp),
    ):
        try:
            found[key] = finder()
        except MissingTool as e:
            problems.append(str(e))
    if problems:
        raise MissingTool("\n".join(problems))
    return Tools(**found)


def allocator_problem(argv: list[str]) -> str | None:
    """Why the allocator command cannot run yet, or None when `<argv> --help` works."""
    executable = shutil.which(argv[0]) if argv else None
    if executable is None:
        return f"`{argv[0] if argv else ''}` not found (run `make install`)"
    try:
        result = subprocess.run(
            [*argv, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`{' '.join(argv)} --help` failed: {e}"
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return f"`{' '.join(argv)} --help` exited {result.returncode}: " + (
            lines[-1] if lines else "(no output)"
        )
    return None


def _first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (result.stdout + result.stderr).strip()
    return text.splitlines()[0].strip() if text else "unknown"


def versions(tools: Tools) -> dict[str, str]:
    """Version strings of the tools, for the report."""
    node = shutil.which("node")
    return {
        "nginx": _first_line([str(tools.nginx), "-v"]).removeprefix("nginx version: nginx/"),
        "wrk": _first_line([str(tools.wrk), "-v"]).split(" [")[0].removeprefix("wrk "),
        "redis": _first_line([str(tools.redis_server), "--version"])
        .split(" sha=")[0]
        .removeprefix("Redis server v="),
        "configurable-http-proxy": _first_line([str(tools.chp), "--version"]),
        "node": _first_line([node, "--version"]) if node else "missing",
    }
