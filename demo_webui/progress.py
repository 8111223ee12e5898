"""What the generation in flight is doing, shared by the Gradio UI and the HTTP API."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from demo_webui.models import ProgressResponse, ProgressState


class GenerationTracker:
    """A1111's ``shared.state``: written by the generating thread, read by the progress route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = ProgressState()
        self._started = 0.0

    def begin(self, job: str, steps: int) -> None:
        with self._lock:
            self._state = ProgressState(
                job=job,
                job_count=1,
                job_timestamp=datetime.now().strftime("%Y%m%d%H%M%S"),
                sampling_steps=steps,
            )
            self._started = time.monotonic()

    def step(self, sampling_step: int) -> None:
        with self._lock:
            self._state = self._state.model_copy(update={"sampling_step": sampling_step})

    def end(self) -> None:
        """Back to idle; like A1111, the last job's timestamp stays."""
        with self._lock:
            self._state = ProgressState(job_timestamp=self._state.job_timestamp)

    def snapshot(self) -> ProgressResponse:
        with self._lock:
            state, started = self._state, self._started
        if state.job_count == 0 or state.sampling_steps == 0:
            return ProgressResponse(progress=0.0, eta_relative=0.0, state=state)
        done = (state.job_no + state.sampling_step / state.sampling_steps) / state.job_count
        progress = min(max(done, 0.0), 1.0)
        elapsed = time.monotonic() - started
        eta = elapsed / progress - elapsed if progress > 0 else 0.0
        return ProgressResponse(progress=progress, eta_relative=eta, state=state)
