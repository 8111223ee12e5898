"""``python -m tests.sidecar.paused_sidecar``: the sidecar, stopping for good in the middle of its
first copy. It writes the part file's name to ``$PAUSE_MARKER`` once the first chunk is written,
then blocks that copy until the process is killed."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sidecar import copying
from sidecar.main import main


def pause(part: str) -> None:
    Path(os.environ["PAUSE_MARKER"]).write_text(part)
    threading.Event().wait()  # never set: the test kills the process here


if __name__ == "__main__":
    copying.after_first_chunk = pause
    main()
