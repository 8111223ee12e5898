"""AUTOMATIC1111's web stack (a1111_webui/, in .venv-a1111) as the tests run it: as a local
backend command, behind fake_agones GameServers, and its own client generation (gradio_client
0.5) running one job."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from fake_agones import ProcessBacking
from tests.support.processes import REPO

A1111_PYTHON = REPO / ".venv-a1111" / "bin" / "python"
WEBUI = REPO / "a1111_webui" / "webui.py"
JOB = REPO / "a1111_webui" / "job.py"


def require_a1111() -> Path:
    """The stack's interpreter; skips without it, or fails under SDA_REQUIRE_ALL=1 (CI)."""
    if A1111_PYTHON.exists():
        return A1111_PYTHON
    message = "AUTOMATIC1111's web stack is not installed (run `make a1111-venv`)"
    if os.environ.get("SDA_REQUIRE_ALL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def local_command(*flags: str) -> str:
    """SDA_LOCAL_COMMAND for the stand-in. Flags: `--hold` (each job waits until the test
    releases it), `--no-save-samples` (pictures only in Gradio's cache)."""
    command = f"{require_a1111()} {WEBUI} --port {{port}} --outputs-dir {{outputs_dir}}"
    return " ".join((command, *flags))


def backing() -> ProcessBacking:
    """GameServers whose Pods run the stand-in on their Pod IP, as the sd-webui image runs
    A1111 (`--listen`), outputs in the Pod's own folder."""
    argv = (str(require_a1111()), str(WEBUI), "--host", "{host}", "--port", "{port}")
    return ProcessBacking((*argv, "--outputs-dir", "{dir}/outputs"), cwd=REPO)


def start_job(
    url: str, headers: dict[str, str], prompt: str, downloads: Path
) -> subprocess.Popen[str]:
    """One txt2img job with gradio_client 0.5 through `url`, running; see `job_result`."""
    argv = [str(require_a1111()), str(JOB), f"{url}/", "--prompt", prompt]
    argv += ["--downloads", str(downloads)]
    argv += [f"--header={name}: {value}" for name, value in headers.items()]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@dataclass(frozen=True)
class JobResult:
    pictures: list[Path]  # downloaded through the proxy from Gradio 3's /file= route
    status: str


def job_result(job: subprocess.Popen[str]) -> JobResult:
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err[-3000:]
    answer = json.loads(out.strip().splitlines()[-1])
    return JobResult([Path(p) for p in answer["pictures"]], answer["status"])


def run_job(url: str, headers: dict[str, str], prompt: str, downloads: Path) -> JobResult:
    return job_result(start_job(url, headers, prompt, downloads))
